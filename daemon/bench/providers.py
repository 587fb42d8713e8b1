"""`jamd bench --suite providers`: every shipped model on the CPU and on CUDA, in one run.

For each execution provider ONNX Runtime offers here (the CPU always; CUDA where
onnxruntime-gpu is installed and its CUDA and cuDNN libraries load), each model is
opened with ``model.providers`` set to it, exactly as `jamd run` opens it, and timed
through the daemon's own classes:

* **LSTM step models** (``lstm``, ``lstm-folk``): `LstmGenerator.feed`, one 16th at
  batch 1 (µs per call), the daemon's only use of them;
* **GAN generators** (``gan``, ``cgan``, ``gan_seed``): `BarGenerator.next_bar` at
  batch 1 (µs per bar, candidates and choice included) and bars per second when
  `BarGenerator.bars` generates in batches of 16..1,024 (`jamd generate`, evaluation);
* **the harmony model**: `HarmonyModel.step`, one beat at batch 1.

It also times opening each session (ms; CUDA's first session pays for loading
cuBLAS/cuDNN) and reads back the provider really in use, since ONNX Runtime falls
back to the CPU silently (`jamd.inference.runtime.make_session`).  A provider that
cannot load is reported as such, not hidden.  Figures: docs/BENCHMARKS.md
"CPU and CUDA".
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ModelError
from ..inference import runtime
from ..inference.model_store import load_info, resolve, shipped_model_names
from .timing import timeit_us

GAN_BATCHES = (16, 64, 256, 1024)


def _providers() -> list[str]:
    """`model.providers` values to measure: cpu, and cuda where this ONNX Runtime has it."""
    import onnxruntime as ort

    return ["cpu", "cuda"] if runtime.CUDA in ort.get_available_providers() else ["cpu"]


def _stats(us: np.ndarray) -> dict[str, float]:
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)), "n": int(len(us))}


def _loaded(cls, name: str, model_cfg) -> tuple[Any, float]:
    """`cls.load(name, model_cfg)` and how long it took (ms): the session the figures are taken on."""
    t0 = time.perf_counter()
    model = cls.load(name, model_cfg)
    return model, (time.perf_counter() - t0) * 1e3


def _lstm(name: str, model_cfg, calls: int) -> tuple[Any, dict[str, Any]]:
    from ..inference.lstm import LstmGenerator

    gen, load_ms = _loaded(LstmGenerator, name, model_cfg)
    gen.reset()
    ids = np.random.default_rng(0).integers(0, len(gen.vocab), calls + 20)
    it = iter(ids.tolist())
    us = timeit_us(lambda: gen.feed(next(it)), calls, warmup=20)
    return gen.session, {"per_call": _stats(us), "unit": "16th", "load_ms": load_ms}


def _gan(name: str, model_cfg, calls: int) -> tuple[Any, dict[str, Any]]:
    """next_bar at batch 1, then bars/s in batches (only 16 for fewer than 200 calls: --quick)."""
    from ..inference.gan import BarGenerator

    gen, load_ms = _loaded(BarGenerator, name, model_cfg)
    rng = np.random.default_rng(0)
    prev = ["60", "_", "_", "_", "64", "_", "_", "_", "67", "_", "_", "_", "72", "_", "_", "_"][: gen.steps_per_bar]
    us = timeit_us(lambda: gen.next_bar(prev, 0.9, rng), calls, warmup=10)
    batches = {}
    for b in GAN_BATCHES if calls >= 200 else GAN_BATCHES[:1]:
        reps = max(5, min(50, 4 * calls // b))
        t = timeit_us(lambda b=b: gen.bars(b, 0.9, rng, prev), reps, warmup=2)
        batches[b] = float(b / (np.median(t) / 1e6))
    return gen.session, {"per_call": _stats(us), "unit": "bar", "bars_per_second": batches, "load_ms": load_ms}


def _harmony(name: str, model_cfg, calls: int) -> tuple[Any, dict[str, Any]]:
    from ..inference.harmony import HarmonyModel

    model, load_ms = _loaded(HarmonyModel, name, model_cfg)
    x = np.zeros(model._x.shape[1], np.float32)
    us = timeit_us(lambda: model.step(x), calls, warmup=20)
    return model.session, {"per_call": _stats(us), "unit": "beat", "load_ms": load_ms}


MEASURE = {"lstm": _lstm, "gan": _gan, "harmony": _harmony}


def _family(kind: str) -> str | None:
    from ..inference import harmony, lstm
    from ..inference.gan import KINDS as GAN_KINDS

    families = {lstm.KIND: "lstm", harmony.KIND: "harmony", **{k: "gan" for k in GAN_KINDS}}
    return families.get(kind)


def measure(name: str, cfg: Config, provider: str, calls: int) -> dict[str, Any]:
    """One model on one provider: load time (ms, of the session measured), the provider in use and
    the per-call figures."""
    family = _family(load_info(resolve(name)).kind)
    model_cfg = dataclasses.replace(cfg.model, providers=provider)
    t0 = time.perf_counter()
    try:
        session, figures = MEASURE[family](name, model_cfg, calls)
    except ModelError as exc:
        return {"model": name, "provider": provider, "error": str(exc)}
    figures.update(model=name, family=family, provider=provider, used=session.get_providers()[0],
                   total_s=time.perf_counter() - t0)
    return figures


def _first_session_ms(name: str, cfg: Config, provider: str) -> float:
    """Opening a first session on `provider` (ms): CUDA's loads cuBLAS/cuDNN, which no later one pays."""
    t0 = time.perf_counter()
    runtime.make_session(resolve(name), provider, cfg.model.intra_op_threads)
    return (time.perf_counter() - t0) * 1e3


