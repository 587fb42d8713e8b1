"""The sender: exact event lists on an in-memory output, panic, no stuck notes.

Timing accuracy is measured by `jamd bench --suite realtime`, not here.
"""

from __future__ import annotations

import heapq
import time

from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import Clock, ManualClock
from jamd.sync.scheduler import Scheduler

ON, OFF, CC = 0x90, 0x80, 0xB0


def make(clock=None, **kw):
    clock = clock or ManualClock(120)
    out = MemoryOutput(clock.now_ns)
    return clock, out, Scheduler(clock, out, **kw)


def steps(clock, out):
    return [(round(clock.step_at(t), 3), m) for t, m in out.sent]


def test_notes_come_out_in_time_order_offs_before_ons():
    clock, out, sch = make()
    sch.schedule_note(4, 8, 64, 90, 1)
    sch.schedule_note(0, 4, 60, 90, 1)  # ends where the next begins
    sch.schedule_note(8, 9.5, 67, 80, 2)
    sch.schedule(2, [CC, 7, 100])
    sch.flush_until(100)
    assert steps(clock, out) == [
        (0, (ON, 60, 90)), (2, (CC, 7, 100)), (4, (OFF, 60, 0)), (4, (ON, 64, 90)),
        (8, (OFF, 64, 0)), (8, (ON | 1, 67, 80)), (9.5, (OFF | 1, 67, 0)),
    ]
    assert sch.sounding() == []


def test_panic_ends_sounding_notes_drops_queue_and_sends_cc123():
    clock, out, sch = make()
    sch.schedule_note(0, 8, 60, 90, 1)
    sch.schedule_note(1, 8, 64, 90, 3)
    sch.schedule_note(4, 6, 67, 90, 1)  # not started yet: must never sound
    sch.flush_until(2)
    assert sch.sounding() == [(1, 60), (3, 64)]
    out.sent.clear()
    sch.panic()
    sch.flush_until(100)
    assert out.messages == [(OFF, 60, 0), (OFF | 2, 64, 0), (CC, 123, 0), (CC | 2, 123, 0)]
    assert sch.sounding() == [] and sch.pending() == 0


def test_moving_a_note_off_extends_a_held_note():
    clock, out, sch = make()
    note = sch.schedule_note(0, 4, 60, 90, 1)
    assert sch.move_note_off(note, 12)
    sch.flush_until(100)
    assert steps(clock, out) == [(0, (ON, 60, 90)), (12, (OFF, 60, 0))]
    assert not sch.move_note_off(note, 20)  # already ended


def test_cancel_drops_unstarted_notes_but_keeps_offs_of_sounding_ones():
    clock, out, sch = make()
    sch.schedule_note(0, 6, 60, 90, 1, tag="a")
    sch.schedule_note(8, 10, 62, 90, 1, tag="a")
    sch.schedule_note(8, 10, 72, 90, 1, tag="b")
    sch.flush_until(1)
    assert sch.cancel("a") == 1
    sch.flush_until(100)
    assert steps(clock, out) == [(0, (ON, 60, 90)), (6, (OFF, 60, 0)), (8, (ON, 72, 90)), (10, (OFF, 72, 0))]


def test_offset_sends_early():
    clock, out, sch = make(offset_ms=10)
    sch.schedule_note(4, 8, 60, 90, 1)
    sch.flush_until(100)
    assert [t for t, _ in out.sent] == [clock.time_of(4) - 10_000_000, clock.time_of(8) - 10_000_000]


