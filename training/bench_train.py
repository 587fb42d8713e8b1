"""Training throughput for `jamd bench --suite train`: tokens per second, 1 worker vs 2.

For each model size (units x layers) the LSTM trains on the configured corpus
(`corpus.source`) through `train_lstm.train`, the same code as `jamd train`:
once as one process, once as a cluster of two worker processes on this machine
(localhost ports, MultiWorkerMirroredStrategy over gRPC, each worker a replica,
so a step trains on 2 x batch_size windows).  Each run trains `epochs` short
epochs of `steps` steps; the first (tracing, warm-up) is left out and the
median of the others is reported: tokens per second = steps x global batch x
sequence_length / epoch seconds (the epoch time includes its validation, which
here is 10 fixed windows: corpus.validation_fraction=0).  Scaling efficiency =
tokens/s of 2 workers / (2 x tokens/s of 1 worker).

On one machine the two workers share its cores, so this measures the cost of
the collectives more than a speed-up; on two machines each has its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from jamd.training.distribute import free_local_ports

SIZES = ((256, 1), (512, 2))  # (units, layers)


def measure(sets: list[str], workers: int, out: Path, timeout: float = 1800) -> dict[str, Any]:
    """Train with `sets` (config overrides) as 1 process or a localhost cluster of `workers`;
    the chief's figures and its per-epoch tokens/s."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": os.environ.get(
        "CUDA_VISIBLE_DEVICES", "")}
    cmd = [sys.executable, "-m", "jamd.training.bench_train", "--out", str(out), *sets]
    if workers == 1:
        tasks = [[]]
    else:
        cluster = ",".join(f"worker=localhost:{p}" for p in free_local_ports(workers))
        tasks = [["--cluster", cluster, "--task", f"worker:{i}"] for i in range(workers)]
    logs = [open(out.with_name(f"{out.name}-{i}.log"), "w+") for i in range(len(tasks))]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, *t], stdout=log, stderr=subprocess.STDOUT, env=env)
             for t, log in zip(tasks, logs, strict=True)]
    try:
        codes = [p.wait(timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    for code, log in zip(codes, logs, strict=True):
        log.seek(0)
        text = log.read()
        log.close()
        if code != 0:
            raise RuntimeError(f"a training worker failed (exit {code}): {text[-2000:]}")
    state = json.loads((out / "state.json").read_text())
    tps = state["tokens_per_second"][1:] or state["tokens_per_second"]
    return {"workers": workers, "tokens_per_second": float(np.median(tps)), "epochs_timed": len(tps),
            "epoch_seconds": state["epoch_seconds"], "wall_seconds": wall}


def pipeline_rate(cfg: Any, batch_size: int, batches: int = 100, block: int = 256) -> dict[str, Any]:
    """The input pipeline alone (no model): `jamd train`'s streamed tf.data windows of the
    configured corpus, epoch 0's draws, `batch_size` windows a batch, `block` windows per
    `from_generator` element (1: as before 2026-12-06).  The batches that fill the
    shuffle buffer are left out; tokens/s = batches x batch_size x sequence_length / seconds.
    The epoch's pipeline starts again when it ends (`repeat`), as training builds one per epoch,
    so a corpus smaller than the shuffle buffer (Erk: one epoch is ~16 batches of 256) is measured
    too.  DataError when the training tunes give no window."""
    from jamd.errors import DataError

    from . import stream as st
    from .corpus import load_corpus

    tc = cfg.training
    corpus = load_corpus(cfg.corpus, progress=False, input_channels=cfg.live.input_channels)
    train_idx, _ = corpus.split()
    L = tc.sequence_length
    _, spec = st.model_spec(corpus.vocab, tc)
    if st.window_count(st.stream_tokens(corpus, train_idx, L), L, L - 1) < 1:
        raise DataError(f"corpus {corpus.source}: its training tunes give no window of {L} 16ths")

    # a Python generator chaining the epochs instead cost a third of the rate (3.0 M vs 4.4 M tokens/s)
    ds = st.window_dataset(st.epoch_windows(corpus, train_idx, spec, st.epoch_draws(0, 0, L)), spec,
                           batch_size, tc.shuffle_buffer, 0, drop_remainder=True, block=block).repeat()
    fill = tc.shuffle_buffer // batch_size + 2
    it = iter(ds)
    for _ in range(fill):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):  # repeated: the stream never ends
        next(it)
    seconds = time.perf_counter() - t0
    return {"batch_size": batch_size, "block": block, "batches": batches, "seconds": seconds,
            "tokens_per_second": batches * batch_size * L / seconds}


def run_suite(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """The suite (see the module text); prints a Markdown table, returns the figures."""
    steps = 3 if args.quick else 12
    epochs = 2 if args.quick else 3
    sizes = SIZES[:1] if args.quick else SIZES
    tc = cfg.training
    base = [f"corpus.source={cfg.corpus.source}", f"corpus.cache_dir={cfg.corpus.cache_dir}",
            "corpus.validation_fraction=0", f"training.max_steps_per_epoch={steps}", f"training.epochs={epochs}",
            "training.patience=0", f"training.batch_size={tc.batch_size}",
            f"training.sequence_length={tc.sequence_length}",
            f"training.metric_position={str(tc.metric_position).lower()}", f"training.transpose={tc.transpose}",
            "training.strategy=auto", f"training.shuffle_buffer={tc.shuffle_buffer}"]
    from jamd.training.corpus import load_corpus

    load_corpus(cfg.corpus, progress=True, input_channels=cfg.live.input_channels)  # parsed once, before timing
    rows = []
    with tempfile.TemporaryDirectory(prefix="jamd-bench-train-") as tmp:
        for units, layers in sizes:
            sets = [*base, f"training.units={units}", f"training.layers={layers}"]
            one = measure(sets, 1, Path(tmp) / f"u{units}l{layers}w1")
            two = measure(sets, 2, Path(tmp) / f"u{units}l{layers}w2")
            rows.append({"units": units, "layers": layers, "one_worker": one, "two_workers": two,
                         "efficiency": two["tokens_per_second"] / (2 * one["tokens_per_second"])})
    pipeline = pipeline_rate(cfg, 256, 20 if args.quick else 100)
    one_by_one = pipeline_rate(cfg, 256, 20 if args.quick else 100, block=1)
    figures = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "steps_per_epoch": steps,
               "epochs": epochs, "batch_size_per_worker": tc.batch_size, "sequence_length": tc.sequence_length,
               "metric_position": tc.metric_position, "corpus": cfg.corpus.source, "sizes": rows,
               "input_pipeline": pipeline, "input_pipeline_one_window_per_element": one_by_one}
    print(f"\nLSTM training throughput, CPU ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}), "
          f"corpus {cfg.corpus.source}, batch {tc.batch_size} per worker, sequence {tc.sequence_length}\n")
    print("| units x layers | 1 worker tokens/s | 2 workers tokens/s | scaling efficiency |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['units']} x {r['layers']} | {r['one_worker']['tokens_per_second']:.0f} | "
              f"{r['two_workers']['tokens_per_second']:.0f} | {r['efficiency']:.0%} |")
    print(f"\nInput pipeline alone (streamed windows, batch 256, no model): "
          f"{pipeline['tokens_per_second']:,.0f} tokens/s (one window per tf.data element, as before "
          f"2026-12-06: {one_by_one['tokens_per_second']:,.0f})")
    return figures


def _worker(argv: list[str]) -> int:
    """One training process of the suite: --out DIR [--cluster C --task T] KEY=VALUE..."""
    p = argparse.ArgumentParser(prog="python -m jamd.training.bench_train")
    p.add_argument("--out", required=True)
    p.add_argument("--cluster")
    p.add_argument("--task")
    p.add_argument("sets", nargs="*")
    a = p.parse_args(argv)
    from jamd import config
    from jamd.training.train_lstm import train

    cfg = config.load(None, a.sets)
    train(cfg, a.out, fresh=True, progress=False, cluster=a.cluster, task=a.task)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
