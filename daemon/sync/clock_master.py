"""jamd as MIDI clock master: the timed realtime messages that slave a DAW to jamd.

A pure object with no thread and no port.  Given the one `Clock`, it hands out
`Timed(step, message)` pairs on jamd's 16th-note grid, which the existing
`Scheduler.schedule(step, message)` queues like any other message; the sender
turns a step into a deadline only when it is next, so:

* tick deadlines come from the clock's origin (`Clock.time_of`), never from
  the previous tick, so lateness never accumulates;
* a tempo change (`Clock.set_tempo`) moves every tick still queued with it,
  and the tick grid stays continuous across the change.

MIDI clock runs at 24 ticks per quarter note whatever the time signature, and
a jamd step is always a 16th note (`clock.step_ns_for`), so tick k sits at
step k / 6: every 16th (and so every bar line) is a tick.

Transport: `start(step)` makes `step` bar 1 (song position 0) for the slave,
`stop(step)` stops it, `continue_at(step)` sends a Song Position Pointer and
Continue so the slave resumes exactly at jamd's position there.  Start and
Continue go out half a tick before the tick they refer to: a slave starts on
the first clock *after* Start/Continue, and a tick of the same step already
queued would otherwise overtake them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from .clock import Clock

TICKS_PER_QUARTER = 24
TICKS_PER_16TH = 6  # 24 per quarter; a Song Position "MIDI beat" is one 16th = 6 clocks
CLOCK, START, CONTINUE, STOP, SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2
SPP_MAX = 0x3FFF  # 14 bits of 16ths: 1023 bars of 4/4
# Start/Continue/SPP lead the tick they announce by half a tick (10.4 ms at 120 BPM).
_LEAD_STEPS = 0.5 / TICKS_PER_16TH
_EPS = 1e-9


class Timed(NamedTuple):
    """One message at a position of jamd's grid: `scheduler.schedule(*timed)` queues it."""

    step: float
    message: tuple[int, ...]


def song_position(position_16th: int) -> tuple[int, int, int]:
    """The Song Position Pointer for a position in 16ths: 0xF2, LSB, MSB (7 bits each)."""
    if not 0 <= position_16th <= SPP_MAX:
        raise ValueError(f"song position must be within 0 and {SPP_MAX} 16ths (received {position_16th})")
    return (SONG_POSITION, position_16th & 0x7F, (position_16th >> 7) & 0x7F)


def parse_song_position(message: Sequence[int]) -> int:
    """The position in 16ths of a Song Position Pointer message."""
    if len(message) != 3 or message[0] != SONG_POSITION or (message[1] | message[2]) & 0x80:
        raise ValueError(f"not a Song Position Pointer: {list(message)}")
    return message[1] | (message[2] << 7)


