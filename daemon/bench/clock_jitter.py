"""Jitter profiles of a DAW's MIDI clock, replayed through the real follower and engine.

A simulated master plays a song at a nominal tempo; its clock reaches jamd the
way it does in the real world (issue 13 section 3):

* ``clean``: on time;
* ``jitter-1ms``: each message delivered 0 to 1 ms late (uniform);
* ``stall-burst``: every 2 bars, 200 ms of messages held back, then delivered
  in a burst at 0.1 ms spacing (seen through JACK and on USB);
* ``lost-1-in-100``: one tick in 100 never arrives (a non-real-time JACK server);
* ``drift-1bpm``: the tempo wanders ±1 BPM around the nominal (Bitwig, measured
  at 200 BPM), as a sine over 8 bars.

`replay` feeds the arrivals to a `LiveSession` with `clock.source: midi` on an
in-memory output with a manual clock, 1 ms at a time, as the engine thread
would see them (each 1 ms batch together, as `INPUT_BATCH_S` gathers them),
and returns what was sent and when.  The master's grid is the true time of
every song tick, so an onset's error is its send time minus the grid time of
the nearest song 16th.  Times in ns.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import Config
from ..inference.bar_source import BarSource
from ..live.session import LiveSession
from ..midi.outputs import MemoryOutput
from ..sync.clock import ManualClock
from ..sync.clock_follower import FollowedClock
from ..sync.clock_master import CLOCK, START, STOP

PROFILES = ("clean", "jitter-1ms", "stall-burst", "lost-1-in-100", "drift-1bpm")
MS = 1_000_000


class ManualFollowedClock(FollowedClock, ManualClock):
    """A followed clock whose time only moves when told to."""


@dataclass
class Profile:
    """What the master sent and what jamd received.

    grid: song tick -> the master's time of it (while running); arrivals:
    (t_ns, message) as they reach jamd; start_ns / stop_ns: when the master's
    transport started and stopped.
    """

    name: str
    bpm: float
    arrivals: list[tuple[int, list[int]]] = field(default_factory=list)
    grid: dict[int, int] = field(default_factory=dict)
    start_ns: int = 0
    stop_ns: int = 0

    def grid16(self) -> dict[int, int]:
        """Song 16th -> the master's time of it."""
        return {k // 6: t for k, t in self.grid.items() if k % 6 == 0}


def make_profile(name: str, bpm: float = 120.0, bars: int = 8, seed: int = 0, t0_ns: int = 10**9) -> Profile:
    """The master: one beat of clocks while stopped, Start, `bars` bars, Stop; delivered per `name`."""
    if name not in PROFILES:
        raise ValueError(f"unknown jitter profile {name!r}; known: {', '.join(PROFILES)}")
    rng = random.Random(seed)
    p = Profile(name, bpm)
    sent: list[tuple[float, list[int]]] = []
    t = float(t0_ns)
    bar_ticks = 96
    for _ in range(24):
        t += 60e9 / bpm / 24
        sent.append((t, [CLOCK]))
    tick = 60e9 / bpm / 24
    p.start_ns = int(t + tick - 50_000)
    sent.append((p.start_ns, [START]))  # a DAW sends Start just before the first clock
    for k in range(bars * bar_ticks):
        if name == "drift-1bpm":
            tick = 60e9 / (bpm + math.sin(2 * math.pi * k / (8 * bar_ticks))) / 24
        t += tick
        p.grid[k] = int(t)
        sent.append((t, [CLOCK]))
    p.stop_ns = int(t + tick / 2)
    sent.append((p.stop_ns, [STOP]))
    lost_at = rng.randrange(100)
    arrivals = []
    for i, (ts, msg) in enumerate(sent):
        if name == "jitter-1ms":  # late by 0 to 1 ms, never reordered (MIDI is one stream)
            ts = max(ts + rng.uniform(0, MS), arrivals[-1][0] if arrivals else 0)
        elif name == "lost-1-in-100" and msg == [CLOCK] and i % 100 == lost_at:
            continue
        arrivals.append((ts, msg))
    if name == "stall-burst":
        arrivals = _stall_bursts(arrivals, p.start_ns, 2 * bar_ticks * 60e9 / bpm / 24)
    p.arrivals = [(int(ts), m) for ts, m in sorted(arrivals, key=lambda a: a[0])]
    return p


def _stall_bursts(arrivals: list[tuple[float, list[int]]], start_ns: float, every_ns: float,
                  stall_ns: float = 200 * MS, spacing_ns: float = 0.1 * MS) -> list[tuple[float, list[int]]]:
    """Hold back `stall_ns` of messages every `every_ns` (from 1 bar after Start), then a burst."""
    out = []
    k = 0
    for ts, msg in arrivals:
        phase = ts - start_ns - every_ns / 2
        if phase >= 0 and phase % every_ns < stall_ns:
            release = ts - phase % every_ns + stall_ns
            out.append((release + k * spacing_ns, msg))
            k += 1
        else:
            k = 0
            out.append((ts, msg))
    return out


class _LateAwareOutput(MemoryOutput):
    """Records the true send time: the deadline, or the moment a late event was sent."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(lambda: max(clock.t_ns, self.floor_ns))
        self.floor_ns = 0


def replay(profile: Profile, open_model: Callable[[str], BarSource], until_ns: int | None = None,
           **sets) -> tuple[LiveSession, list]:
    """Drive a `clock.source: midi` session through `profile`; returns (session, [(t_ns, message)]).

    `sets`: config overrides (dotted keys).  Every 1 ms: the arrivals of that
    ms are handled together, the engine ticks, the sender sends what is due.
    """
    cfg = Config().replace(**{"live.mode": "continuous", "clock.source": "midi", **sets})
    clock = ManualFollowedClock(profile.bpm, start_ns=profile.arrivals[0][0] - 10 * MS)
    out = _LateAwareOutput(clock)
    s = LiveSession(cfg, out, open_model, clock=clock)
    msgs = list(profile.arrivals)
    end = until_ns if until_ns is not None else profile.stop_ns + 100 * MS
    t = clock.t_ns
    i = 0
    while t < end:
        prev, t = t, t + MS
        while i < len(msgs) and msgs[i][0] <= t:
            s.engine.midi_in(msgs[i][1], msgs[i][0])
            i += 1
        clock.t_ns = t
        s.engine.run_once()
        out.floor_ns = prev  # anything due before the last flush was queued late: it goes now
        s.scheduler.flush_until(clock.step_at(t))
        out.floor_ns = 0
        clock.t_ns = t
    return s, out.sent


def onset_errors_ms(profile: Profile, sent: list, status: int = 0x90) -> list[float]:
    """Each note-on's send time minus the master's nearest song 16th, in ms (while running)."""
    grid = sorted(profile.grid16().values())
    if not grid:
        return []
    errors = []
    for t, msg in sent:
        if msg[0] != status or len(msg) < 3 or msg[2] == 0 or not grid[0] - 50 * MS <= t <= profile.stop_ns:
            continue
        j = bisect.bisect_left(grid, t)
        nearest = min(grid[max(0, j - 1):j + 1], key=lambda g: abs(g - t))
        errors.append((t - nearest) / MS)
    return errors


def figures(open_model: Callable[[str], BarSource], quick: bool = False) -> list[dict]:
    """Onset error (notes and metronome clicks) against the master's grid, per profile
    and tempo: |error| median / p99 / max in ms over `seeds` runs of 16 bars, plus
    what the follower made of it (ticks inferred lost, catching-up judgements)."""
    seeds = 2 if quick else 10
    rows = []
    for bpm in (120.0, 200.0):
        for name in PROFILES:
            errors, lost, catching, notes, wanted = [], 0, 0, 0, 0
            for seed in range(seeds):
                p = make_profile(name, bpm, bars=16, seed=seed)
                s, sent = replay(p, open_model, **{"metronome.enabled": True, "model.random_seed": seed})
                e = onset_errors_ms(p, sent) + onset_errors_ms(p, sent, 0x99)
                errors += [abs(x) for x in e]
                notes += len(onset_errors_ms(p, sent, 0x99))
                wanted += 16 * 4
                lost += s.engine.follower.fit.lost_ticks
                catching += s.engine.follower.fit.catching_up
                s.close()
            a = np.array(errors)
            rows.append({"profile": name, "bpm": bpm, "runs": seeds, "onsets": len(a),
                         "p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
                         "max_ms": float(a.max()), "clicks_heard": notes, "clicks_due": wanted,
                         "ticks_inferred_lost": lost, "catching_up": catching})
    return rows
