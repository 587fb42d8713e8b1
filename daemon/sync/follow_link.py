"""`clock.source: link`: the engine plays on an Ableton Link session's grid.

`LinkFollower` (in `link`) reads the session; this module puts the engine's
`FollowedClock` on it every poll and follows the session's start/stop.
"""

from __future__ import annotations

import logging
import math

from ..config import ClockConfig
from .clock_follower import FollowedClock
from .follow import Follower, Player
from .link import LINK_POLL_S, LinkFollower

log = logging.getLogger(__name__)


class LinkSync(Follower):
    """Link's bars are jamd's bars: jamd step s is Link beat
    (s - offset) / steps_per_beat, the offset a whole number of bars."""

    def __init__(self, cfg: ClockConfig, clock: FollowedClock, player: Player):
        if not isinstance(clock, FollowedClock):
            raise TypeError("clock.source: link needs a FollowedClock")
        super().__init__(clock)
        self.player = player
        self.link = LinkFollower(cfg.bpm, clock.beats_per_bar, cfg.link_start_stop)
        self._offset: int | None = None
        self.sync(starting=True)

    def tick(self, now_ns: int) -> None:
        self.sync()

    def wake_step(self, now_step: float) -> float | None:
        return now_step + LINK_POLL_S * 1e9 / self.clock.step_ns

    def reload(self, cfg: ClockConfig, old: ClockConfig) -> None:
        if cfg.bpm != old.bpm:
            self.link.set_tempo(cfg.bpm)  # proposed to the session; every peer follows
            log.info("Link: proposed %g BPM", cfg.bpm)

    def close(self) -> None:
        self.link.close()

    def sync(self, starting: bool = False) -> None:
        """Put the clock on the session's grid; act on a jump of its beat timeline
        (jamd joined a session that counts beats from elsewhere) and on start/stop."""
        link, player = self.link, self.player
        spb = self.clock.steps_per_bar
        per_beat = self.clock.steps_per_beat
        beat, (origin_ns, origin_step, step_ns), playing = link.state(per_beat)
        here = self.clock.now_step()
        jumped = self._offset is not None and abs(beat * per_beat + self._offset - here) > per_beat
        if self._offset is None or jumped:
            # Link's bars are jamd's bars (the offset is whole bars) and jamd's
            # steps never run backwards.
            self._offset = spb * math.ceil((here - beat * per_beat) / spb)
        self.clock.follow((origin_ns, origin_step + self._offset, step_ns))
        if jumped:
            log.info("Link: the session's beat timeline moved; re-aligned on its bar lines")
            player.silence()
            return
        peers = link.poll_peers()
        if peers is not None:
            log.info("Link: %d peer(s), %.1f BPM", peers, 60e9 / step_ns / per_beat)
        if starting:
            log.info("Link: enabled, %d peer(s) so far, %.1f BPM", link.peers, 60e9 / step_ns / per_beat)
            player.playing = playing
            if not playing:
                log.info("Link: waiting for the session to start playing")
        elif playing and not player.playing:
            log.info("Link: the session started")
            player.start_playing(0)
        elif not playing and player.playing:
            log.info("Link: the session stopped")
            player.stop_playing()