class ClockMaster:
    """Produces MIDI clock and transport for a slave, on `clock`'s grid.

    The caller (the engine thread) asks for the ticks up to its lookahead with
    `ticks_until`, and queues transport messages returned by `start`, `stop`
    and `continue_at`.  A scheduler panic drops everything queued, ticks and
    transport alike; `resync(now_step)` then returns what must be queued again.
    """

    def __init__(self, clock: Clock, send_while_stopped: bool = True):
        self.clock = clock
        # Most DAWs (and jamd's follower) estimate tempo from clocks sent while
        # stopped too, so a Start lands on an already-known tempo.
        self.send_while_stopped = send_while_stopped
        self.running = False
        self.origin_step: int | None = None  # jamd step that is the slave's song position 0
        self._next_tick = math.ceil(clock.now_step() * TICKS_PER_16TH - _EPS)
        self._transport: list[Timed] = []  # handed out, maybe not sent yet (for resync)
        self._first_tick = self._next_tick  # no tick before this one (a pending Start's own)
        self._origin_before_start: int | None = None

    # -- reading ---------------------------------------------------------------
    def position_16th(self, step: float) -> float:
        """The slave's song position (16ths) at jamd step `step`."""
        if self.origin_step is None:
            raise ValueError("no song position before the first start()")
        return step - self.origin_step

    def deadline_ns(self, timed: Timed) -> int:
        """When the sender will send `timed` at the clock's current tempo (before offset_ms)."""
        return self.clock.time_of(timed.step)

    # -- transport -------------------------------------------------------------
    def start(self, step: int) -> list[Timed]:
        """Start the slave at bar 1 on jamd step `step` (a 16th, normally a bar line)."""
        step = self._whole(step)
        self.running = True
        self._origin_before_start = self.origin_step
        self.origin_step = step
        if not self.send_while_stopped:
            self._next_tick = self._first_tick = step * TICKS_PER_16TH
        return self._remember([Timed(step - _LEAD_STEPS, (START,))])

    def stop(self, step: float) -> list[Timed]:
        """Stop the slave at `step`; ticks due after it are no longer handed out
        unless `send_while_stopped` (the caller drops those already queued)."""
        if not self.running:
            return []
        self.running = False
        if not self.send_while_stopped:
            self._next_tick = min(self._next_tick, math.floor(step * TICKS_PER_16TH + _EPS) + 1)
        return self._remember([Timed(step, (STOP,))])

    def withdraw(self, step: float) -> list[Timed]:
        """A Start or Continue handed out for after `step` that the slave has not
        received yet (a stop during a count-in), taken back: the slave stays
        stopped, so no Stop is due.  Returns what the caller must unqueue."""
        pending = [t for t in self._transport if t.step > step + _EPS and t.message[0] in (START, CONTINUE)]
        if not self.running or not pending:
            return []
        withdrawn, self._transport = self._transport, []
        self.running = False
        if any(t.message[0] == START for t in withdrawn):
            self.origin_step = self._origin_before_start  # the slave never had this bar 1
        return withdrawn

    def continue_at(self, step: int) -> list[Timed]:
        """Resume the slave at `step`, at the song position jamd's grid has there.

        The Song Position Pointer goes first (a slave may only relocate while
        stopped), then Continue.  Past the 14-bit range of the pointer the
        slave is restarted at bar 1 instead: it cannot be told where it is.
        """
        if self.running:
            return []
        step = self._whole(step)
        if self.origin_step is None or not 0 <= step - self.origin_step <= SPP_MAX:
            return self.start(step)
        self.running = True
        if not self.send_while_stopped:
            self._next_tick = self._first_tick = step * TICKS_PER_16TH
        at = step - _LEAD_STEPS
        return self._remember([Timed(at, song_position(step - self.origin_step)), Timed(at, (CONTINUE,))])

    # -- ticks -------------------------------------------------------------------
    def ticks_until(self, end_step: float) -> list[Timed]:
        """Every 0xF8 not yet handed out whose step is before `end_step`.

        Ticks are never skipped while running, even late ones: a slave counts
        clocks to know its position, so one lost tick would shift it for good.
        """
        if not (self.running or self.send_while_stopped):
            return []
        out = []
        k = self._next_tick
        while k / TICKS_PER_16TH < end_step - _EPS:
            out.append(Timed(k / TICKS_PER_16TH, (CLOCK,)))
            k += 1
        self._next_tick = k
        return out

    def skip_late(self, now_step: float) -> None:
        """While stopped, ticks already late are dropped instead of sent in a
        burst (a slave only counts clocks while running; a burst would only
        upset its tempo estimate).  Running, nothing is ever skipped."""
        if not self.running:
            self._next_tick = max(self._next_tick, math.ceil(now_step * TICKS_PER_16TH - _EPS))

    def resync(self, step: float) -> list[Timed]:
        """After a scheduler panic dropped the queue: ticks restart at `step`
        (the first on the grid at or after it) and the transport messages not
        yet due are returned, to be queued again."""
        self._next_tick = max(math.ceil(step * TICKS_PER_16TH - _EPS), self._first_tick)
        self._transport = [t for t in self._transport if t.step >= step - _EPS]
        return list(self._transport)

    # -- helpers -----------------------------------------------------------------
    def _remember(self, timed: list[Timed]) -> list[Timed]:
        # Only the latest transport change can still be pending: an older one
        # that was superseded (start then stop before it was due) must not come back.
        self._transport = list(timed)
        return timed

    @staticmethod
    def _whole(step: float) -> int:
        n = round(step)
        if abs(step - n) > _EPS:
            raise ValueError(f"transport must be on a 16th of the grid (received step {step})")
        return int(n)
