"""`clock.source: link`: jamd as a peer of an Ableton Link session (optional extra `link`).

A second Link peer in this process stands for Live or any Link app.  jamd's
session plays with the metronome on an in-memory output in real time; each
click's send time is converted to the peer's beat: clicks must fall on the
peer's beats, accents on its bar lines (quantum 4), and follow its tempo.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fakes import fake_model

from jamd.config import Config
from jamd.live.session import LiveSession
from jamd.midi.outputs import MemoryOutput

link = pytest.importorskip("link", reason="the optional extra jamd[link] (LinkPython-extern) is not installed")

CLICK_ON = 0x99


def _snapshot(peer):
    """The peer's timeline now (a tempo change rewrites it from then on) and its
    clock's offset from perf_counter_ns."""
    a = time.perf_counter_ns()
    us = peer.clock().micros()
    b = time.perf_counter_ns()
    return peer.captureSessionState(), (a + b) // 2 - us * 1000


def _peer_beat(snapshot, t_ns: int) -> float:
    """The peer's beat (quantum 4) at perf_counter time `t_ns`."""
    state, offset = snapshot
    return state.beatAtTime(int((t_ns - offset) // 1000), 4.0)


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_jamd_plays_on_a_link_sessions_beats_and_follows_its_tempo():
    peer = link.Link(100.0)
    peer.enabled = True
    cfg = Config().replace(**{"clock.source": "link", "clock.bpm": 120, "live.mode": "continuous",
                              "metronome.enabled": True})
    out = MemoryOutput()
    session = LiveSession(cfg, out, fake_model())
    try:
        if not _wait(lambda: peer.numPeers() > 0, 10.0):
            pytest.skip("no Link peer discovered in 10 s (no multicast on this machine's interfaces)")
        session.start()
        # the two peers agree on one tempo: jamd's 120 proposed at join, or the peer's 100
        time.sleep(1.0)
        s = peer.captureSessionState()
        s.setTempo(100.0, peer.clock().micros())
        peer.commitSessionState(s)
        time.sleep(4.5)
        at_100 = _snapshot(peer)
        t_change = time.perf_counter_ns()
        s = peer.captureSessionState()
        s.setTempo(140.0, peer.clock().micros())
        peer.commitSessionState(s)
        time.sleep(3.5)
        at_140 = _snapshot(peer)
    finally:
        session.close()
        peer.enabled = False
    clicks = [(t, m[1]) for t, m in out.sent if m[0] == CLICK_ON]
    before = [(t, n) for t, n in clicks if t_change - 3.0e9 < t < t_change]
    after = [(t, n) for t, n in clicks if t > t_change + 0.5e9]
    assert len(before) >= 4 and len(after) >= 4
    for t, note, snap in [(t, n, at_100) for t, n in before] + [(t, n, at_140) for t, n in after]:
        beat = _peer_beat(snap, t)
        # on the peer's beat (0.02 beat: 12 ms at 100 BPM), the accent on its bar line
        assert abs(beat - round(beat)) < 0.02, beat
        assert note == (76 if round(beat) % 4 == 0 else 77), (beat, note)
    slow = np.median(np.diff([t for t, _ in before])) / 1e6
    fast = np.median(np.diff([t for t, _ in after])) / 1e6
    assert abs(slow - 600) < 3 and abs(fast - 60000 / 140) < 3, (slow, fast)
