"""Training the seed's LSTM on the encoded corpus, resumable, with loss curves.

Each epoch cuts the training stream (tunes joined by 64 delimiters, as in the
seed) into non-overlapping 64-step windows starting at a random offset, so
every token is a target once per epoch and the windows differ between epochs.
The windows stream from the corpus through tf.data (`stream`): the corpus is
never all in memory.  Validation uses fixed windows over the held-out tunes.
tf.distribute (`distribute`) spreads the steps over a machine's GPUs or a
cluster of machines; the chief alone writes the run folder.

State lives in the run folder: ``last.keras`` (model and optimiser, written
every epoch), ``best.keras`` (lowest validation loss), ``state.json`` (epoch,
history, early-stopping counter) and ``loss.png``.  Running the same command
again resumes after the last finished epoch.
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

from .checkpoints import (
    STATE,
    atomic_copy,
    atomic_json,
    atomic_path,
    atomic_save,
    clean_stale_temps,
    read_states,
    rotate_state,
    sha256,
)

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


def plot_panels(history: dict[str, list[float]], path: Path,
                panels: list[tuple[str, str, list[tuple[str, str]]]]) -> None:
    """Training curves side by side, one panel per (title, y label, [(history key, line label)]),
    epochs on x; written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, ylabel, lines) in zip(axes, panels, strict=True):
        for key, label in lines:
            ax.plot(epochs, history[key], label=label)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.legend()
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    plot_panels(history, path, [
        ("LSTM loss", "cross-entropy (nats/step)", [("loss", "training"), ("val_loss", "validation")]),
        ("LSTM accuracy", "next-step accuracy", [("accuracy", "training"), ("val_accuracy", "validation")])])


def save_checkpoint(model, state: dict[str, Any], out: Path) -> None:
    """Save `model` as ``last.keras`` and `state` as ``state.json``, surviving a kill at any instant.

    The order makes every moment resumable: the current state is kept as
    ``previous_state.json``; the model is written to a temp file and fsynced; the
    current ``last.keras`` becomes ``previous.keras`` and the new one takes its
    place; last, ``state.json`` names the new checkpoint by its SHA-256.  Until that
    last write, the state on disk still names the checkpoint it was saved with.
    """
    last = out / "last.keras"
    rotate_state(out)
    with atomic_path(last) as tmp:
        model.save(tmp)
        if last.is_file():
            os.replace(last, out / "previous.keras")
    state["checkpoint_sha256"] = sha256(last)
    atomic_json(out / STATE, state)


def resume(out: Path, vocabulary: list[str]) -> tuple[dict[str, Any], Any] | None:
    """The newest (state, model) pair of run folder `out` whose checkpoint is sound; None: nothing to resume.

    A state names its checkpoint by SHA-256 (runs from before that: ``last.keras``);
    a checkpoint that is missing, differs from its hash or does not load is reported
    in one log line and the pair before it is tried.  None of them usable: `DataError`.
    """
    import keras

    states = read_states(out)
    files = [f for f in (out / "last.keras", out / "previous.keras") if f.is_file()]
    if not states:
        return None
    for state_path, state in sorted(states, key=lambda s: -int(s[1].get("epoch", 0))):
        if state.get("vocabulary") != vocabulary:
            raise DataError(f"{out}: checkpoint was trained on another vocabulary; use --fresh or another --out")
        want = state.get("checkpoint_sha256")
        for f in files if want is None else [f for f in files if sha256(f) == want]:
            try:
                model = keras.models.load_model(f)
            except Exception as exc:  # zipfile, h5py and Keras all have their own
                log.warning("%s is damaged (%s: %s); trying the checkpoint before it",
                            f, type(exc).__name__, str(exc).splitlines()[0][:80] if str(exc) else "")
                continue
            log.info("resuming from %s after epoch %d", f, state["epoch"])
            best = out / "best.keras"
            if state.get("best_epoch") == state["epoch"] and sha256(best) != sha256(f):
                atomic_copy(f, best)  # killed between the state and the best copy
            return state, model
        if want is not None:
            log.warning("%s: the checkpoint of epoch %s is missing or damaged; falling back to the one before",
                        state_path, state.get("epoch"))
    raise DataError(f"{out}: no usable checkpoint (last.keras and previous.keras are missing or damaged); "
                    "use --fresh or another --out")


def epoch_bar(epoch: int, epochs: int, batches: int):
    """A Keras callback drawing one tqdm bar per epoch, numbered as the run counts ("epoch 40/60")."""
    import keras
    from tqdm import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_epoch_begin(self, _epoch, logs=None) -> None:
            self.bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)

        def on_train_batch_end(self, _batch, logs=None) -> None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

        def on_epoch_end(self, _epoch, logs=None) -> None:
            self.bar.close()

    return EpochBar()


