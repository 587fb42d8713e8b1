"""`clock.source: midi`: the engine follows a DAW's MIDI clock and transport.

`ClockFollower` (in `clock_follower`) turns clock bytes into a timebase and
transport events; this module acts on them for the engine: Start, Continue
and Song Position Pointer place jamd's grid on the master's song position,
Stop and a lost clock stop playback (MIDI 1.0 spec, "System Real-Time
Messages" and "Song Position Pointer").
"""

from __future__ import annotations

import dataclasses
import logging
import math

from ..config import ClockConfig
from .clock_follower import ClockFollower, FollowedClock, SyncEvent
from .follow import Follower, Player

log = logging.getLogger(__name__)


class MidiClockSync(Follower):
    """Keeps `clock` on the master's grid and `player` on its transport.

    jamd step s is the master's song 16th `s - step_offset`; the offset is a
    whole number of bars, so the song's bar lines are jamd's.
    """

    def __init__(self, cfg: ClockConfig, clock: FollowedClock, player: Player):
        if not isinstance(clock, FollowedClock):
            raise TypeError("clock.source: midi needs a FollowedClock")
        super().__init__(clock)
        self.cfg = cfg
        self.player = player
        self.follower = ClockFollower(cfg.follow_window, cfg.loss_timeout_ms * 1_000_000, bpm_range=bpm_bounds())
        self.step_offset = 0
        player.playing = False  # until the master's Start or Continue
        log.info("waiting for Start or Continue from the MIDI clock on the input")

    def feed(self, t_ns: int, data: list[int]) -> bool:
        if not data or (data[0] < 0xF0 and max(data) < 0xF8):
            return False
        for ev in self.follower.feed(t_ns, data):
            self._event(ev)
        if self.follower.running:
            # After every clock: the grid follows the master's, queued notes included.
            self.clock.follow(self.follower.timebase(self.step_offset))
        return data[0] >= 0xF0  # clock, transport or song position: nothing for the decoder

    def reload(self, cfg: ClockConfig, old: ClockConfig) -> None:
        """The master sets the tempo: clock.bpm has nothing to do while following."""

    def tick(self, now_ns: int) -> None:
        for ev in self.follower.check(now_ns):
            self._event(ev)

    def wake_step(self, now_step: float) -> float | None:
        lost_at = self.follower.loss_deadline_ns()
        return None if lost_at is None else self.clock.step_at(lost_at + 1)

    def request_start(self) -> bool:
        if not self.follower.running:
            log.info("start: waits for the MIDI clock's Start or Continue")
            return True
        log.info("start")
        self.player.playing = True
        self.player.stream_from(self.clock.now_step())
        return True

    def song_bar(self, step: float, steps_per_bar: int) -> int:
        """The master's bar number (1 = its Start) of jamd step `step`."""
        return int((step - self.step_offset) // steps_per_bar) + 1

    def _event(self, ev: SyncEvent) -> None:
        follower, player = self.follower, self.player
        spb = self.clock.steps_per_bar
        if ev.kind in ("stop", "lost"):
            if ev.kind == "lost":
                log.warning("MIDI clock lost (none for %d ms): stopped; waiting for Start or Continue",
                            self.cfg.loss_timeout_ms)
            else:
                log.info("clock: Stop at song position %s", where(ev.position_16th, spb))
            player.stop_playing()
        elif ev.kind in ("start", "continue") or (ev.kind == "position" and follower.running):
            player.silence()
            # Song 16th p becomes jamd step p + step_offset: a whole number of bars
            # on, so song bar lines are jamd bar lines, and at least a bar past
            # jamd's present so its steps never run backwards.
            p = ev.position_16th
            self.step_offset = spb * (math.ceil((self.clock.now_step() - p) / spb) + 1)
            self.clock.follow(follower.timebase(self.step_offset))
            player.playing = True
            player.stream_from(p + self.step_offset)
            bpm = follower.bpm
            log.info("clock: %s at song position %s%s", ev.kind.capitalize(), where(p, spb),
                     f", {bpm:.1f} BPM" if bpm else "")
        elif ev.kind == "position":
            log.info("clock: song position %s", where(ev.position_16th, spb))
        elif ev.kind == "tempo":
            log.debug("clock: tempo change detected, now %.1f BPM", follower.bpm or 0.0)


def bpm_bounds() -> tuple[float, float]:
    """The tempo range `clock.bpm` accepts (quarters per minute): a followed clock's
    estimate never leaves it, whatever a stall or a burst suggests."""
    meta = {f.name: f.metadata for f in dataclasses.fields(ClockConfig)}["bpm"]
    return float(meta["lo"]), float(meta["hi"])


def where(position_16th: float, steps_per_bar: int) -> str:
    """A song position as a musician reads it: 16th 36 in 4/4 is "bar 3, 16th 5"."""
    n = int(position_16th)
    return f"bar {n // steps_per_bar + 1}, 16th {n % steps_per_bar + 1}"
