"""What the engine queues besides notes: MIDI clock for a slave, and clicks.

Both are fed by the engine thread from `Engine.tick()`, a little ahead of the
clock, and both only queue messages on a `Scheduler`; the sender thread keeps
time.  Neither has a thread of its own.

* `MasterSync` (`clock.send: true`): jamd is the master.  It queues the 0xF8
  ticks and the Start / Stop / Continue / Song Position Pointer that
  `ClockMaster` hands out, on the note output's scheduler or on the scheduler
  of a separate clock port (`clock.port`).  A panic drops the note
  scheduler's whole queue, so when the clock shares it, `after_panic()`
  queues the ticks and any pending transport again.
* `Metronome` (`metronome.*`): a click on every beat while playing, and an
  optional count-in before jamd's first bar.  Clicks are ordinary scheduled
  notes (tag "click"), so the panic path ends them like any other note.
"""

from __future__ import annotations

import logging
import math

from ..config import MetronomeConfig
from .clock import Clock
from .clock_master import CONTINUE, SONG_POSITION, START, STOP, ClockMaster, Timed
from .scheduler import Scheduler

log = logging.getLogger(__name__)

# Clicks last a 16th: always shorter than a beat, whatever the beat unit.
CLICK_STEPS = 1.0
CLICK_TAG = "click"


class MasterSync:
    """jamd as MIDI clock master: keeps the slave's clock queued ahead."""

    def __init__(self, clock: Clock, scheduler: Scheduler, shares_note_queue: bool,
                 send_while_stopped: bool = True):
        self.clock = clock
        self.scheduler = scheduler
        # True when the clock goes out on the note output: a note panic then
        # drops the clock's queue too, and `after_panic` must queue it again.
        self.shares_note_queue = shares_note_queue
        self.master = ClockMaster(clock, send_while_stopped)

    @property
    def running(self) -> bool:
        return self.master.running

    def _queue(self, timed: list[Timed]) -> None:
        for t in timed:
            self.scheduler.schedule(t.step, t.message)

    def start(self, step: int) -> None:
        """The slave's bar 1 is jamd's step `step` (a bar line)."""
        self._queue(self.master.start(step))
        log.info("clock master: Start at bar line %d", step // self.clock.steps_per_bar)

    def stop(self, step: float) -> None:
        withdrawn = self.master.withdraw(step)
        if withdrawn:
            # stopped before the slave was told to start (e.g. during a count-in):
            # it must not start later; it never ran, so it needs no Stop
            self.scheduler.drop_messages({START, CONTINUE, SONG_POSITION}, min(t.step for t in withdrawn))
            return
        self._queue(self.master.stop(step))

    def resume(self, step: int) -> None:
        """Continue the slave at `step` (Song Position Pointer, then Continue)."""
        self._queue(self.master.continue_at(step))

    def fill(self, until_step: float) -> None:
        """Queue every tick before `until_step` (called from the engine's tick)."""
        self.master.skip_late(self.clock.now_step())
        self._queue(self.master.ticks_until(until_step))

    def after_panic(self, now_step: float, dropped: list[tuple[float, tuple[int, ...]]] | None) -> None:
        """Queue again what a note panic dropped, when the clock shares the note queue.

        `dropped` is what the panic took out unsent (`Scheduler.panic`): putting
        exactly that back loses no tick and sends none twice.  Without it (the
        panic timed out) the master restarts its ticks from `now_step`.
        """
        if not self.shares_note_queue:
            return
        if dropped is None:
            self._queue(self.master.resync(now_step))
        else:
            for step, message in dropped:
                if message[0] >= 0xF0:  # ours: clock, transport, song position
                    self.scheduler.schedule(step, message)

    def closing_message(self) -> tuple[int, ...] | None:
        """Stop, to send as jamd's port closes, if the slave is running (a Start
        still pending, e.g. during a count-in, never reached it: nothing to stop)."""
        if self.master.withdraw(self.clock.now_step()):
            return None
        return (STOP,) if self.master.running else None


class Metronome:
    """Clicks on the beats of the clock's grid (bar lines are multiples of `steps_per_bar`)."""

    def __init__(self, cfg: MetronomeConfig, clock: Clock, scheduler: Scheduler):
        self.cfg = cfg
        self.clock = clock
        self.scheduler = scheduler
        self.next_step: int | None = None  # the next beat to click; None: silent
        self.first_step = 0  # where the clicks began (a panic never rewinds before it)
        self.until: float = math.inf  # clicks stop here (end of a count-in alone)

    def start(self, first_bar: int, count_in_bars: int = 0) -> int:
        """Click from bar line `first_bar`; return the bar line after the count-in."""
        spb = self.clock.steps_per_bar
        after = first_bar + count_in_bars * spb
        if self.cfg.enabled or count_in_bars:
            self.next_step = self.first_step = first_bar
            self.until = math.inf if self.cfg.enabled else after
            if count_in_bars:
                log.info("count-in: %d bar(s) from bar line %d", count_in_bars, first_bar // spb)
        return after

    def start_at(self, step: float) -> None:
        """Click (if enabled) from the first beat at or after `step`."""
        if self.cfg.enabled:
            b = self.clock.steps_per_beat
            self.next_step = self.first_step = int(math.ceil(step / b - 1e-9)) * b
            self.until = math.inf

    def stop(self) -> None:
        self.next_step = None

    def after_panic(self, now_step: float) -> None:
        """A panic dropped the queued clicks: go on from the next beat."""
        if self.next_step is not None:
            b = self.clock.steps_per_beat
            self.next_step = max(self.first_step, int(math.ceil(now_step / b - 1e-9)) * b)
            if self.next_step >= self.until:
                self.next_step = None

    def fill(self, until_step: float) -> None:
        cfg = self.cfg
        b = self.clock.steps_per_beat
        spb = self.clock.steps_per_bar
        while self.next_step is not None and self.next_step < until_step:
            step = self.next_step
            if step >= self.until:
                self.next_step = None
                break
            if step % spb == 0:
                note, velocity = cfg.accent_note, min(127, cfg.velocity + 20)
            else:
                note, velocity = cfg.note, cfg.velocity
            self.scheduler.schedule_note(step, step + CLICK_STEPS, note, velocity, cfg.channel, CLICK_TAG)
            self.next_step = step + b
