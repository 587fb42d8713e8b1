"""Clock sync in the engine, on an in-memory output with a manual clock (exact event lists).

jamd as master (clock.send): ticks, Start/Stop/Continue/SPP, survival of a panic.
jamd as slave (clock.source: midi): a simulated master at exact times; notes and
clicks must land on its grid, follow its tempo, position and transport.
Count-in and metronome clicks.  The same paths over real JACK ports are in
test_clock_jack.py.
"""

from __future__ import annotations

import pytest
from fakes import fake_model

from jamd.config import Config
from jamd.errors import ConfigError
from jamd.live.session import LiveSession
from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock
from jamd.sync.clock_follower import FollowedClock
from jamd.sync.clock_master import song_position

ON, OFF, CC = 0x90, 0x80, 0xB0
TICK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC


def master_session(mode="continuous", **sets):
    cfg = Config().replace(**{"live.mode": mode, "clock.send": True, **sets})
    clock = ManualClock(120)
    out = MemoryOutput(clock.now_ns)
    s = LiveSession(cfg, out, fake_model(), clock=clock)
    return s, clock, out


def run_to(s, clock, step):
    here = clock.now_step()
    while here < step:
        here = min(step, int(here) + 1)
        clock.advance_to_step(here)
        s.engine.run_once()
        s.scheduler.flush_until(here)


def timeline(clock, out, kinds=None):
    return [(round(clock.step_at(t), 4), m) for t, m in out.sent if kinds is None or m[0] in kinds]


def test_master_sends_start_on_the_first_bar_then_a_tick_every_sixth_of_a_16th():
    s, clock, out = master_session()
    run_to(s, clock, 40)
    ticks = [st for st, m in timeline(clock, out, {TICK})]
    # clocks from the start (a slave learns the tempo before Start), 24 per quarter = 6 per 16th
    assert ticks == [round(k / 6, 4) for k in range(len(ticks))]
    assert ticks[-1] > 39.8
    starts = timeline(clock, out, {START})
    assert starts == [(round(16 - 1 / 12, 4), (START,))]  # half a tick before bar line 16
    first_note = next(st for st, m in timeline(clock, out) if m[0] == ON)
    assert first_note == 16  # the DAW's bar 1 is jamd's first bar


def test_master_ticks_survive_a_panic_and_stop_start_send_stop_spp_continue():
    s, clock, out = master_session()
    run_to(s, clock, 21)
    s.engine.control(24, 127)  # panic: the note queue (shared with the clock) is dropped
    run_to(s, clock, 30)
    ticks = [st for st, m in timeline(clock, out, {TICK})]
    assert ticks == [round(k / 6, 4) for k in range(len(ticks))]  # not one tick lost
    s.engine.control(23, 0)  # stop
    run_to(s, clock, 35)
    s.engine.control(23, 127)  # start again: the slave resumes where jamd resumes
    run_to(s, clock, 52)
    transport = timeline(clock, out, {START, STOP, CONTINUE, 0xF2})
    assert transport[0] == (round(16 - 1 / 12, 4), (START,))
    assert transport[1] == (30.0, (STOP,))
    # jamd's next bar line after 35 is 48 = song position 32 (bar 3) for the slave
    lead = round(48 - 1 / 12, 4)
    assert transport[2:] == [(lead, song_position(32)), (lead, (CONTINUE,))]
    ticks = [st for st, m in timeline(clock, out, {TICK})]
    assert ticks == [round(k / 6, 4) for k in range(len(ticks))]  # clocks ran on while stopped
    notes = [st for st, m in timeline(clock, out) if m[0] == ON]
    assert not [n for n in notes if 30 <= n < 48] and min(n for n in notes if n >= 48) == 48
    s.close()
    assert out.messages[-1] == (STOP,)  # the slave stops with jamd


