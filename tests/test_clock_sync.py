"""MIDI clock sync: the master's timed messages and the follower's estimates.

Everything runs on synthetic timestamps (a `ManualClock`, seeded jitter), so
no test depends on the machine's timing; the JACK rig tests of issue 6 check
the same behaviour through a real MIDI system.
"""

from __future__ import annotations

import random

import pytest

from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock
from jamd.sync.clock_follower import ARMED, LOST, RUNNING, STOPPED, ClockFollower, FollowedClock
from jamd.sync.clock_master import (
    CLOCK,
    CONTINUE,
    START,
    STOP,
    ClockMaster,
    Timed,
    parse_song_position,
    song_position,
)
from jamd.sync.scheduler import Scheduler

MS = 1_000_000
T0 = 10_000_000_000  # an arbitrary perf_counter origin


def tick_ns(bpm: float) -> float:
    return 60e9 / bpm / 24


def play_ticks(follower: ClockFollower, t: float, bpm: float, n: int, rng: random.Random | None = None,
               jitter_ns: float = 0.3 * MS) -> tuple[float, list]:
    """Feed `n` clocks at `bpm` from time `t` (the first at t), each arriving
    up to ±jitter late or early; returns the time of the next ideal tick and
    the events."""
    events = []
    for _ in range(n):
        noise = rng.uniform(-jitter_ns, jitter_ns) if rng else 0.0
        events += follower.feed(int(round(t + noise)), [CLOCK])
        t += tick_ns(bpm)
    return t, events


def within(value: float | None, target: float, tolerance: float) -> bool:
    return value is not None and abs(value - target) <= tolerance * target


# -- master ----------------------------------------------------------------------

def test_master_ticks_are_24_per_quarter_with_deadlines_from_the_origin():
    clock = ManualClock(120, start_ns=1_000)
    master = ClockMaster(clock)
    ticks = master.ticks_until(4)  # one beat
    assert len(ticks) == 24 and all(t.message == (CLOCK,) for t in ticks)
    assert [t.step for t in ticks] == [k / 6 for k in range(24)]
    for k, t in enumerate(ticks):
        assert abs(master.deadline_ns(t) - (1_000 + k * 500_000_000 / 24)) <= 1
    # a later window continues where the last one ended, with no tick twice
    more = master.ticks_until(4 * 1000)
    assert more[0].step == 4 and len(ticks) + len(more) == 24 * 1000
    # tick 24,000 (beat 1000) is exactly 500 s after the origin: nothing accumulated
    assert master.deadline_ns(Timed(4 * 1000, (CLOCK,))) == 1_000 + 500_000_000_000
    intervals = {master.deadline_ns(b) - master.deadline_ns(a) for a, b in zip(more, more[1:], strict=False)}
    assert intervals <= {20_833_333, 20_833_334}


def test_master_tick_grid_stays_continuous_across_a_tempo_change():
    clock = ManualClock(120, start_ns=0)
    master = ClockMaster(clock)
    before = master.ticks_until(8)
    clock.advance_to_step(8)
    at_change = clock.time_of(8)
    clock.set_tempo(90)
    after = master.ticks_until(16)
    assert after[0].step == 8 == before[-1].step + 1 / 6  # no tick lost or doubled
    assert master.deadline_ns(after[0]) == at_change  # the grid does not jump
    tick_90 = 60e9 / 90 / 24
    for j, t in enumerate(after):
        assert abs(master.deadline_ns(t) - (at_change + j * tick_90)) <= 1
    assert len(after) == 48  # still 24 per quarter at the new tempo


@pytest.mark.parametrize(("position", "encoded"), [
    (0, (0xF2, 0, 0)), (1, (0xF2, 1, 0)), (127, (0xF2, 127, 0)), (128, (0xF2, 0, 1)),
    (300, (0xF2, 44, 2)), (4096, (0xF2, 0, 32)), (16383, (0xF2, 127, 127)),
])
def test_song_position_pointer_is_14_bits_lsb_first(position, encoded):
    assert song_position(position) == encoded
    assert parse_song_position(encoded) == position