def test_sender_thread_sends_everything_in_order_and_stop_silences():
    clock = Clock(bpm=3000)  # 5 ms steps: a quick run of the real thread
    out = MemoryOutput()
    sch = Scheduler(clock, out, spin_us=500)
    sch.start()
    base = clock.next_bar_line(clock.now_step() + 2)
    for i in range(16):
        sch.schedule_note(base + i, base + i + 0.5, 60 + i, 90, 1)
    held = sch.schedule_note(base, base + 10_000, 40, 90, 1)  # would sound "forever"
    while sch.pending() > 1:
        time.sleep(0.005)
    sch.stop()
    expect = [(ON, 60, 90), (ON, 40, 90), (OFF, 60, 0)]
    assert out.messages[:3] == expect or out.messages[:3] == [(ON, 40, 90), (ON, 60, 90), (OFF, 60, 0)]
    assert out.messages[-2:] == [(OFF, 40, 0), (CC, 123, 0)]  # the held note ended by stop
    assert held.on_sent and sch.sounding() == []
    # a busy machine may skip a note overdue past its end (counted), never lose an off
    assert sch.stats.sent + 2 * sch.stats.skipped == 33
    # every deadline honoured in order: sent times never go backwards
    times = [t for t, _ in out.sent]
    assert times == sorted(times)


def test_a_failing_output_still_gets_silenced_and_reported():
    clock = Clock(bpm=3000)
    errors = []

    class Flaky(MemoryOutput):
        def send(self, message):
            if message[0] == ON and message[1] == 62:
                raise OSError("port vanished")
            super().send(message)

    out = Flaky()
    sch = Scheduler(clock, out, spin_us=200)
    sch.on_error = errors.append
    sch.start()
    base = clock.next_bar_line(clock.now_step() + 2)
    sch.schedule_note(base, base + 100, 60, 90, 1)
    sch.schedule_note(base + 1, base + 2, 62, 90, 1)
    deadline = time.monotonic() + 2
    while not errors and time.monotonic() < deadline:
        time.sleep(0.005)
    assert isinstance(errors[0], OSError)
    assert out.messages == [(ON, 60, 90), (OFF, 60, 0), (CC, 123, 0)]
    sch.stop()  # safe after the crash


def test_a_note_overdue_past_its_end_is_skipped_not_blipped():
    clock, out, sch = make()
    sch.schedule_note(0, 2, 60, 90, 1)
    sch.schedule_note(2, 8, 62, 90, 1)
    clock.advance_to_step(3)  # a stall: the first note is over before it could start
    with sch._cond:
        ev = heapq.heappop(sch._heap)  # its note-on, dispatched 3 steps late
        sch._dispatch(ev, clock.time_of(0))
    sch.flush_until(100)
    assert out.messages == [(ON, 62, 90), (OFF, 62, 0)]
    assert sch.stats.skipped == 1 and sch.sounding() == []


def test_a_grid_moved_earlier_wakes_the_sender_asleep_towards_the_old_deadline():
    """A followed master's clock (or a reloaded tempo) brings a queued event 600 ms sooner
    while the sender sleeps towards its old deadline: it must go out on the new one, not
    600 ms late (seen as notes 40-60 ms late under --clock follow on a loaded machine)."""
    from jamd.sync.clock_follower import FollowedClock

    clock = FollowedClock(120)  # 125 ms a 16th
    out = MemoryOutput(clock.now_ns)
    sched = Scheduler(clock, out, spin_us=1000)
    sched.start()
    try:
        step = clock.now_step() + 8  # a second from now
        sched.schedule(step, [0xB0, 1, 1])
        time.sleep(0.05)  # the sender is asleep, towards the old deadline
        now = clock.now_ns()
        new_deadline = now + 300_000_000
        clock.follow((new_deadline, step, clock.step_ns))  # the same step, 300 ms from now
        time.sleep(0.6)
        assert len(out.sent) == 1
        late_ms = (out.sent[0][0] - new_deadline) / 1e6
        assert -1 < late_ms < 100, late_ms  # on the new deadline (a busy machine may add a little)
    finally:
        sched.stop()


def test_only_a_sooner_grid_wakes_the_sender():
    clock = ManualClock(120)
    woken = []
    clock.on_sooner(lambda: woken.append(clock.bpm))
    clock.set_tempo(60)  # slower: every later deadline comes later
    assert woken == []
    clock.set_tempo(240)  # faster: the deadlines ahead come sooner
    assert woken == [240]