def keep_corpus_stats(state: dict[str, Any], corpus, out: Path) -> None:
    """Record in `state` (state.json) the corpus the run trains on: {"source", "stats"}, what
    `jamd export` writes into the model's metadata whatever the corpus folder holds by then.  A
    resumed run keeps what it started with (one info line if the corpus has changed since)."""
    now = {"source": corpus.source, "stats": corpus.stats}
    kept = state.setdefault("corpus", now)
    before = (kept.get("source"), (kept.get("stats") or {}).get("kept"))
    if before != (corpus.source, corpus.stats.get("kept")):  # load_seconds and the like differ every time
        log.info("%s: the corpus has changed since this run started (%s, %s tunes kept; now %s, %s); the run "
                 "keeps the stats it started with", out, *before, corpus.source, corpus.stats.get("kept"))


def device_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({len(gpus)}x {gpus[0].name})" if gpus else "CPU"


def _steps(windows_per_epoch: int, role, batch_size: int, max_steps: int | None, what: str) -> tuple[int, int, int]:
    """(steps, per-replica batch, windows per input pipeline) of one pass over `windows_per_epoch`
    windows.  One replica: every window, the last batch may be short.  Several: every pipeline
    (worker) gets the same count and every batch is full (a cluster's steps must agree)."""
    per_pipeline = windows_per_epoch // role.workers
    group = batch_size * role.local_replicas
    if role.replicas == 1:
        steps = -(-per_pipeline // batch_size)
    else:
        if per_pipeline < role.local_replicas:
            raise DataError(f"{what}: {windows_per_epoch} windows are too few for {role.replicas} replicas")
        batch_size = min(batch_size, per_pipeline // role.local_replicas)
        group = batch_size * role.local_replicas
        steps = per_pipeline // group
    if steps < 1:
        raise DataError(f"{what}: corpus too small for sequence_length and batch_size ({windows_per_epoch} windows)")
    if max_steps:
        steps = min(steps, max_steps)
    return steps, batch_size, min(per_pipeline, steps * group)


def train(cfg: Config, out_dir: str | Path | None = None, fresh: bool = False, progress: bool = True,
          cluster: str | None = None, task: str | None = None) -> dict[str, Any]:
    """Train (or resume) the LSTM; returns the run's figures (figures["chief"]: this process wrote
    the run folder).  cluster / task: `jamd train --cluster/--task` (None: training.cluster, then
    TF_CONFIG).  Raises DataError (corpus, checkpoint, a lost worker), ConfigError, UsageError."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from . import stream as st
    from .distribute import (
        backup_dir,
        build_for_strategy,
        copy_state,
        distributed,
        drop_stale_backup,
        from_chief,
        lost_worker,
        resolve,
        sync_callback,
    )

    tc = cfg.training
    # first: MultiWorkerMirroredStrategy must exist before any other TensorFlow op
    role = resolve(tc.strategy, cluster or tc.cluster, task, "--cluster" if cluster else "training.cluster")

    import keras

    from jamd.training.corpus import load_corpus
    from jamd.training.lstm_model import build_training_model

    out = Path(out_dir or tc.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if role.is_chief:
        clean_stale_temps(out)
    corpus = load_corpus(cfg.corpus, progress=progress, input_channels=cfg.live.input_channels)
    train_idx, val_idx = corpus.split()
    L = tc.sequence_length
    vocab, spec = st.model_spec(corpus.vocab, tc)
    n_train = st.stream_tokens(corpus, train_idx, L)
    # no validation tunes: the first 10 training windows, as before
    vx, vp, vy = st.validation_arrays(corpus, val_idx or train_idx, spec, limit=None if val_idx else 10)
    log.info("corpus %s: %d training tunes (%d tokens), %d validation tunes (%d windows), vocabulary %d (%s)",
             corpus.source, len(train_idx), n_train, len(val_idx), len(vx), len(vocab), tc.transpose)
    device = device_description()
    log.info("training on %s, %s; global batch %d windows", device, role.describe(), tc.batch_size * role.replicas)

    last_path, best_path = out / "last.keras", out / "best.keras"
    state: dict[str, Any] = {"epoch": 0, "best_val_loss": None, "best_epoch": 0, "wait": 0,
                             "history": {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []},
                             "epoch_seconds": []}
    backup = backup_dir(out, role)
    resumed = None if fresh or not role.is_chief else resume(out, list(vocab.symbols))
    if resumed is not None:
        state, model = resumed
    if role.kind != "default":
        # every worker creates the same variables in the same order (MultiWorkerMirroredStrategy
        # broadcasts each one's initial value as it is made); the chief's checkpoint is copied in
        loaded = model if resumed is not None else None
        with role.strategy.scope():
            model = build_training_model(len(vocab), tc.units, tc.dropout, tc.learning_rate, layers=tc.layers,
                                         metric_position=tc.metric_position)
        build_for_strategy(model, role, st.features(vx[:1], None if vp is None else vp[:1]), vy[:1])
        if loaded is not None:
            copy_state(loaded, model)
    elif resumed is None:
        model = build_training_model(len(vocab), tc.units, tc.dropout, tc.learning_rate,
                                     layers=tc.layers, metric_position=tc.metric_position)
    state["vocabulary"] = list(vocab.symbols)
    state["config"] = {"training": asdict(tc), "corpus": asdict(cfg.corpus)}
    keep_corpus_stats(state, corpus, out)
    callbacks: list = []
    epoch_box = [int(state["epoch"])]
    if role.kind == "multi-worker":
        drop_stale_backup(backup, (0 if fresh else int(state["epoch"])) if role.is_chief else -1 if fresh else None)
        callbacks = [keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True, delete_checkpoint=False),
                     sync_callback(role, epoch_box)]

    vsteps, vbatch, vlimit = _steps(len(vx), role, tc.batch_size, None, "validation")
    val = distributed(role, lambda shard, shards: st.array_dataset(
        vx, vp, vy, vbatch, shard, shards, vlimit, drop_remainder=role.replicas > 1))
    seed = cfg.corpus.split_seed * 7919 + tc.batch_size
    try:
        epoch = int(from_chief(role.strategy, np.array([state["epoch"]], dtype=np.float64))[0])
        while epoch < tc.epochs:
            stop = role.is_chief and bool(tc.patience) and state["wait"] >= tc.patience
            if from_chief(role.strategy, np.array([float(stop)]))[0]:  # every worker stops with the chief
                log.info("stopping early: no better validation loss for %d epochs", tc.patience)
                break
            draws = st.epoch_draws(seed, epoch, L)
            steps, batch, limit = _steps(st.window_count(n_train, L, draws.offset), role, tc.batch_size,
                                         tc.max_steps_per_epoch, "training")
            ds = distributed(role, lambda shard, shards, d=draws, b=batch, n=limit: st.window_dataset(
                st.epoch_windows(corpus, train_idx, spec, d, shard, shards, n), spec, b, tc.shuffle_buffer,
                d.shuffle_seed, drop_remainder=role.replicas > 1))
            t0 = time.perf_counter()
            epoch_box[0] = epoch
            # Keras stays quiet (verbose=0): its "Epoch 1/1" counts fit's one-epoch calls, not the
            # run's; jamd shows its own bar (--no-progress: none) and one log line per epoch
            bar = [epoch_bar(epoch + 1, tc.epochs, steps)] if progress else []
            h = model.fit(ds, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps, validation_data=val,
                          validation_steps=vsteps, verbose=0, shuffle=False, callbacks=[*callbacks, *bar])
            seconds = time.perf_counter() - t0
            for k in state["history"]:
                state["history"][k].append(float(h.history[k][-1]))
            state["epoch_seconds"].append(seconds)
            # windows trained this epoch: `limit` on each worker's input pipeline
            state.setdefault("tokens_per_second", []).append(limit * role.workers * L / seconds)
            val_loss = state["history"]["val_loss"][-1]
            log.info("epoch %d/%d: loss %.4f, val_loss %.4f, val_accuracy %.4f (%.1f s, %.0f tokens/s)", epoch + 1,
                     tc.epochs, state["history"]["loss"][-1], val_loss, state["history"]["val_accuracy"][-1], seconds,
                     state["tokens_per_second"][-1])
            epoch += 1
            state["epoch"] = epoch
            best = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
            if best:
                state.update(best_val_loss=val_loss, best_epoch=epoch, wait=0)
            else:
                state["wait"] += 1
            if role.is_chief:  # other workers keep only their backup: two writers of one folder would race
                save_checkpoint(model, state, out)
                if best:  # after the state: a kill before this copy is made good at resume
                    atomic_copy(last_path, best_path)
                plot_history(state["history"], out / "loss.png")
    except Exception as exc:  # a collective whose peer went away: one line
        lost_worker(exc, role)
        raise
    return _figures(state, corpus, train_idx, val_idx, n_train, device, role, out)


def _figures(state: dict, corpus, train_idx: list, val_idx: list, n_train: int, device: str, role,
             out: Path) -> dict[str, Any]:
    # a worker of a cluster that joined at a resume holds only the epochs it ran
    best = state["best_epoch"] - 1 - (state["epoch"] - len(state["history"]["loss"]))
    best = best if 0 <= best < len(state["history"]["loss"]) else -1
    tps = state.get("tokens_per_second") or []
    figures = {
        "corpus": corpus.source,
        "training_tunes": len(train_idx),
        "validation_tunes": len(val_idx),
        "training_tokens": int(n_train),
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "val_loss": state["history"]["val_loss"][best] if best >= 0 else None,
        "val_accuracy": state["history"]["val_accuracy"][best] if best >= 0 else None,
        "train_loss": state["history"]["loss"][best] if best >= 0 else None,
        "median_epoch_seconds": float(np.median(state["epoch_seconds"])) if state["epoch_seconds"] else None,
        "median_tokens_per_second": float(np.median(tps)) if tps else None,
        "device": device,
        "strategy": role.describe(),
        "replicas": role.replicas,
        "chief": role.is_chief,
    }
    if role.is_chief:
        atomic_json(out / "figures.json", figures)
        loss, acc = figures["val_loss"], figures["val_accuracy"]
        log.info("best epoch %s: val_loss %s, val_accuracy %s; run folder %s", figures["best_epoch"],
                 "–" if loss is None else f"{loss:.4f}", "–" if acc is None else f"{acc:.4f}", out)
    return figures
