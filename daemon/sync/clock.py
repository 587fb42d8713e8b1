"""The one clock of `jamd run`: tempo, time signature and the 16th-note grid.

Every time in the daemon is a position on this grid, counted in 16th steps
since the clock started (a float for positions between steps, such as a
gated note-off).  A step becomes a wall-clock deadline only here:

    deadline(n) = origin_ns + (n - origin_step) * step_ns

so a late event never delays the ones after it (no accumulated drift).
A tempo change moves the origin to the current position, which keeps the
grid continuous: what is already scheduled simply plays at the new tempo.

Times are `time.perf_counter_ns()` values (CLOCK_MONOTONIC on Linux, the same
in every process, which lets tests in another process find our bar lines).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

from ..config import ClockConfig

NS_PER_S = 1_000_000_000


class _Timebase(NamedTuple):
    origin_ns: int
    origin_step: float
    step_ns: float


# A grid change that brings a deadline this much sooner wakes the sender (below it,
# the sender's spin absorbs the difference).
SOONER_NS = 100_000


def step_ns_for(bpm: float, beat_unit: int) -> float:
    """Nanoseconds per 16th note when `bpm` counts notes of value `beat_unit`."""
    beat_ns = 60 * NS_PER_S / bpm
    return beat_ns * beat_unit / 16


class Clock:
    """Maps grid steps to `perf_counter_ns` deadlines and back.

    Readers (the sender thread) and the writer (tempo change on reload) share
    one immutable `_Timebase` tuple that is swapped in a single assignment, so
    no lock is needed and a reader never sees half a tempo change.
    """

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, beat_unit: int = 4,
                 now_ns: Callable[[], int] = time.perf_counter_ns):
        if (16 * beats_per_bar) % beat_unit:
            raise ValueError(f"{beats_per_bar}/{beat_unit} is not a whole number of 16ths per bar")
        self._now_ns = now_ns
        self.beats_per_bar = beats_per_bar
        self.beat_unit = beat_unit
        self.steps_per_bar = 16 * beats_per_bar // beat_unit
        self._tb = _Timebase(now_ns(), 0.0, step_ns_for(bpm, beat_unit))
        self._bpm = bpm
        self._on_sooner: list[Callable[[], None]] = []

    @classmethod
    def from_config(cls, cfg: ClockConfig, now_ns: Callable[[], int] = time.perf_counter_ns) -> Clock:
        return cls(cfg.bpm, cfg.beats_per_bar, cfg.beat_unit, now_ns)

    # -- reading ------------------------------------------------------------
    @property
    def bpm(self) -> float:
        return self._bpm

    @property
    def step_ns(self) -> float:
        return self._tb.step_ns

    @property
    def origin_ns(self) -> int:
        """When step 0 was (or would have been, at the current tempo)."""
        tb = self._tb
        return int(round(tb.origin_ns - tb.origin_step * tb.step_ns))

    @property
    def steps_per_beat(self) -> int:
        """16ths in one beat of the time signature (a quarter: 4; an eighth: 2)."""
        return max(1, 16 // self.beat_unit)

    def now_ns(self) -> int:
        return self._now_ns()

    def time_of(self, step: float) -> int:
        """The deadline of grid position `step`, in perf_counter nanoseconds."""
        tb = self._tb
        return int(round(tb.origin_ns + (step - tb.origin_step) * tb.step_ns))

    def step_at(self, t_ns: int) -> float:
        """The (fractional) grid position at time `t_ns`."""
        tb = self._tb
        return tb.origin_step + (t_ns - tb.origin_ns) / tb.step_ns

    def now_step(self) -> float:
        return self.step_at(self._now_ns())

    def quantise(self, t_ns: int) -> int:
        """The nearest 16th step to `t_ns`."""
        return int(math.floor(self.step_at(t_ns) + 0.5))

    def bar_of(self, step: float) -> int:
        return int(step // self.steps_per_bar)

    def next_bar_line(self, step: float) -> int:
        """The first bar line at or after `step`, as a step."""
        return int(math.ceil(step / self.steps_per_bar - 1e-9)) * self.steps_per_bar

    # -- changing -----------------------------------------------------------
    def set_tempo(self, bpm: float, beats_per_bar: int | None = None, beat_unit: int | None = None) -> None:
        """Change tempo (and metre) from now on, keeping the grid continuous.

        A metre change only takes effect cleanly on a bar line; callers that
        reload config apply it at once and accept one odd bar.
        """
        beats_per_bar = beats_per_bar or self.beats_per_bar
        beat_unit = beat_unit or self.beat_unit
        if (16 * beats_per_bar) % beat_unit:
            raise ValueError(f"{beats_per_bar}/{beat_unit} is not a whole number of 16ths per bar")
        now = self._now_ns()
        here = self.step_at(now)
        self.beats_per_bar, self.beat_unit = beats_per_bar, beat_unit
        self.steps_per_bar = 16 * beats_per_bar // beat_unit
        self._bpm = bpm
        self._swap(_Timebase(now, here, step_ns_for(bpm, beat_unit)))

    def on_sooner(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the thread that changes the grid) whenever a new tempo or a
        followed master moves deadlines earlier: a thread sleeping towards an old deadline
        (the sender) must wake, or it sends late by as much as the grid moved."""
        self._on_sooner.append(callback)

    def _swap(self, tb: _Timebase) -> None:
        """Put `tb` in place (one assignment: readers need no lock) and wake who must know."""
        old, self._tb = self._tb, tb
        if not self._on_sooner:
            return
        # Deadlines differ linearly in the step, so if none from now to a bar ahead
        # moved earlier, none that the sender may be sleeping towards did.
        now = self.step_at(self._now_ns())
        for step in (now, now + self.steps_per_bar):
            new = tb.origin_ns + (step - tb.origin_step) * tb.step_ns
            if new < old.origin_ns + (step - old.origin_step) * old.step_ns - SOONER_NS:
                for callback in self._on_sooner:
                    callback()
                return

    def describe(self) -> str:
        return f"{self._bpm:g} BPM, {self.beats_per_bar}/{self.beat_unit}"


class ManualClock(Clock):
    """A clock whose time only moves when told to: for exact unit tests."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, beat_unit: int = 4, start_ns: int = 0):
        self.t_ns = start_ns
        super().__init__(bpm, beats_per_bar, beat_unit, now_ns=lambda: self.t_ns)

    def advance_to_step(self, step: float) -> None:
        self.t_ns = self.time_of(step)
