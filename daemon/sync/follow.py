"""What an outside timebase (a DAW's MIDI clock, a Link session) does to jamd.

A follower owns the grid jamd plays on while it follows: it puts the
`FollowedClock` on the master's time, and it starts, stops and re-places
playback when the master does.  It acts through the small `Player`
interface, which the live engine implements, so this package never imports
the engine.  Both followers run on the engine thread; neither sleeps.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..config import ClockConfig
from .clock import Clock

log = logging.getLogger(__name__)


class Player(Protocol):
    """The engine as a follower sees it."""

    playing: bool

    def silence(self) -> None:
        """All notes off now and nothing queued (a panic)."""

    def start_playing(self, count_in_bars: int, master_start: bool = False) -> None:
        """Start on jamd's own grid: count-in, then the first bar."""

    def stop_playing(self) -> None:
        """Stop: silence, no more bars or clicks."""

    def stream_from(self, step: float) -> None:
        """Play from grid step `step` on (next bar line for bars, next beat for clicks)."""


class Follower:
    """The interface the engine calls.  This base is jamd's own clock (clock.source:
    internal): nothing to follow, the config sets the tempo."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def feed(self, t_ns: int, data: list[int]) -> bool:
        """One input message; True if it was only for the follower (clock, transport)."""
        return False

    def tick(self, now_ns: int) -> None:
        """Each engine tick: poll the master, act on what it did."""

    def wake_step(self, now_step: float) -> float | None:
        """The latest grid step by which the engine must tick again (None: no need)."""
        return None

    def request_start(self) -> bool:
        """The start CC: True if handled here (else the engine starts on its own clock)."""
        return False

    def reload(self, cfg: ClockConfig, old: ClockConfig) -> None:
        """A reloaded config: jamd's own clock takes its tempo and meter."""
        if (cfg.bpm, cfg.beats_per_bar, cfg.beat_unit) != (old.bpm, old.beats_per_bar, old.beat_unit):
            self.clock.set_tempo(cfg.bpm, cfg.beats_per_bar, cfg.beat_unit)
            log.info("clock %s", self.clock.describe())

    def song_bar(self, step: float, steps_per_bar: int) -> int:
        """The bar number to log for grid step `step`."""
        return int(step // steps_per_bar)

    def close(self) -> None:
        """Leave the session (the engine thread has stopped)."""
