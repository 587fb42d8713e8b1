"""How long before a deadline the sender stops sleeping and spins (`clock.spin_us` at most).

The sender sleeps on a condition variable and spins on the clock for the
last stretch, because a sleeping thread wakes late.  How late depends on the
machine: a SCHED_FIFO thread on this project's VM wakes 50-100 µs after its
timeout even at load average 6, a normal-priority one up to tens of ms, and
the GIL can add up to the switch interval (0.5 ms).  A fixed 1 ms spin before
each of the ~16 events a second at 120 BPM is 1.6% of a core, most of it
spent where a quarter of it would do.  So the margin follows the sender's own
recent wake-ups: the latest of the last `WINDOW`, plus `SLACK_NS`, within
[`FLOOR_NS`, spin_us].  It starts at spin_us and grows back to it on the
first late wake-up.  (Twice the latest, as first written, spun ~310 µs per
event on an idle VM, whose wake-ups are later than a busy one's: 0.45 % of a
core for the sender alone; a wake-up later than all of the last 32 and the
slack makes one event late by the difference, far inside the 0.5 ms p99.)
"""

from __future__ import annotations

from collections import deque

WINDOW = 32  # wake-ups: two seconds of 16ths at 120 BPM
FLOOR_NS = 100_000  # never less: a wake-up the window has not seen yet
SLACK_NS = 50_000


class AdaptiveSpin:
    """The spin margin in ns (`ns`), from the lateness of the sender's timed-out waits."""

    def __init__(self, max_ns: int, adaptive: bool = True):
        self.max_ns = max_ns
        self.adaptive = adaptive
        self.ns = max_ns
        self._late: deque[int] = deque(maxlen=WINDOW)

    def observe(self, late_ns: int) -> None:
        """One wake-up `late_ns` after the time asked for (ns, negative: early)."""
        if not self.adaptive:
            return
        late = max(0, late_ns)
        self._late.append(late)
        worst = max(self._late)
        if len(self._late) < WINDOW:  # too few seen yet: only ever grow
            self.ns = max(self.ns, min(self.max_ns, worst + SLACK_NS))
            return
        self.ns = min(self.max_ns, max(min(FLOOR_NS, self.max_ns), worst + SLACK_NS))
