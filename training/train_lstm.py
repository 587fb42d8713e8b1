"""Training the seed's LSTM on the encoded corpus, resumable, with loss curves.

Each epoch cuts the training stream (tunes joined by 64 delimiters, as in the
seed) into non-overlapping 64-step windows starting at a random offset, so
every token is a target once per epoch and the windows differ between epochs.
Validation uses fixed windows over the held-out tunes.

State lives in the run folder: ``last.keras`` (model and optimiser, written
every epoch), ``best.keras`` (lowest validation loss), ``state.json`` (epoch,
history, early-stopping counter) and ``loss.png``.  Running the same command
again resumes after the last finished epoch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import DataError

log = logging.getLogger(__name__)


def windows(stream: np.ndarray, length: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-step targets of non-overlapping windows."""
    usable = (len(stream) - 1 - offset) // length
    if usable < 1:
        raise DataError(f"corpus too small for sequence_length {length} ({len(stream)} tokens)")
    end = offset + usable * length
    x = stream[offset:end].reshape(usable, length)
    y = stream[offset + 1 : end + 1].reshape(usable, length)
    return x.astype(np.int32), y.astype(np.int32)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, history["loss"], label="training")
    a.plot(epochs, history["val_loss"], label="validation")
    a.set(xlabel="epoch", ylabel="cross-entropy (nats/step)", title="LSTM loss")
    a.legend()
    b.plot(epochs, history["accuracy"], label="training")
    b.plot(epochs, history["val_accuracy"], label="validation")
    b.set(xlabel="epoch", ylabel="next-step accuracy", title="LSTM accuracy")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def device_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({len(gpus)}x {gpus[0].name})" if gpus else "CPU"


def train(cfg: Config, out_dir: str | Path | None = None, fresh: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the LSTM; returns the run's figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from jamd.training.corpus import load_corpus
    from jamd.training.lstm_model import build_training_model

    tc = cfg.training
    out = Path(out_dir or tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(cfg.corpus, progress=progress)
    train_idx, val_idx = corpus.split()
    L = tc.sequence_length
    train_stream = corpus.stream(train_idx, L)
    val_stream = corpus.stream(val_idx, L) if val_idx else train_stream[: 10 * L + 1]
    vx, vy = windows(val_stream, L)
    vocab = corpus.vocab
    log.info("corpus %s: %d training tunes (%d tokens), %d validation tunes (%d tokens), vocabulary %d",
             corpus.source, len(train_idx), len(train_stream), len(val_idx), len(val_stream), len(vocab))
    device = device_description()
    log.info("training on %s", device)

    state_path, last_path, best_path = out / "state.json", out / "last.keras", out / "best.keras"
    state: dict[str, Any] = {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "wait": 0,
                             "history": {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []},
                             "epoch_seconds": []}
    if not fresh and state_path.is_file() and last_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("vocabulary") != list(vocab.symbols):
            raise DataError(f"{out}: checkpoint was trained on another vocabulary; use --fresh or another --out")
        model = keras.models.load_model(last_path)
        log.info("resuming from %s after epoch %d", last_path, state["epoch"])
    else:
        model = build_training_model(len(vocab), tc.units, tc.dropout, tc.learning_rate)
    state["vocabulary"] = list(vocab.symbols)
    state["config"] = {"training": asdict(tc), "corpus": asdict(cfg.corpus)}

    rng = np.random.default_rng(tc.batch_size * 7919 + state["epoch"])
    for epoch in range(state["epoch"], tc.epochs):
        if tc.patience and state["wait"] >= tc.patience:
            log.info("stopping early: no better validation loss for %d epochs", tc.patience)
            break
        x, y = windows(train_stream, L, offset=int(rng.integers(0, L)))
        order = rng.permutation(len(x))
        x, y = x[order], y[order]
        if tc.max_steps_per_epoch:
            n = tc.max_steps_per_epoch * tc.batch_size
            x, y = x[:n], y[:n]
        t0 = time.perf_counter()
        h = model.fit(x, y, batch_size=tc.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                      validation_data=(vx, vy), verbose=1 if progress else 2, shuffle=False)
        seconds = time.perf_counter() - t0
        for k in state["history"]:
            state["history"][k].append(float(h.history[k][-1]))
        state["epoch_seconds"].append(seconds)
        val_loss = state["history"]["val_loss"][-1]
        log.info("epoch %d/%d: loss %.4f, val_loss %.4f, val_accuracy %.4f (%.1f s)", epoch + 1, tc.epochs,
                 state["history"]["loss"][-1], val_loss, state["history"]["val_accuracy"][-1], seconds)
        state["epoch"] = epoch + 1
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0)
            model.save(best_path)
        else:
            state["wait"] += 1
        model.save(last_path)
        # written last, so an interruption mid-epoch resumes from the previous one
        state_path.write_text(json.dumps(state, indent=1))
        plot_history(state["history"], out / "loss.png")

    best = state["best_epoch"] - 1
    figures = {
        "corpus": corpus.source,
        "training_tunes": len(train_idx),
        "validation_tunes": len(val_idx),
        "training_tokens": int(len(train_stream)),
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "val_loss": state["history"]["val_loss"][best] if best >= 0 else None,
        "val_accuracy": state["history"]["val_accuracy"][best] if best >= 0 else None,
        "train_loss": state["history"]["loss"][best] if best >= 0 else None,
        "median_epoch_seconds": float(np.median(state["epoch_seconds"])) if state["epoch_seconds"] else None,
        "device": device,
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    log.info("best epoch %s: val_loss %s, val_accuracy %s; run folder %s", figures["best_epoch"],
             figures["val_loss"], figures["val_accuracy"], out)
    return figures
