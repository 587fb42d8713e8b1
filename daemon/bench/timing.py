"""Timing helpers shared by the `jamd bench` suites (and the test rig's player)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

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


def send_at_times(send: Callable[[list[int]], object], timed: Sequence[tuple[int, Sequence[int]]]) -> list[int]:
    """Send each `(t_ns, message)` at its `perf_counter_ns` time (sleep, then spin);
    return when each really went, in time order (the order the messages are sent).

    A busy machine makes sends late; callers that need exact times use the
    returned ones, so lateness costs nothing.  At normal priority on purpose: a
    SCHED_FIFO thread spinning here, with jamd's real-time sender spinning on
    the other core, starved a non-realtime JACK server (the test rig's, the
    clock bench's), which then dropped MIDI events (clocks lost, song position gone).
    """
    # sorted (stable) and copied to lists before the first send, not between sends
    ordered = [(t_ns, list(message)) for t_ns, message in sorted(timed, key=lambda e: e[0])]
    sent = []
    for t_ns, message in ordered:
        # sleep to 2 ms short of the time (a wake-up can be that late), then spin
        wait = (t_ns - time.perf_counter_ns()) / 1e9 - 0.002
        if wait > 0:
            time.sleep(wait)
        while time.perf_counter_ns() < t_ns:
            pass
        send(message)
        sent.append(time.perf_counter_ns())
    return sent
