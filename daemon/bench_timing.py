"""Timing helpers shared by the `jamd bench` suites."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timeit_us(fn: Callable[[], object], n: int, warmup: int = 5) -> np.ndarray:
    """Wall time of `n` calls of `fn`, one by one, in microseconds (after `warmup` calls)."""
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - t0
    return out / 1e3


def stats(us: np.ndarray) -> dict[str, float]:
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)), "n": int(len(us))}
