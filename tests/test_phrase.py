"""Live input: decoding, echo recognition and phrase capture on the clock's grid."""

from __future__ import annotations

import pytest

from jamd.config import LiveConfig
from jamd.live.phrase import Decoder, EchoGuard, Event, PhraseCapture
from jamd.sync.clock import ManualClock
from jamd.tokens import Note


def test_decoder_handles_running_status_and_velocity_zero():
    d = Decoder()
    # note-on 60, then (running status) note-on 64 and note-on 60 velocity 0
    assert d.decode([0x90, 60, 100, 64, 90, 60, 0]) == [
        Event("on", 1, 60, 100), Event("on", 1, 64, 90), Event("off", 1, 60, 0)]
    # running status carries over to the next message
    assert d.decode([64, 0]) == [Event("off", 1, 64, 0)]
    assert d.decode([0xB3, 24, 127]) == [Event("cc", 4, 24, 127)]


@pytest.mark.parametrize("data", [
    [0xF0, 0x7E, 0x7F, 0x09, 0x01, 0xF7],  # SysEx
    [0xF8], [0xFA], [0xFE],  # clock, start, active sensing
    [0xE0, 0, 64], [0xC0, 5], [0xD0, 30], [0xA0, 60, 3],  # bend, program, pressures
    [0xF2, 0, 0],  # song position
    [60, 100],  # data bytes with no status
    [0x90, 60],  # truncated
    [0x90, 200, 100],  # corrupt data byte
])
def test_decoder_ignores_what_jamd_does_not_use(data):
    assert Decoder().decode(data) == []


def test_real_time_bytes_inside_a_message_do_not_break_it():
    assert Decoder().decode([0x90, 0xF8, 60, 100]) == [Event("on", 1, 60, 100)]


def test_echo_guard_drops_our_own_notes_once_and_only_recently():
    g = EchoGuard(window_ms=100)
    g.sent((0x90, 60, 90), 1_000)
    g.sent((0x80, 60, 0), 2_000)
    assert not g.is_echo(Event("on", 1, 60, 91), 5_000_000)  # other velocity: the player
    assert not g.is_echo(Event("on", 2, 60, 90), 5_000_000)  # other channel: the player
    assert g.is_echo(Event("on", 1, 60, 90), 5_000_000)
    assert not g.is_echo(Event("on", 1, 60, 90), 5_000_000)  # consumed: a second one is the player
    assert g.is_echo(Event("off", 1, 60, 0), 6_000_000)  # the echoed note's off
    assert not g.is_echo(Event("off", 1, 60, 0), 6_000_000)  # any other off is the player's
    g.sent((0x90, 62, 90), 0)
    assert not g.is_echo(Event("on", 1, 62, 90), 200_000_000)  # too late to be an echo


def capture(**live):
    clock = ManualClock(120)
    return clock, PhraseCapture(clock, LiveConfig(**live))


def play(clock, cap, notes, jitter_ns=0):
    for n in notes:
        cap.note_on(n.pitch, clock.time_of(n.start) + jitter_ns)
        cap.note_off(n.pitch, clock.time_of(n.end) - jitter_ns)


def test_notes_are_quantised_to_the_grid_and_a_bar_of_silence_ends_the_phrase():
    clock, cap = capture()
    notes = [Note(16, 60, 2), Note(18, 62, 2), Note(20, 64, 4)]
    play(clock, cap, notes, jitter_ns=40_000_000)  # 40 ms off the grid
    assert cap.poll(clock.time_of(24 + 15)) is None
    phrase = cap.poll(clock.time_of(24 + 16))
    assert phrase is not None and phrase.reason == "silence"
    assert phrase.notes == notes
    assert (phrase.start, phrase.end, phrase.closed_at, phrase.bars) == (16, 24, 40, 1)
    assert phrase.bar_aligned_notes() == ([Note(0, 60, 2), Note(2, 62, 2), Note(4, 64, 4)], 16)
    assert not cap.active


def test_silence_is_declared_early_by_the_lead_but_ends_on_the_grid():
    clock, cap = capture()
    play(clock, cap, [Note(0, 60, 4)])
    assert cap.poll(clock.time_of(18), lead_steps=1) is None
    phrase = cap.poll(clock.time_of(19), lead_steps=1)
    assert phrase is not None and phrase.closed_at == 20


def test_held_note_postpones_silence_and_the_end_cc_closes_at_once():
    clock, cap = capture(end_cc=64)
    cap.note_on(60, clock.time_of(0))
    assert cap.poll(clock.time_of(40)) is None  # still held: no silence yet
    phrase = cap.poll(clock.time_of(44), end_cc=True)
    assert phrase is not None and phrase.reason == "cc"
    assert phrase.notes == [Note(0, 60, 44)]


def test_max_length_cuts_the_phrase():
    clock, cap = capture(max_phrase_bars=1)
    for i in range(10):
        cap.note_on(60 + i, clock.time_of(2 * i))
        cap.note_off(60 + i, clock.time_of(2 * i + 2))
    phrase = cap.poll(clock.time_of(20))
    assert phrase is not None and phrase.reason == "max-length"
    assert [n.pitch for n in phrase.notes] == list(range(60, 68))
    assert phrase.end == 16


def test_restruck_note_without_note_off_is_two_notes():
    clock, cap = capture()
    cap.note_on(60, clock.time_of(0))
    cap.note_on(60, clock.time_of(4))
    cap.note_off(60, clock.time_of(6))
    phrase = cap.poll(clock.time_of(30))
    assert phrase is not None and phrase.notes == [Note(0, 60, 4), Note(4, 60, 2)]


def test_a_flood_of_notes_makes_a_bounded_phrase():
    # issue 4 section 8: 1,000 note-ons a second on a few pitches (the realtime
    # bench's input flood) must not grow a phrase without bound: a pitch struck
    # again on the same 16th is one note there (the longer), and a phrase keeps
    # at most MAX_NOTES_PER_STEP notes per step of its maximum length
    from jamd.live.phrase import MAX_NOTES_PER_STEP

    clock, cap = capture(max_phrase_bars=2)
    t0 = clock.time_of(16)
    for i in range(4000):  # 4 s: one note-on/off pair per ms, 10 pitches in turn
        t = t0 + i * 1_000_000
        cap.note_on(60 + i % 10, t)
        cap.note_off(60 + i % 10, t + 500_000)
    cap.note_on(61, clock.time_of(18))  # held over two steps: the longer note is kept
    cap.note_off(61, clock.time_of(20))
    phrase = cap.poll(clock.time_of(16 + 33))
    assert phrase is not None and phrase.reason == "max-length"
    assert len(phrase.notes) == MAX_NOTES_PER_STEP * 32 == len(set(phrase.notes))
    assert len({(n.start, n.pitch) for n in phrase.notes}) == len(phrase.notes)
    assert Note(18, 61, 2) in phrase.notes and phrase.dropped > 0
    assert not cap.active
