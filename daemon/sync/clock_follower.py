"""jamd as MIDI clock slave: tempo, transport and song position from an external clock.

A pure object with no thread and no timer.  The input callback only enqueues
`(arrival_ns, bytes)`; the engine thread feeds them here in order with
`feed()` and calls `check(now_ns)` from its loop so a vanished clock is seen.
Both return the transport changes (`SyncEvent`) the engine must act on.

Tempo and phase come from `tick_fit.TickFit`, a robust line through the
arrival times of the last clocks (time is filtered, not ticks): jitter
averages out, late deliveries and a stall's burst never bend it, a lost tick
is inferred and counted, and the tempo stays in the configured range.

Transport (MIDI 1.0): Start arms at song position 0 and Continue at the
current position; the first clock after either is that position, and each
later clock is one tick further.  Stop keeps the position (the tick after the
last one counted).  A Song Position Pointer moves it to that 16th (while
running too: the next clock is then that 16th).  Without a clock for
`loss_timeout_ns` while running, the follower is "lost": the engine stops
cleanly, and the next Start or Continue resumes.

Positions are song positions: ticks or 16ths since the master's bar 1.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

from .clock import Clock, _Timebase
from .clock_master import CLOCK, CONTINUE, SONG_POSITION, START, STOP, TICKS_PER_16TH, TICKS_PER_QUARTER
from .tick_fit import MIN_FIT, NS_PER_MIN, Line, TickFit

log = logging.getLogger(__name__)
STOPPED, ARMED, RUNNING, LOST = "stopped", "armed", "running", "lost"


class SyncEvent(NamedTuple):
    """A change the engine acts on.

    kind: "start" / "continue" (transport armed; `running` is now True),
    "stop" and "lost" (silence the notes and pause generation),
    "position" (a Song Position Pointer: the grid jumps),
    "tempo" (a sustained change was detected and the estimate restarted).
    """

    kind: str
    t_ns: int
    position_16th: float


class ClockFollower:
    """Follows an external MIDI clock; see the module docstring."""

    def __init__(self, window: int = TICKS_PER_QUARTER, loss_timeout_ns: int = 1_000_000_000,
                 confirm: int = 3, min_threshold_ns: int = 1_000_000,
                 bpm_range: tuple[float, float] = (20.0, 300.0)):
        if window < MIN_FIT:
            raise ValueError(f"window must be at least {MIN_FIT} ticks (received {window})")
        if confirm < 2:
            raise ValueError(f"confirm must be at least 2 ticks (received {confirm})")
        self.window = window
        self.loss_timeout_ns = loss_timeout_ns
        self.confirm = confirm
        self.min_threshold_ns = min_threshold_ns
        self.state = STOPPED
        self.fit = TickFit(window, confirm, min_threshold_ns, bpm_range)
        self._seq = -1  # index of the last clock received, running or not
        self._last_tick_ns: int | None = None
        self._armed_ns = 0  # arrival of the Start/Continue now pending
        self._seq_base = 0  # while running: song tick = seq - seq_base
        self._next_song_tick = 0  # the position the next counted clock will have
        self._relocate = False  # an SPP arrived while running: re-base on the next clock

    # -- what the engine reads -------------------------------------------------------
    @property
    def running(self) -> bool:
        """Transport is playing (a Start/Continue was received and not stopped or lost)."""
        return self.state in (ARMED, RUNNING)

    @property
    def lost(self) -> bool:
        return self.state == LOST

    @property
    def _line(self) -> Line | None:
        return self.fit.line

    @property
    def tick_ns(self) -> float | None:
        return None if self._line is None else self._line.slope

    @property
    def bpm(self) -> float | None:
        """Quarter notes per minute (MIDI clock counts quarters), or None before two clocks."""
        return None if self._line is None or self._line.slope <= 0 else NS_PER_MIN / (
            self._line.slope * TICKS_PER_QUARTER)

    @property
    def position_ticks(self) -> int:
        """Song position in clocks: of the last clock counted while running,
        otherwise of the clock the next Continue will start on."""
        if self.state == RUNNING:
            return self._seq - self._seq_base
        return self._next_song_tick

    @property
    def position_16th(self) -> float:
        return self.position_ticks / TICKS_PER_16TH

    def time_of_tick(self, song_tick: float) -> int | None:
        """Predicted arrival time of the clock at song position `song_tick`.

        None while stopped or lost (nothing will be played) or before a tempo
        is known.  While armed, the first clock after Start/Continue is the
        next one on the line, but never before the Start itself arrived (a
        master that is silent while stopped sends it right after Start).
        """
        line = self._line
        if line is None or not self.running:
            return None
        if self.state == RUNNING and not self._relocate:
            return int(round(line.at(song_tick + self._seq_base)))
        first = self._seq + 1  # the clock that will carry _next_song_tick
        t_first = max(line.at(first), float(self._armed_ns))
        return int(round(t_first + line.slope * (song_tick - self._next_song_tick)))

    def time_of_16th(self, n: float) -> int | None:
        """Predicted time of song 16th `n` (on the master's grid)."""
        return self.time_of_tick(n * TICKS_PER_16TH)

    def next_16th(self) -> tuple[int, int] | None:
        """The next song 16th still to come and its predicted time."""
        return self._next_on(TICKS_PER_16TH)

    def next_beat(self) -> tuple[int, int] | None:
        """The next quarter-note beat still to come (as a 16th index) and its predicted time."""
        n = self._next_on(TICKS_PER_QUARTER)
        return None if n is None else (n[0] * 4, n[1])

    def timebase(self, step_offset: float = 0.0) -> tuple[int, float, float] | None:
        """(origin_ns, origin_step, step_ns) for a `Clock` whose step s is song
        16th s - step_offset: the grid the engine's notes are scheduled on."""
        line = self._line
        if line is None or not self.running:
            return None
        here = math.floor(self.position_16th)
        t = self.time_of_16th(here)
        assert t is not None
        return t, here + step_offset, line.slope * TICKS_PER_16TH

    def loss_deadline_ns(self) -> int | None:
        """When `check` will declare the clock lost if no clock comes first."""
        if not self.running:
            return None
        last = max(self._last_tick_ns or 0, self._armed_ns)
        return last + self.loss_timeout_ns

    # -- input -------------------------------------------------------------------------
    def feed(self, t_ns: int, data: Sequence[int]) -> list[SyncEvent]:
        """One input message (as the callback received it) with its arrival time."""
        events = self.check(t_ns)
        rest = []
        for b in data:
            if b == CLOCK:
                events += self._clock(t_ns)
            elif b == START:
                events += self._arm(t_ns, 0, "start")
            elif b == CONTINUE:
                events += self._arm(t_ns, self._next_song_tick, "continue")
            elif b == STOP:
                events += self._stop(t_ns, "stop", STOPPED)
            elif b < 0xF8:  # realtime bytes may sit inside another message
                rest.append(b)
        if len(rest) == 3 and rest[0] == SONG_POSITION and not (rest[1] | rest[2]) & 0x80:
            events += self._song_position(t_ns, rest[1] | (rest[2] << 7))
        return events

    def check(self, now_ns: int) -> list[SyncEvent]:
        """Declare the clock lost when it has been silent too long while running."""
        deadline = self.loss_deadline_ns()
        if deadline is None or now_ns <= deadline:
            return []
        return self._stop(deadline, "lost", LOST)

    # -- transport ---------------------------------------------------------------------
    def _arm(self, t_ns: int, song_tick: int, kind: str) -> list[SyncEvent]:
        self.state = ARMED
        self._armed_ns = t_ns
        self._next_song_tick = song_tick
        self._relocate = False
        return [SyncEvent(kind, t_ns, song_tick / TICKS_PER_16TH)]

    def _stop(self, t_ns: int, kind: str, state: str) -> list[SyncEvent]:
        if not self.running:
            return []
        if self.state == RUNNING and not self._relocate:
            self._next_song_tick = self._seq - self._seq_base + 1
        self.state = state
        self._relocate = False
        return [SyncEvent(kind, t_ns, self._next_song_tick / TICKS_PER_16TH)]

    def _song_position(self, t_ns: int, position_16th: int) -> list[SyncEvent]:
        self._next_song_tick = position_16th * TICKS_PER_16TH
        if self.state == RUNNING:
            self._relocate = True
        return [SyncEvent("position", t_ns, float(position_16th))]

    def _clock(self, t_ns: int) -> list[SyncEvent]:
        playing = self.state == RUNNING and not self._relocate
        lost, changed = self.fit.add(self._seq + 1, t_ns, playing)
        first = self._seq + 1  # the first clock since this one's predecessor: lost, or this one
        self._seq += 1 + lost  # a lost tick still moved the master's position
        if lost:
            log.debug("clock: %+d tick(s) at song tick %d (lost on the way, or a miscount)", lost, self.position_ticks)
        events = [SyncEvent("tempo", t_ns, self.position_16th)] if changed else []
        self._last_tick_ns = t_ns
        if self.state == ARMED or (self.state == RUNNING and self._relocate):
            self.state = RUNNING
            self._relocate = False
            self._seq_base = first - self._next_song_tick  # a lost first clock was the Start's position
        return events

    def _next_on(self, ticks: int) -> tuple[int, int] | None:
        if not self.running or self._line is None:
            return None
        if self.state == RUNNING and not self._relocate:
            n = (self.position_ticks // ticks) + 1  # the last counted clock has passed
        else:
            n = -(-self._next_song_tick // ticks)  # the resume clock itself is still to come
        t = self.time_of_tick(n * ticks)
        return None if t is None else (n, t)


class FollowedClock(Clock):
    """A `Clock` whose grid is set from outside: in `clock.source: midi` the
    engine calls `follow(follower.timebase(offset))` after each clock, and the
    sender's deadlines (computed from the clock when each event is next) land
    on the master's grid, already-queued notes included.

    It swaps the same immutable timebase tuple `Clock.set_tempo` does, so
    readers need no lock.  (It belongs in `clock.py` as `Clock.set_timebase`
    once that module is open for edits.)
    """

    def follow(self, timebase: tuple[int, float, float] | None) -> bool:
        if timebase is None:
            return False
        origin_ns, origin_step, step_ns = timebase
        self._bpm = NS_PER_MIN / (step_ns * 16 / self.beat_unit)
        self._swap(_Timebase(origin_ns, origin_step, step_ns))
        return True
