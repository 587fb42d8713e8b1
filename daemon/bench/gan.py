"""`jamd bench --suite gan`: the per-bar GAN generators in ONNX Runtime on the CPU.

For each shipped GAN model (or `--set model.name=...` when it is a GAN):

* **latency per bar at batch 1**: `BarGenerator.next_bar`, what the daemon
  calls once per bar (z drawn for each of the model's `selection.candidates`
  candidate bars, one `session.run` over them, each step sampled, the best
  continuation chosen), the same with one candidate (the bare model), and
  the bare `session.run` of one bar under it;
* **bars per second in batches** of 16, 64 and 256 (`BarGenerator.bars`,
  what `jamd generate` and `jamd eval` use; each bar chosen among its
  candidates, so a batch of 64 bars runs 64 x candidates rows).

No TensorFlow: this is the daemon's own path.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..config import Config
from ..inference.gan import KINDS, BarGenerator
from ..inference.gan_selection import BARE
from ..inference.model_store import load_info, resolve, shipped_model_names
from .timing import timeit_us

BATCHES = (16, 64, 256)


def _models(cfg: Config) -> list[str]:
    named = [cfg.model.name] if load_info(resolve(cfg.model.name)).kind in KINDS else []
    shipped = [n for n in shipped_model_names() if load_info(resolve(n)).kind in KINDS]
    return named or shipped


def measure(name: str, cfg: Config, calls: int) -> dict[str, Any]:
    gen = BarGenerator.load(name, cfg.model)
    rng = np.random.default_rng(0)
    prev = ["60", "_", "_", "_", "64", "_", "_", "_", "67", "_", "_", "_", "72", "_", "_", "_"][: gen.steps_per_bar]
    z = rng.standard_normal((1, gen.latent_dim)).astype(np.float32)
    prev_ids = gen.encode_bar(prev)[None, :] if gen.conditional else None
    bar = timeit_us(lambda: gen.next_bar(prev, 0.9, rng), calls, warmup=10)
    bare = BarGenerator(gen.session, gen.info, BARE)
    bar1 = timeit_us(lambda: bare.next_bar(prev, 0.9, rng), calls, warmup=10)
    raw = timeit_us(lambda: gen.logits(z, prev_ids), calls, warmup=10)
    batches = {}
    for b in BATCHES:
        reps = max(5, calls // b)
        us = timeit_us(lambda b=b: gen.bars(b, 0.9, rng, prev), reps, warmup=2)
        batches[b] = {"median_us": float(np.median(us)), "bars_per_second": float(b / (np.median(us) / 1e6))}
    return {
        "model": name, "kind": gen.kind, "steps_per_bar": gen.steps_per_bar, "latent_dim": gen.latent_dim,
        "onnx_bytes": gen.info.path.stat().st_size,
        "candidates": gen.selection.candidates,
        "next_bar": {"median_us": float(np.median(bar)), "p99_us": float(np.percentile(bar, 99)), "n": calls},
        "next_bar_one_candidate": {"median_us": float(np.median(bar1)), "p99_us": float(np.percentile(bar1, 99)),
                                   "n": calls},
        "session_run": {"median_us": float(np.median(raw)), "p99_us": float(np.percentile(raw, 99)), "n": calls},
        "batches": batches,
    }


def run(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    calls = 200 if args.quick else max(args.steps, 100)
    figures = {"cpu_threads": cfg.model.intra_op_threads, "providers": cfg.model.providers,
               "models": [measure(name, cfg, calls) for name in _models(cfg)]}
    print(f"\nGAN generators, CPU, {cfg.model.intra_op_threads} intra-op thread (model.intra_op_threads)\n")
    head = " | ".join(f"bars/s at batch {b}" for b in BATCHES)
    print(f"| model | kind | size | candidates | next_bar median µs | p99 µs | one candidate median µs | "
          f"bare run median µs | {head} |")
    print("|---" * (8 + len(BATCHES)) + "|")
    for m in figures["models"]:
        per = " | ".join(f"{m['batches'][b]['bars_per_second']:,.0f}" for b in BATCHES)
        print(f"| {m['model']} | {m['kind']} | {m['onnx_bytes'] / 1e6:.1f} MB | {m['candidates']} | "
              f"{m['next_bar']['median_us']:.0f} | {m['next_bar']['p99_us']:.0f} | "
              f"{m['next_bar_one_candidate']['median_us']:.0f} | {m['session_run']['median_us']:.0f} | {per} |")
    return figures