@pytest.mark.parametrize("bad", [-1, 16384])
def test_song_position_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="16383"):
        song_position(bad)


def test_master_transport_through_the_real_scheduler():
    """Start on a bar line, stop, then SPP + Continue: sent by the existing
    Scheduler in order, Start and Continue just before the tick they announce."""
    clock = ManualClock(120, start_ns=0)
    out = MemoryOutput(clock.now_ns)
    sch = Scheduler(clock, out)
    master = ClockMaster(clock)
    queued = master.ticks_until(16) + master.start(16) + master.ticks_until(32)
    queued += master.stop(24)  # stopped half-way through bar 2; clocks go on (tempo for the slave)
    queued += master.continue_at(32) + master.ticks_until(40)
    for step, message in queued:
        sch.schedule(step, message)
    sch.flush_until(40)
    sent = [(round(clock.step_at(t), 6), m) for t, m in out.sent]
    first_after = {m: next(s for s, mm in sent[sent.index((s0, m)) + 1:] if mm == (CLOCK,))
                   for s0, m in sent if m in ((START,), (CONTINUE,))}
    assert first_after == {(START,): 16, (CONTINUE,): 32}  # the slave's bar 1, then song 16th 16
    transport = [(s, m) for s, m in sent if m != (CLOCK,)]
    lead = round(16 - 1 / 12, 6)
    assert transport == [(lead, (START,)), (24, (STOP,)), (lead + 16, (0xF2, 16, 0)), (lead + 16, (CONTINUE,))]
    assert sum(m == (CLOCK,) for _, m in sent) == 40 * 6  # every tick, once, 24 per quarter
    assert master.position_16th(32) == 16


def test_master_silent_while_stopped_sends_no_tick_outside_the_song():
    clock = ManualClock(120, start_ns=0)
    master = ClockMaster(clock, send_while_stopped=False)
    assert master.ticks_until(16) == []
    assert master.start(16) == [Timed(16 - 1 / 12, (START,))]
    ticks = master.ticks_until(32)
    assert ticks[0].step == 16 and len(ticks) == 96
    assert master.stop(20) == [Timed(20, (STOP,))]
    assert master.ticks_until(48) == []  # the caller drops the queued ticks past 20 (panic)
    assert master.continue_at(48)[0].message == song_position(32)
    assert master.ticks_until(49)[0].step == 48


def test_resync_after_a_panic_requeues_pending_transport_and_restarts_ticks():
    clock = ManualClock(120, start_ns=0)
    master = ClockMaster(clock)
    master.ticks_until(20)
    pending = master.start(32)
    clock.advance_to_step(10.05)
    # the panic dropped the queue: the Start still to come, and ticks from now on
    assert master.resync(clock.now_step()) == pending
    assert master.ticks_until(11)[0].step == pytest.approx(61 / 6)
    # once the Start is due, it is not handed out again
    assert master.resync(40) == []


def test_continue_past_the_pointer_range_restarts_at_bar_1():
    clock = ManualClock(120, start_ns=0)
    master = ClockMaster(clock)
    master.start(0)
    master.stop(10)
    assert master.continue_at(16_384) == [Timed(16_384 - 1 / 12, (START,))]
    assert master.origin_step == 16_384


# -- follower: tempo -------------------------------------------------------------

def test_follower_estimates_100_bpm_within_half_a_percent_after_one_beat_of_jitter():
    rng = random.Random(1)
    f = ClockFollower()
    assert f.bpm is None
    play_ticks(f, T0, 100, 25, rng)  # 25 clocks = 24 intervals = one beat
    assert within(f.bpm, 100, 0.005)
    assert within(f.bpm, 100, 0.001)  # in fact far better: the fit averages the jitter


