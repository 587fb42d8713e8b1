"""`clock.source: link`: jamd joins an Ableton Link session and plays on its beat grid.

Link (https://ableton.github.io/link) shares tempo and beat phase between
programs on a local network, with no master: Live, Bitwig, many iOS apps.
jamd reads it through LinkPython-extern (`pip install 'jamd[link]'`), which
imports as `link`.  That wheel contains Ableton Link itself, licensed GPLv2+:
installing the extra brings GPL code into the environment (jamd's own code
stays MIT), so it is optional and imported only here, only when chosen.

The engine polls `timebase()` from its thread (at least every
`LINK_POLL_S`) and hands it to the `FollowedClock`, exactly as it does with
an external MIDI clock: jamd step s is Link beat (s - step_offset) /
steps_per_beat, with the bar (Link's quantum) = jamd's bar, so Link's bar
lines are jamd's.  Link's clock is not `perf_counter_ns` (on Linux it is
CLOCK_MONOTONIC_RAW): the two are sampled together at every poll.
"""

from __future__ import annotations

import logging
import math
import time

from ..errors import ConfigError

log = logging.getLogger(__name__)

LINK_POLL_S = 0.05  # a peer's tempo change reaches jamd's grid within this


def _import_link():
    try:
        import link
    except ImportError:
        raise ConfigError("clock.source: link needs Ableton Link's Python binding: "
                          "pip install 'jamd[link]' (LinkPython-extern; Link itself is GPLv2+)") from None
    return link


class LinkFollower:
    """jamd's view of a Link session: tempo, beat phase and (optionally) transport."""

    def __init__(self, bpm: float, quantum: int, start_stop_sync: bool = False):
        lib = _import_link()
        self.quantum = float(quantum)
        self.start_stop_sync = start_stop_sync
        self.link = lib.Link(float(bpm))
        self.link.enabled = True
        self.link.startStopSyncEnabled = start_stop_sync
        self.peers = 0

    def _offset_ns(self) -> int:
        """perf_counter_ns - Link's clock (in ns), from the tightest of three readings."""
        best = None
        clock = self.link.clock()
        for _ in range(3):
            a = time.perf_counter_ns()
            us = clock.micros()
            b = time.perf_counter_ns()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) // 2 - us * 1000)
        return best[1]

    def state(self, steps_per_beat: int) -> tuple[float, tuple[int, float, float], bool]:
        """(beat now, timebase (origin_ns, origin_step without offset, step_ns), playing)."""
        s = self.link.captureAppSessionState()
        offset = self._offset_ns()
        now_us = self.link.clock().micros()
        beat = s.beatAtTime(now_us, self.quantum)
        b0 = math.floor(beat)
        origin_ns = int(s.timeAtBeat(b0, self.quantum) * 1000 + offset)
        tempo = s.tempo()
        playing = s.isPlaying() if self.start_stop_sync else True
        return beat, (origin_ns, b0 * steps_per_beat, 60e9 / tempo / steps_per_beat), playing

    def tempo(self) -> float:
        return self.link.captureAppSessionState().tempo()

    def set_tempo(self, bpm: float) -> None:
        """Propose a tempo to the session (jamd's own clock.bpm on a reload)."""
        s = self.link.captureAppSessionState()
        s.setTempo(float(bpm), self.link.clock().micros())
        self.link.commitAppSessionState(s)

    def poll_peers(self) -> int | None:
        """The number of peers when it changed since the last call, else None."""
        n = self.link.numPeers()
        if n != self.peers:
            self.peers = n
            return n
        return None

    def close(self) -> None:
        self.link.enabled = False
