"""Training the online harmony LSTM on the Bach chorales, resumable, with curves and figures.

Each chorale is one sequence of beats (`harmony_data.beat_arrays`, Bach's
own chord and bass of the beat before fed back: teacher forcing), padded
with zero rows to the longest.  Every epoch draws afresh, per beat, whether
the beat's own melody is shown (probability ``harmony_training.lookahead_share``),
so one model learns both the online case (a live player) and lookahead
(jamd's own melody, written ahead).

Validation, after every epoch, on the held-out chorales: the loss under a
fixed lookahead draw (what early stopping watches), and the chord accuracy
and negative log-likelihood (nats per beat) with the flag 0 on every beat
(online) and 1 on every beat (lookahead).

The run folder holds what the LSTM's does (`train_lstm`): ``last.keras`` and
``previous.keras``, ``best.keras``, ``state.json`` naming its checkpoint by
SHA-256, ``loss.png`` and ``figures.json``; a kill at any instant resumes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import DataError
from jamd.music import chords

from .checkpoints import atomic_copy, atomic_json, clean_stale_temps
from .harmony_data import NO_BASS, HarmonizedTune, beat_arrays, hide_melody, load_chorales
from .train_lstm import device_description, epoch_bar, plot_panels, resume, save_checkpoint

log = logging.getLogger(__name__)

HISTORY = ("loss", "chord_accuracy", "val_loss", "val_chord_accuracy_online", "val_chord_accuracy_lookahead",
           "val_chord_nll_online", "val_chord_nll_lookahead", "val_bass_accuracy_lookahead")


class Beats:
    """Chorales as padded arrays: ``x`` [n, T, 117] with every beat's melody shown, the targets
    [n, T] (no bass: 0, weight 0) and ``valid`` [n, T] (False on padding)."""

    def __init__(self, tunes: list[HarmonizedTune]):
        if not tunes:
            raise DataError("no chorales to train or validate on")
        rows = [beat_arrays(t, True) for t in tunes]
        n, T = len(rows), max(len(r[0]) for r in rows)
        self.x = np.zeros((n, T, chords.STEP_FEATURES), np.float32)
        self.chord, self.bass, self.melody = (np.zeros((n, T), np.int64) for _ in range(3))
        self.valid = np.zeros((n, T), bool)
        self.has_bass = np.zeros((n, T), bool)
        for i, (x, chord, bass, melody) in enumerate(rows):
            k = len(x)
            self.x[i, :k], self.chord[i, :k], self.melody[i, :k] = x, chord, melody
            self.bass[i, :k] = np.where(bass == NO_BASS, 0, bass)
            self.valid[i, :k], self.has_bass[i, :k] = True, bass != NO_BASS

    @property
    def n_beats(self) -> int:
        return int(self.valid.sum())

    def inputs(self, lookahead: np.ndarray) -> tuple[np.ndarray, dict, dict]:
        """(x, targets, sample weights) with the beats where `lookahead` [n, T] is False online.

        The melody head learns only on online beats: with lookahead its answer is in the input."""
        x = hide_melody(self.x, lookahead)
        y = {"chord": self.chord, "bass": self.bass, "melody": self.melody}
        w = {"chord": self.valid.astype(np.float32), "bass": self.has_bass.astype(np.float32),
             "melody": (self.valid & ~lookahead).astype(np.float32)}
        return x, y, w

    def draw(self, rng: np.random.Generator, share: float) -> np.ndarray:
        return (rng.random(self.valid.shape) < share) & self.valid


def chord_figures(model, beats: Beats, flag: bool) -> dict[str, float]:
    """Teacher-forced chord accuracy and NLL (nats/beat), and bass accuracy, with the lookahead flag
    `flag` on every beat."""
    x, _, _ = beats.inputs(np.full(beats.valid.shape, flag))
    p = model.predict(x, batch_size=64, verbose=0)
    v = beats.valid
    chord_p = np.take_along_axis(p["chord"], beats.chord[..., None], -1)[..., 0][v]
    bass_hit = (np.argmax(p["bass"], -1) == beats.bass)[beats.has_bass]
    return {"accuracy": float(np.mean(np.argmax(p["chord"], -1)[v] == beats.chord[v])),
            "nll": float(np.mean(-np.log(np.maximum(chord_p, 1e-12)))),
            "bass_accuracy": float(np.mean(bass_hit)) if bass_hit.size else 0.0}


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    plot_panels(history, path, [
        ("harmony LSTM loss", "chord + 0.5 bass + 0.5 melody (nats/beat)",
         [("loss", "training"), ("val_loss", "validation")]),
        ("harmony LSTM chord accuracy", "chord accuracy (teacher-forced)",
         [("chord_accuracy", "training (mixed)"), ("val_chord_accuracy_online", "validation, online"),
          ("val_chord_accuracy_lookahead", "validation, lookahead")])])


def _fresh_state() -> dict[str, Any]:
    return {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "wait": 0,
            "history": {k: [] for k in HISTORY}, "epoch_seconds": []}


def train(cfg: Config, out_dir: str | Path | None = None, fresh: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the harmony LSTM in run folder `out_dir`; returns the run's figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .harmony_model import build_training_model

    hc = cfg.harmony_training
    out = Path(out_dir or hc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    corpus = load_chorales(cfg, progress=progress)
    train_idx, val_idx = corpus.split()
    train_set = Beats([corpus.tunes[i] for i in train_idx])
    val_set = Beats([corpus.tunes[i] for i in (val_idx or train_idx[:10])])
    log.info("chorales %s: %d training (%d beats), %d validation (%d beats)", corpus.source, len(train_idx),
             train_set.n_beats, len(val_idx), val_set.n_beats)
    device = device_description()
    log.info("training on %s", device)
    # the validation loss always sees the same lookahead draw, so epochs compare
    val_x, val_y, val_w = val_set.inputs(val_set.draw(np.random.default_rng(cfg.corpus.split_seed),
                                                      hc.lookahead_share))

    vocabulary = [chords.chord_name(c) for c in range(chords.N_CHORDS)]
    state = _fresh_state()
    resumed = None if fresh else resume(out, vocabulary)
    if resumed is not None:
        state, model = resumed
    else:
        model = build_training_model(hc.units, hc.dropout, hc.learning_rate)
    state.update(vocabulary=vocabulary, step_features=chords.STEP_FEATURES,
                 config={"harmony_training": asdict(hc), "corpus": asdict(cfg.corpus)})

    rng = np.random.default_rng(hc.batch_size * 7919 + state["epoch"])
    batches = -(-len(train_idx) // hc.batch_size)
    for epoch in range(state["epoch"], hc.epochs):
        if hc.patience and state["wait"] >= hc.patience:
            log.info("stopping early: no better validation loss for %d epochs", hc.patience)
            break
        x, y, w = train_set.inputs(train_set.draw(rng, hc.lookahead_share))
        order = rng.permutation(len(x))
        t0 = time.perf_counter()
        callbacks = [epoch_bar(epoch + 1, hc.epochs, batches)] if progress else []
        h = model.fit(x[order], {k: v[order] for k, v in y.items()},
                      sample_weight={k: v[order] for k, v in w.items()}, batch_size=hc.batch_size,
                      epochs=epoch + 1, initial_epoch=epoch, verbose=0, shuffle=False, callbacks=callbacks)
        val = model.evaluate(val_x, val_y, sample_weight=val_w, batch_size=64, verbose=0, return_dict=True)
        online, ahead = chord_figures(model, val_set, False), chord_figures(model, val_set, True)
        seconds = time.perf_counter() - t0
        row = {"loss": h.history["loss"][-1], "chord_accuracy": h.history["chord_accuracy"][-1],
               "val_loss": val["loss"], "val_chord_accuracy_online": online["accuracy"],
               "val_chord_accuracy_lookahead": ahead["accuracy"], "val_chord_nll_online": online["nll"],
               "val_chord_nll_lookahead": ahead["nll"], "val_bass_accuracy_lookahead": ahead["bass_accuracy"]}
        for k in HISTORY:
            state["history"][k].append(float(row[k]))
        state["epoch_seconds"].append(seconds)
        log.info("epoch %d/%d: loss %.4f, val_loss %.4f, val chord accuracy %.3f online, %.3f lookahead (%.1f s)",
                 epoch + 1, hc.epochs, row["loss"], row["val_loss"], online["accuracy"], ahead["accuracy"], seconds)
        state["epoch"] = epoch + 1
        best = state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]
        if best:
            state.update(best_val_loss=float(row["val_loss"]), best_epoch=epoch + 1, wait=0)
        else:
            state["wait"] += 1
        save_checkpoint(model, state, out)
        if best:  # after the state: a kill before this copy is made good at resume
            atomic_copy(out / "last.keras", out / "best.keras")
        plot_history(state["history"], out / "loss.png")

    figures = _figures(state, corpus, train_idx, val_idx, train_set, val_set, device)
    atomic_json(out / "figures.json", figures)
    log.info("best epoch %s: val chord accuracy %s online, %s lookahead; run folder %s", figures["best_epoch"],
             figures["val_chord_accuracy_online"], figures["val_chord_accuracy_lookahead"], out)
    return figures


def _figures(state, corpus, train_idx, val_idx, train_set: Beats, val_set: Beats, device: str) -> dict[str, Any]:
    """The run's figures at its best epoch (by validation loss)."""
    hist, best = state["history"], state["best_epoch"] - 1

    def at_best(key: str) -> float | None:
        return hist[key][best] if best >= 0 else None

    return {
        "corpus": corpus.source,
        "training_chorales": len(train_idx),
        "validation_chorales": len(val_idx),
        "training_beats": train_set.n_beats,
        "validation_beats": val_set.n_beats,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "val_loss": at_best("val_loss"),
        "train_loss": at_best("loss"),
        "val_chord_accuracy_online": at_best("val_chord_accuracy_online"),
        "val_chord_accuracy_lookahead": at_best("val_chord_accuracy_lookahead"),
        "val_chord_nll_online": at_best("val_chord_nll_online"),
        "val_chord_nll_lookahead": at_best("val_chord_nll_lookahead"),
        "val_bass_accuracy_lookahead": at_best("val_bass_accuracy_lookahead"),
        "seconds": round(float(sum(state["epoch_seconds"])), 1),
        "median_epoch_seconds": float(np.median(state["epoch_seconds"])) if state["epoch_seconds"] else None,
        "device": device,
    }
