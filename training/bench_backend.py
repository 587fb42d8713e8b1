"""The LSTM's Keras training step on any Keras 3 backend: tokens per second per model size.

    KERAS_BACKEND=jax python -m jamd.training.bench_backend --sizes 256x1,512x2 --out figures.json

`jamd train` trains with TensorFlow (tf.data, tf.distribute); this measures only the
model's own training step, `jamd.training.lstm_model.build_training_model` compiled
as `jamd train` compiles it, fed random token windows (an LSTM's arithmetic does not
depend on the token values) through `model.fit`.  It exists for machines where
TensorFlow's GPU build cannot be installed but another backend's can (the GPU
machine this project was lent: CUDA 13 and JAX/PyTorch, no network, while
TensorFlow 2.21's GPU build needs CUDA 12 and ~3 GB of wheels), so that the
practitioner sizing a run has a GPU figure for the same model.  It is not
TensorFlow's figure: TensorFlow runs a Keras LSTM through cuDNN on a GPU, JAX
through a `lax.scan` of its own kernels, PyTorch through `torch.nn.LSTM` where
Keras allows it.

Tokens per second = batch x sequence_length x steps / epoch seconds, the median of
the epochs after the first (which compiles); figures for docs/BENCHMARKS.md
"Training throughput".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def _device() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}))
    if backend == "torch":
        import torch

        return f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else \
            f"cpu ({torch.get_num_threads()} threads)"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu x{len(gpus)}" if gpus else "cpu"
    return backend


def measure(units: int, layers: int, vocab: int, batch: int, seq: int, steps: int,
            epochs: int) -> dict[str, Any]:
    """Train `epochs` epochs of `steps` batches; seconds per epoch and tokens/s after the first."""
    import keras

    from jamd.tokens import METRIC_POSITIONS
    from jamd.training.lstm_model import build_training_model

    keras.utils.set_random_seed(0)
    model = build_training_model(vocab, units=units, layers=layers, metric_position=True)
    rng = np.random.default_rng(0)
    n = batch * steps
    tokens = rng.integers(0, vocab, (n, seq), dtype=np.int32)
    position = np.tile(np.arange(seq, dtype=np.int32) % METRIC_POSITIONS, (n, 1))
    target = rng.integers(0, vocab, (n, seq), dtype=np.int32)
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # the loss is read back: the epoch has finished
            times.append(time.perf_counter() - self.t0)

    model.fit({"tokens": tokens, "position": position}, target, batch_size=batch, epochs=epochs,
              shuffle=False, verbose=0, callbacks=[Clock()])
    settled = float(np.median(times[1:])) if len(times) > 1 else times[0]
    return {"units": units, "layers": layers, "batch": batch, "sequence_length": seq, "steps": steps,
            "first_epoch_s": times[0], "epoch_s": settled, "tokens_per_second": batch * seq * steps / settled,
            "parameters": int(model.count_params())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256x1,512x2", help="UNITSxLAYERS, comma-separated")
    p.add_argument("--vocab", type=int, default=46, help="vocabulary size (lstm-folk's: 46)")
    p.add_argument("--batch", type=int, default=256, help="windows per step")
    p.add_argument("--seq", type=int, default=64, help="16ths per window (training.sequence_length)")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=4, help="epochs; the first compiles and is left out")
    p.add_argument("--out", type=Path, help="append the figures as one JSON line")
    a = p.parse_args(argv)
    import keras

    head = {"backend": keras.backend.backend(), "device": _device(), "keras": keras.__version__}
    for size in a.sizes.split(","):
        units, layers = (int(v) for v in size.lower().split("x"))
        row = {**head, **measure(units, layers, a.vocab, a.batch, a.seq, a.steps, a.epochs)}
        print(f"{row['backend']} on {row['device']}: {units}x{layers} batch {a.batch}: "
              f"{row['tokens_per_second']:,.0f} tokens/s (epoch {row['epoch_s']:.3f} s, "
              f"first {row['first_epoch_s']:.1f} s)", flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main())
