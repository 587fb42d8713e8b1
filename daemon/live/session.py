"""One live session: the clock, the sender, the engine and an output, wired up.

`jamd run` builds one over real MIDI ports; tests and the realtime benchmark
build one over the in-memory output.  `start()` first silences what a killed
predecessor may have left sounding (`silence_predecessor`).  `close()` is the
single way down and is safe on every path: it stops the engine, then has the
sender note-off every sounding note and send CC 123 before the output closes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..inference.bar_source import BarSource
from ..midi.outputs import CC, Output
from ..sync.clock import Clock
from ..sync.clock_follower import FollowedClock
from ..sync.scheduler import Scheduler
from .engine import Engine
from .phrase import EchoGuard

log = logging.getLogger(__name__)

ALL_SOUND_OFF, ALL_NOTES_OFF = 120, 123  # channel mode messages (MIDI 1.0 spec, table T-1)


class LiveSession:
    def __init__(self, cfg: Config, output: Output, open_model: Callable[[str], BarSource],
                 clock: Clock | None = None, record_errors: bool = False,
                 clock_output: Output | None = None, open_harmony: Callable[[str], Any] | None = None):
        """`clock_output`: the separate port for MIDI clock (`clock.port`); None: `output`.
        `open_harmony`: loads the harmony model by name (None: `HarmonyModel.load`)."""
        if clock is None:
            # Following an external clock, the grid is the master's: its timebase is set from outside.
            clock = (Clock if cfg.clock.source == "internal" else FollowedClock).from_config(cfg.clock)
        self.clock = clock
        self.output = output
        self.echo = EchoGuard()
        self.scheduler = Scheduler(self.clock, output, cfg.clock.spin_us, cfg.output.offset_ms,
                                   record_errors=record_errors, on_sent=self.echo.sent,
                                   realtime_priority=cfg.clock.realtime_priority,
                                   tick_spin_us=cfg.clock.tick_spin_us)
        # A clock port has its own sender thread: one rtmidi port is never
        # written from two threads, and note panics leave its ticks alone.
        self.clock_output = clock_output
        self.clock_scheduler: Scheduler | None = None
        if clock_output is not None and cfg.clock.send:
            self.clock_scheduler = Scheduler(self.clock, clock_output, cfg.clock.spin_us, cfg.output.offset_ms,
                                             record_errors=record_errors,
                                             realtime_priority=cfg.clock.realtime_priority,
                                             tick_spin_us=cfg.clock.tick_spin_us)
        self.engine = Engine(cfg, self.clock, self.scheduler, open_model, self.echo,
                             clock_scheduler=self.clock_scheduler, open_harmony=open_harmony)
        self._closed = False

    def on_error(self, callback: Callable[[BaseException], None]) -> None:
        """Called (on the failing thread) when the sender or engine thread dies."""
        self.scheduler.on_error = callback
        self.engine.on_error = callback
        if self.clock_scheduler is not None:
            self.clock_scheduler.on_error = callback

    @property
    def error(self) -> BaseException | None:
        return self.engine.error or self.scheduler.error or (
            self.clock_scheduler.error if self.clock_scheduler is not None else None)

    def midi_in(self, message: list[int], t_ns: int | None = None) -> None:
        """`t_ns`: when it arrived (perf_counter_ns); None: now."""
        self.engine.midi_in(message, t_ns)

    def silence_predecessor(self) -> None:
        """All Notes Off (CC 123) and All Sound Off (CC 120) on every channel jamd plays on
        (output.channel, metronome.channel, harmony.chords_channel and harmony.bass_channel), sent
        before anything else.

        A jamd killed by SIGKILL or a power cut sent no note-off, and the synth still holds
        its last note; a restart cannot know which note that was, so it silences the whole
        channel.  Runs on this thread before the sender starts: nothing interleaves with it.
        """
        cfg = self.engine.cfg
        for channel in sorted({cfg.output.channel, cfg.metronome.channel, cfg.harmony.chords_channel,
                               cfg.harmony.bass_channel}):
            for number in (ALL_NOTES_OFF, ALL_SOUND_OFF):
                self.output.send([CC | (channel - 1), number, 0])
        log.debug("sent All Notes Off and All Sound Off on the output's channels")

    def start(self) -> None:
        self.silence_predecessor()
        self.scheduler.start()
        if self.clock_scheduler is not None:
            self.clock_scheduler.start()
        self.engine.start()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.engine.stop()
        finally:
            try:
                self.scheduler.stop()  # panic: note-offs for sounding notes, CC 123
                self._stop_slave()
            finally:
                st = self.scheduler.stats
                log.info("sent %d events, %d late (worst %.2f ms), %d echoes ignored; sender %s",
                         st.sent, st.late, st.max_late_ns / 1e6, self.echo.dropped,
                         "real-time (SCHED_FIFO)" if self.scheduler.realtime else "at normal priority")

    def _stop_slave(self) -> None:
        """A DAW slaved to jamd stops with it (its senders have stopped, so only
        this thread writes to the port now)."""
        master = self.engine.master
        if master is None:
            return
        stop = master.closing_message()
        if self.clock_scheduler is not None:
            self.clock_scheduler.stop()
        if stop is not None:
            (self.clock_output or self.output).send(stop)
            log.info("clock master: Stop sent")