def test_count_in_then_first_bar_and_start_with_metronome_clicks():
    s, clock, out = master_session(**{"metronome.count_in_bars": 1, "metronome.enabled": True})
    run_to(s, clock, 47)
    clicks = [(st, m[1], m[2]) for st, m in timeline(clock, out, {ON | 9})]
    assert [c[0] for c in clicks] == list(range(16, 48, 4))
    assert [c[1] for c in clicks] == [76, 77, 77, 77] * 2  # accent on the bar line
    assert clicks[0][2] == 120 and clicks[1][2] == 100
    notes = [st for st, m in timeline(clock, out, {ON})]
    assert notes[0] == 32  # after one bar of count-in
    assert timeline(clock, out, {START}) == [(round(32 - 1 / 12, 4), (START,))]
    offs = [st for st, m in timeline(clock, out, {OFF | 9})]
    assert offs == [c + 1 for c in range(16, 48, 4)]


def test_count_in_alone_clicks_only_during_the_count_in():
    cfg = Config().replace(**{"live.mode": "continuous", "metronome.count_in_bars": 2})
    clock = ManualClock(120)
    out = MemoryOutput(clock.now_ns)
    s = LiveSession(cfg, out, fake_model(), clock=clock)
    run_to(s, clock, 80)
    assert [st for st, m in timeline(clock, out, {ON | 9})] == list(range(16, 48, 4))
    assert min(st for st, m in timeline(clock, out, {ON})) == 48


def test_clock_send_with_midi_source_is_refused():
    with pytest.raises(ConfigError, match=r"clock.send needs clock.source internal or link"):
        Config().replace(**{"clock.send": True, "clock.source": "midi"})


# -- jamd as slave ---------------------------------------------------------------

class ManualFollowedClock(FollowedClock, ManualClock):
    """A followed clock whose time only moves when the test says."""


class Master:
    """A simulated DAW master: clock messages at exact times, jitter-free."""

    def __init__(self, bpm: float, t0_ns: int = 0):
        self.t = t0_ns
        self.tick_ns = 60e9 / bpm / 24
        self.song_tick = 0
        self.running = False
        self.messages: list[tuple[int, list[int]]] = []
        self.grid: dict[int, int] = {}  # song tick -> time, while running

    def tempo(self, bpm: float) -> None:
        self.tick_ns = 60e9 / bpm / 24

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.t += self.tick_ns
            self.messages.append((int(self.t), [TICK]))
            if self.running:
                self.grid[self.song_tick] = int(self.t)
                self.song_tick += 1

    def send(self, *message: int) -> None:
        self.messages.append((int(self.t + self.tick_ns / 2), list(message)))
        if message[0] == START:
            self.running, self.song_tick = True, 0
        elif message[0] == CONTINUE:
            self.running = True
        elif message[0] == STOP:
            self.running = False
        elif message[0] == 0xF2:
            self.song_tick = (message[1] | message[2] << 7) * 6


def slave_session(mode="continuous", **sets):
    cfg = Config().replace(**{"live.mode": mode, "clock.source": "midi", "metronome.enabled": True, **sets})
    clock = ManualFollowedClock(120)
    out = MemoryOutput(clock.now_ns)
    s = LiveSession(cfg, out, fake_model(), clock=clock)
    return s, clock, out


def drive(s, clock, messages, until_ns, step_ns=1_000_000):
    """Move time 1 ms at a time: the master's messages arrive, the engine works,
    the sender sends what is due (at its deadline)."""
    msgs = sorted(messages, key=lambda m: m[0])
    t = clock.t_ns
    while t < until_ns:
        t += step_ns
        while msgs and msgs[0][0] <= t:
            at, m = msgs.pop(0)
            clock.t_ns = at
            s.engine.midi_in(m, at)
            s.engine.run_once()
        clock.t_ns = t
        s.engine.run_once()
        s.scheduler.flush_until(clock.step_at(t))
        clock.t_ns = t