def run(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    import onnxruntime as ort

    calls = 50 if args.quick else max(args.steps, 200)
    families = {n: _family(load_info(resolve(n)).kind) for n in shipped_model_names()}
    names = sorted((n for n, f in families.items() if f), key=lambda n: (list(MEASURE).index(families[n]), n))
    providers = _providers()
    figures: dict[str, Any] = {"onnxruntime": ort.__version__, "device": ort.get_device(),
                               "available": ort.get_available_providers(), "providers": providers,
                               "intra_op_threads": cfg.model.intra_op_threads, "models": []}
    for provider in providers:
        figures.setdefault("first_session_ms", {})[provider] = _first_session_ms(names[0], cfg, provider)
        figures["models"] += [measure(name, cfg, provider, calls) for name in names]
    _print(figures)
    return figures


def _print(f: dict[str, Any]) -> None:
    print(f"\nONNX Runtime {f['onnxruntime']} ({f['device']}), providers available: "
          f"{', '.join(f['available'])}; CPU sessions use {f['intra_op_threads']} intra-op thread\n")
    if "cuda" not in f["providers"]:
        print("CUDA: not available in this ONNX Runtime (install jamd[gpu] on a machine with an NVIDIA GPU)\n")
    print("first session per provider (ms): " + ", ".join(
        f"{p} {ms:,.0f}" for p, ms in f["first_session_ms"].items()) + "\n")
    head = " | ".join(f"bars/s at {b}" for b in GAN_BATCHES)
    print(f"| model | asked | ran on | load ms | per call | median µs | p99 µs | {head} |")
    print("|---" * (7 + len(GAN_BATCHES)) + "|")
    for m in f["models"]:
        if "error" in m:
            print(f"| {m['model']} | {m['provider']} | — | — | — | {m['error']} |" + " |" * len(GAN_BATCHES))
            continue
        bps = m.get("bars_per_second", {})
        per = " | ".join(f"{bps[b]:,.0f}" if b in bps else "" for b in GAN_BATCHES)
        pc = m["per_call"]
        print(f"| {m['model']} | {m['provider']} | {m['used'].replace('ExecutionProvider', '')} | "
              f"{m['load_ms']:,.0f} | {m['unit']} | {pc['median_us']:,.1f} | {pc['p99_us']:,.1f} | {per} |")