def test_follower_follows_100_to_140_bpm_within_one_beat():
    rng = random.Random(2)
    f = ClockFollower()
    t, events = play_ticks(f, T0, 100, 48, rng)
    assert events == [] and within(f.bpm, 100, 0.005)
    t, events = play_ticks(f, t, 140, 24, rng)  # one beat at the new tempo
    assert within(f.bpm, 140, 0.005)
    assert [e.kind for e in events] == ["tempo"]
    # the change was seen after a few ticks, not at the end of the beat
    f2 = ClockFollower()
    t2, _ = play_ticks(f2, T0, 100, 48, random.Random(2))
    t2, early = play_ticks(f2, t2, 140, 4, random.Random(3))
    assert [e.kind for e in early] == ["tempo"] and within(f2.bpm, 140, 0.02)
    # and back down again
    t, events = play_ticks(f, t, 100, 24, rng)
    assert within(f.bpm, 100, 0.005) and [e.kind for e in events] == ["tempo"]


def test_one_late_clock_neither_bends_the_estimate_nor_counts_as_a_change():
    f = ClockFollower()
    t, _ = play_ticks(f, T0, 120, 30)
    events = f.feed(int(t + 5 * MS), [CLOCK])  # delivered 5 ms late, once
    t, more = play_ticks(f, t + tick_ns(120), 120, 30)
    assert events + more == []
    assert within(f.bpm, 120, 1e-6)