def test_slave_waits_for_start_then_plays_on_the_masters_grid_and_follows_its_tempo():
    s, clock, out = slave_session()
    m = Master(100)
    m.ticks(48)  # clocks while stopped: nothing plays
    drive(s, clock, m.messages, m.t)
    assert not [x for x in out.sent if x[1][0] & 0xF0 == ON]
    m.messages.clear()
    m.send(START)
    m.ticks(4 * 96)  # 4 bars at 100
    m.tempo(140)
    m.ticks(4 * 96)  # 4 bars at 140
    drive(s, clock, m.messages, m.t)
    grid16 = {k // 6: t for k, t in m.grid.items() if k % 6 == 0}
    onsets = [t for t, msg in out.sent if msg[0] == ON]
    assert len(onsets) >= 35  # the fake model plays 5 notes a bar: 8 bars
    # every note lands on one of the master's 16ths (no jitter here: within 1 us),
    # except while the estimate settles after the tempo change (one beat)
    change_16th = 4 * 16
    settle_ns = grid16[change_16th + 4]
    for t in onsets:
        nearest = min(grid16.values(), key=lambda g: abs(g - t))
        if not grid16[change_16th] <= t < settle_ns:
            assert abs(nearest - t) < 1_000, (t, nearest)
    # the first bar is the master's bar 1: the first click is the accent on song 16th 0
    clicks = [(t, msg[1]) for t, msg in out.sent if msg[0] == ON | 9]
    assert clicks[0] == (grid16[0], 76)
    beats = [t for t, _ in clicks]
    assert all(abs(b - grid16[4 * i]) < 1_000 for i, b in enumerate(beats[:16]))
    assert abs(s.engine.follower.bpm - 140) < 0.01


def test_slave_stop_silences_and_spp_continue_resumes_at_that_16th():
    s, clock, out = slave_session()
    m = Master(120)
    m.ticks(24)
    m.send(START)
    m.ticks(2 * 96)
    m.send(STOP)
    drive(s, clock, m.messages, m.t + 10_000_000)
    stop_at = m.messages[-1][0]
    sent_before = len(out.sent)
    late_ons = [t for t, msg in out.sent if msg[0] == ON and t > stop_at]
    assert not late_ons
    assert (CC, 123, 0) in [msg for t, msg in out.sent if t >= stop_at]
    assert s.scheduler.sounding() == []
    m.messages.clear()
    m.ticks(24)  # stopped: clocks only
    m.send(*song_position(36))  # bar 3, beat 2
    m.send(CONTINUE)
    m.ticks(2 * 96)
    drive(s, clock, m.messages, m.t)
    clicks = [(t, msg[1]) for t, msg in out.sent[sent_before:] if msg[0] == ON | 9]
    grid16 = {k // 6: t for k, t in m.grid.items() if k % 6 == 0}
    # beat 2 of bar 3 (an ordinary click), then the accent on bar 4's line (song 16th 48)
    assert clicks[0] == (grid16[36], 77)
    assert clicks[3] == (grid16[48], 76)
    notes = [t for t, msg in out.sent[sent_before:] if msg[0] == ON]
    assert notes and min(notes) >= grid16[48]  # bars begin on the master's bar lines


def test_slave_loses_the_clock_stops_cleanly_and_resumes_on_continue():
    s, clock, out = slave_session()
    m = Master(120)
    m.ticks(24)
    m.send(START)
    m.ticks(96)
    last_tick = m.t
    drive(s, clock, m.messages, m.t + 1_500_000_000)  # the DAW went away
    assert s.engine.follower.lost and not s.engine.playing
    assert s.scheduler.sounding() == []
    assert not [t for t, msg in out.sent if msg[0] == ON and t > last_tick + 1.1e9]
    m.messages.clear()
    m.t += 1.5e9
    m.send(CONTINUE)
    m.ticks(96)
    n = len(out.sent)
    drive(s, clock, m.messages, m.t)
    assert s.engine.playing and [msg for t, msg in out.sent[n:] if msg[0] == ON]


def test_stop_during_the_count_in_takes_the_pending_start_back():
    s, clock, out = master_session(**{"metronome.count_in_bars": 2})
    run_to(s, clock, 20)  # inside the count-in; Start is queued for step 48 - 1/12
    s.engine.control(23, 0)
    run_to(s, clock, 60)
    assert timeline(clock, out, {START, STOP, CONTINUE, 0xF2}) == []  # the slave never started
    assert not [st for st, m in timeline(clock, out) if m[0] == ON and st >= 20]  # no note, no click
    s.engine.control(23, 127)  # start again: a count-in, then a Start (not a Continue)
    run_to(s, clock, 100)
    assert timeline(clock, out, {START, STOP, CONTINUE, 0xF2}) == [(round(96 - 1 / 12, 4), (START,))]