def test_follower_copes_with_arrivals_quantised_to_a_jack_period():
    period = 256 / 48_000 * 1e9  # 5.3 ms: every event arrives at the end of a period
    f = ClockFollower()
    events = []
    t = T0 + 1.7 * MS
    for _ in range(24 * 8):
        arrival = (t // period + 1) * period
        events += f.feed(int(arrival), [CLOCK])
        t += tick_ns(100)
    assert within(f.bpm, 100, 0.005)
    assert events == []  # the quantisation is learnt as jitter, not taken for tempo changes


def _started(bpm: float, beats: int = 2, **kw) -> tuple[ClockFollower, float]:
    f = ClockFollower(**kw)
    t, _ = play_ticks(f, T0, bpm, 24)
    f.feed(int(t - 50_000), [START])
    t, _ = play_ticks(f, t, bpm, 24 * beats)
    return f, t


@pytest.mark.parametrize("bpm", [60, 120, 200])
def test_a_lost_tick_is_inferred_and_the_position_stays_on_the_master(bpm):
    f, t = _started(bpm)
    assert f.position_ticks == 47
    t += tick_ns(bpm)  # tick 48 never arrives
    t, events = play_ticks(f, t, bpm, 24, random.Random(4))
    assert events == [] and f.position_ticks == 48 + 24 and f.fit.lost_ticks == 1
    assert within(f.bpm, bpm, 0.002)


@pytest.mark.parametrize("bpm", [100, 140, 200])
@pytest.mark.parametrize("gaps", [[(0, 3)], [(0, 3), (1, 1)], [(0, 2), (2, 2)], [(0, 6)], [(0, 1), (1, 1), (1, 1)]])
def test_ticks_lost_in_a_row_are_inferred_and_the_grid_stays_on_the_master(bpm, gaps):
    """A non-realtime JACK server that misses a few process cycles drops every clock in
    them (the rig under 3 busy loops lost 3 in a row, then one more 2 ticks later):
    `gaps` is (ticks delivered, ticks lost) in turn.  Before, the run after them was
    taken for a phase move of whole ticks and the grid stayed ~100 ms late."""
    f, t = _started(bpm)
    rng = random.Random(9)
    line_before = f.time_of_tick(400)
    lost = 0
    for delivered, missing in gaps:
        t, _ = play_ticks(f, t, bpm, delivered, rng)
        t += missing * tick_ns(bpm)
        lost += missing
    t, events = play_ticks(f, t, bpm, 48, rng)
    delivered = sum(d for d, _ in gaps)
    assert [e.kind for e in events] == [] and f.fit.lost_ticks == lost
    assert f.position_ticks == 47 + delivered + lost + 48
    assert f.time_of_tick(400) == pytest.approx(line_before, abs=1 * MS)  # the grid never moved
    assert within(f.bpm, bpm, 0.002)


@pytest.mark.parametrize("bpm", [60, 120, 200])
def test_a_late_tick_and_its_catch_up_among_the_first_clocks_do_not_lock_the_tempo(bpm):
    """jamd as master, seen by the rig's recorder at a load average of 5: its 4th clock
    went 15 ms late and the 5th 5.6 ms after it.  A fit not yet filled restarted on
    the long interval but kept the slope of the short one (clamped to 300 BPM), so
    every true interval after it looked long and restarted it again, for ever."""
    f = ClockFollower(bpm_range=(20.0, 300.0))
    tick = tick_ns(bpm)
    times = [T0 + i * tick for i in range(48)]
    times[3] += 0.7 * tick  # late; the next is on time, so it comes right after
    for t in times:
        f.feed(int(t), [CLOCK])
    assert within(f.bpm, bpm, 0.002), f.bpm


def test_a_lost_first_clock_after_start_is_still_song_position_0():
    f = ClockFollower()
    t, _ = play_ticks(f, T0, 120, 24)
    f.feed(int(t - 50_000), [START])
    t, _ = play_ticks(f, t + tick_ns(120), 120, 10)  # the clock of song tick 0 is lost
    assert f.position_ticks == 10 and f.time_of_tick(0) == pytest.approx(t - 11 * tick_ns(120), abs=1000)


@pytest.mark.parametrize("stall_ms", [60, 200, 500])
def test_a_stall_then_a_burst_is_catching_up_not_a_tempo_change(stall_ms):
    f, t = _started(120)
    line_before = f.time_of_tick(200)
    held = []
    release = t + stall_ms * MS
    while t <= release + len(held) * 0.1 * MS:  # every tick due before the burst has ended is in it
        held.append(t)
        t += tick_ns(120)
    events = []
    for k in range(len(held)):  # all delivered at once, 0.1 ms apart
        events += f.feed(int(release + k * 0.1 * MS), [CLOCK])
    t, more = play_ticks(f, t, 120, 24)
    assert events + more == [] and within(f.bpm, 120, 0.001)
    assert f.time_of_tick(200) == pytest.approx(line_before, abs=0.2 * MS)  # the grid never moved
    assert f.position_ticks == 48 + len(held) + 24 - 1


def test_the_tempo_stays_in_the_configured_range():
    f, _ = _started(400, bpm_range=(20.0, 300.0))
    assert within(f.bpm, 300, 1e-9)
    g, _ = _started(15, bpm_range=(20.0, 300.0))
    assert within(g.bpm, 20, 1e-9)


def test_a_halved_tempo_is_a_tempo_change_not_a_run_of_lost_ticks():
    f, t = _started(140)
    t, events = play_ticks(f, t, 70, 24)
    assert within(f.bpm, 70, 0.005) and [e.kind for e in events] == ["tempo"]
    assert f.fit.lost_ticks <= 1


# -- follower: transport ---------------------------------------------------------

def test_start_stop_spp_continue_move_the_song_position():
    f = ClockFollower()
    t, _ = play_ticks(f, T0, 120, 30)  # a master that clocks while stopped: tempo known
    assert f.state == STOPPED and not f.running and f.time_of_16th(0) is None
    # Start arrives between two clocks: the next clock is bar 1, song position 0
    events = f.feed(int(t - 3 * MS), [START])
    assert events[0][:1] == ("start",) and events[0].position_16th == 0
    assert f.state == ARMED and f.running
    assert f.time_of_16th(0) == pytest.approx(t, abs=1_000)  # predicted from the clocks while stopped
    assert f.next_beat() == (0, f.time_of_16th(0))
    downbeat = t
    t, _ = play_ticks(f, t, 120, 14)  # ticks 0..13
    assert f.state == RUNNING and f.position_ticks == 13 and f.position_16th == pytest.approx(13 / 6)
    assert f.time_of_16th(3) == pytest.approx(downbeat + 18 * tick_ns(120), abs=1_000)
    assert f.next_16th() == (3, f.time_of_16th(3))
    assert f.next_beat() == (4, f.time_of_16th(4))
    # Stop: the position is kept (the clock after the last one counted)
    events = f.feed(int(t), [STOP])
    assert [e.kind for e in events] == ["stop"] and events[0].position_16th == pytest.approx(14 / 6)
    assert not f.running and f.time_of_16th(5) is None
    t, _ = play_ticks(f, t, 120, 10)  # clocks while stopped do not move the song
    assert f.position_ticks == 14
    # SPP while stopped, then Continue: the next clock is that 16th
    events = f.feed(int(t - 5 * MS), [0xF2, 32, 0]) + f.feed(int(t - 4 * MS), [CONTINUE])
    assert [(e.kind, e.position_16th) for e in events] == [("position", 32), ("continue", 32)]
    play_ticks(f, t, 120, 1)
    assert f.position_16th == 32 and f.position_ticks == 192
    assert f.time_of_16th(33) == pytest.approx(t + 6 * tick_ns(120), abs=1_000)


def test_continue_without_a_pointer_resumes_after_the_last_clock():
    f = ClockFollower()
    f.feed(T0, [START])
    t, _ = play_ticks(f, T0 + MS, 120, 20)  # ticks 0..19
    f.feed(int(t), [STOP])
    f.feed(int(t + 500 * MS), [CONTINUE])
    play_ticks(f, t + 501 * MS, 120, 1)
    assert f.position_ticks == 20


def test_a_pointer_while_running_jumps_at_the_next_clock():
    f = ClockFollower()
    f.feed(T0, [START])
    t, _ = play_ticks(f, T0 + MS, 120, 12)
    assert [e.kind for e in f.feed(int(t - MS), [0xF2, 0, 1])] == ["position"]  # song 16th 128
    assert f.time_of_16th(128) == pytest.approx(t, abs=1_000)
    play_ticks(f, t, 120, 7)
    assert f.position_ticks == 128 * 6 + 6


def test_realtime_bytes_inside_a_message_are_seen():
    f = ClockFollower()
    events = f.feed(T0, [0xF2, CLOCK, 5, 1])  # a clock interleaved in an SPP (legal MIDI)
    assert [(e.kind, e.position_16th) for e in events] == [("position", 133)]
    assert f.position_ticks == 133 * 6


# -- follower: clock loss --------------------------------------------------------

def test_clock_loss_after_one_second_stops_and_continue_resumes():
    f = ClockFollower()
    f.feed(T0, [START])
    t, _ = play_ticks(f, T0 + MS, 120, 49)  # ticks 0..48: two beats and one clock
    last = int(t - tick_ns(120))
    assert f.loss_deadline_ns() == last + 1_000_000_000
    assert f.check(last + 999 * MS) == [] and f.running
    events = f.check(last + 1_001 * MS)
    assert [(e.kind, e.t_ns) for e in events] == [("lost", last + 1_000_000_000)]
    assert f.state == LOST and f.lost and not f.running and f.time_of_16th(20) is None
    assert f.check(last + 5_000 * MS) == []  # said once
    # the DAW comes back: clocks alone change nothing, Continue resumes where it stopped
    t, events = play_ticks(f, last + 3_000 * MS, 120, 30)
    assert events == [] and f.state == LOST and f.position_ticks == 49
    assert [e.kind for e in f.feed(int(t - MS), [CONTINUE])] == ["continue"]
    play_ticks(f, t, 120, 1)
    assert f.state == RUNNING and f.position_ticks == 49 and within(f.bpm, 120, 1e-6)


def test_a_clock_after_a_long_silence_reports_the_loss_first():
    f = ClockFollower()
    f.feed(T0, [START])
    t, _ = play_ticks(f, T0 + MS, 120, 10)
    events = f.feed(int(t + 2_000 * MS), [CLOCK])  # nobody called check() in between
    assert [e.kind for e in events] == ["lost"] and f.state == LOST


def test_loss_while_armed_and_no_clock_ever_comes():
    f = ClockFollower()
    f.feed(T0, [START])
    assert [e.kind for e in f.check(T0 + 1_001 * MS)] == ["lost"]
    assert f.feed(T0 + 2_000 * MS, [START])[0].kind == "start" and f.running


# -- master to follower ----------------------------------------------------------

def _deliver(master: ClockMaster, timed: list[Timed], rng: random.Random,
             jitter_ns: float = 0.3 * MS) -> list[tuple[int, tuple[int, ...]]]:
    """What a slave receives, in order: each message near its deadline, with
    jitter, but never before the one sent ahead of it (a MIDI link is FIFO)."""
    out: list[tuple[int, tuple[int, ...]]] = []
    for t in sorted(timed, key=master.deadline_ns):  # the sender's order (a stable sort)
        arrival = int(master.deadline_ns(t) + rng.uniform(-jitter_ns, jitter_ns))
        out.append((max(arrival, out[-1][0] if out else arrival), t.message))
    return out


def _feed(follower: ClockFollower, received: list[tuple[int, tuple[int, ...]]]) -> list[str]:
    return [e.kind for t, m in received for e in follower.feed(t, m)]


def test_master_drives_follower_within_half_a_percent_and_in_position():
    rng = random.Random(7)
    clock = ManualClock(120, start_ns=T0)
    master = ClockMaster(clock)
    follower = ClockFollower()
    received = _deliver(master, master.ticks_until(16) + master.start(16) + master.ticks_until(64), rng)
    _feed(follower, received)
    assert within(follower.bpm, 120, 0.005)
    assert follower.running and follower.position_16th == pytest.approx(master.position_16th(64 - 1 / 6))
    # The follower's predicted grid is the master's, inside the 2 ms of issue 6
    # even a whole bar ahead; the sender re-reads a deadline about 1 ms before
    # it, from a fit at most a tick old, so what counts is the next beat.
    for n in range(48, 64):
        assert abs(follower.time_of_16th(n) - clock.time_of(16 + n)) < (0.5 if n < 52 else 2) * MS
    # a FollowedClock set from it puts jamd's notes on that grid
    slave_clock = FollowedClock(120, now_ns=lambda: 0)
    assert slave_clock.follow(follower.timebase(step_offset=1000))
    for n in range(48, 52):
        assert abs(slave_clock.time_of(1000 + n) - clock.time_of(16 + n)) < 0.5 * MS
    assert slave_clock.bpm == pytest.approx(120, rel=0.005)

    # the master speeds up to 140 on a bar line: followed within one beat
    clock.advance_to_step(64)
    clock.set_tempo(140)
    _feed(follower, _deliver(master, master.ticks_until(68), rng))
    assert within(follower.bpm, 140, 0.005)

    # stop, relocate, continue: the follower lands where the master says
    kinds = _feed(follower, _deliver(master, master.ticks_until(80) + master.stop(70), rng))
    kinds += _feed(follower, _deliver(master, master.continue_at(80) + master.ticks_until(96), rng))
    assert kinds == ["stop", "position", "continue"]
    assert follower.position_16th == pytest.approx(master.position_16th(96 - 1 / 6))
    assert within(follower.bpm, 140, 0.005)


def test_followed_clock_ignores_an_unknown_timebase():
    clock = FollowedClock(120, now_ns=lambda: 5)
    before = clock.time_of(3)
    assert not clock.follow(ClockFollower().timebase())
    assert clock.time_of(3) == before


def test_follower_settings_are_checked():
    with pytest.raises(ValueError, match="window"):
        ClockFollower(window=3)
    with pytest.raises(ValueError, match="confirm"):
        ClockFollower(confirm=1)
