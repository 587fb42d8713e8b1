"""Chords and bass in `jamd run`, on an in-memory output and a manual clock, with the shipped
harmony model (the melody model is the fake of test_engine).

The accompaniment of a live player must be causal (a beat's chord depends only on what was
played before that beat), on the beat, on its own channels, and silent after a stop; under
jamd's own melody the chords come a bar ahead, with the bar heard.
"""

from __future__ import annotations

import pytest
import test_engine
from test_engine import CC, OFF, ON, play, session

from jamd.inference import model_store
from jamd.music import keys
from jamd.tokens import Note

if not (model_store.shipped_models_dir() / "harmony.onnx").is_file():
    pytest.skip("the shipped harmony model is not there yet", allow_module_level=True)

# "Twinkle" in G major, two bars of quarter and half notes, from bar 1 (step 16)
G_TUNE = [(0, 67, 4), (4, 67, 4), (8, 74, 4), (12, 74, 4), (16, 76, 4), (20, 76, 4), (24, 74, 8),
          (32, 72, 4), (36, 72, 4), (40, 71, 4), (44, 71, 4), (48, 69, 4), (52, 69, 4), (56, 67, 8)]
G_PHRASE = [Note(16 + s, p, d) for s, p, d in G_TUNE]
SETS = {"model.random_seed": 3, "harmony.temperature": 0.0}


def run_to(s, clock, step):
    """`test_engine.run_to`, and the engine also wakes when it asked to (`_wait_s`), as its thread
    does: a chord is chosen `harmony.decide_ms` before its beat, between two 16ths."""
    while (now := clock.now_step()) < step:
        following = min(step, int(now) + 1)
        wake = now + s.engine._wait_s() * 1e9 / clock.step_ns
        player = clock.step_at(s.player[0][0]) if s.player else float("inf")
        if now < wake < following and wake < player:
            clock.advance_to_step(wake)
            s.engine.run_once()
            s.scheduler.flush_until(wake)
        else:
            test_engine.run_to(s, clock, following)


def parts(out, clock):
    """{channel: [(on step, pitch)]} of every note-on sent."""
    found: dict[int, list[tuple[float, int]]] = {}
    for t, m in out.sent:
        if m[0] & 0xF0 == ON and m[2] > 0:
            found.setdefault((m[0] & 0x0F) + 1, []).append((round(clock.step_at(t), 3), m[1]))
    return found


def sounding(out):
    """(channel, pitch) struck and not yet released, in what was sent."""
    on: set[tuple[int, int]] = set()
    for _, m in out.sent:
        key = ((m[0] & 0x0F) + 1, m[1])
        if m[0] & 0xF0 == ON and m[2] > 0:
            on.add(key)
        elif m[0] & 0xF0 == OFF or (m[0] & 0xF0 == ON and m[2] == 0):
            on.discard(key)
    return on


def accompany(notes, until=96, **sets):
    s, clock, out, _ = session(mode="accompany", **{**SETS, **sets})
    play(s, clock, notes)
    for step in range(0, until):
        run_to(s, clock, step)
    return s, clock, out


def test_accompany_plays_chords_and_bass_on_the_beat_on_their_channels():
    s, clock, out = accompany(G_PHRASE, **{"harmony.rhythm": "beat"})
    got = parts(out, clock)
    assert set(got) == {2, 3}, f"chords on 2 and bass on 3 only (no melody part): {sorted(got)}"
    chords_at: dict[float, list[int]] = {}
    for step, pitch in got[2]:
        chords_at.setdefault(step, []).append(pitch)
    assert all(step % 4 == 0 for step in chords_at), f"a chord off the beat: {sorted(chords_at)}"
    assert min(chords_at) >= 20 and all(len(p) >= 3 for p in chords_at.values())
    # in the player's key, G major: almost every chord note is in its scale
    g_major = {(7 + i) % 12 for i in (0, 2, 4, 5, 7, 9, 11)}
    notes = [p for ps in chords_at.values() for p in ps]
    assert sum(p % 12 in g_major for p in notes) / len(notes) >= 0.85
    assert s.engine.last_key == keys.Key(7, "major")
    assert len({tuple(sorted(p % 12 for p in ps)) for ps in chords_at.values()}) >= 2, "the chord never changed"
    # the bass sits below the chord struck with it
    for step, pitch in got[3]:
        if step in chords_at:
            assert pitch < min(chords_at[step])
    s.close()


def test_a_beat_s_chord_depends_only_on_what_was_played_before_it():
    """Two players agree up to step 48 (bar 3) and differ after it: every chord up to and
    including beat 48's must be the same, since it was chosen before the beat."""
    other = [n if n.start < 48 else Note(n.start, n.pitch - 5, n.duration) for n in G_PHRASE]
    runs = []
    for notes in (G_PHRASE, other):
        s, clock, out = accompany(notes, **{"harmony.rhythm": "beat"})
        runs.append(s.engine.harmony.chords_played)
        s.close()
    a, b = ([c for c in run if c[0] <= 48] for run in runs)
    assert a and a == b
    assert runs[0] != runs[1], "the different melody after step 48 changed nothing: is the harmony listening?"


@pytest.mark.parametrize("rhythm,every", [("half-bar", 8), ("bar", 16)])
def test_the_harmonic_rhythm_limits_where_the_chord_changes(rhythm, every):
    s, clock, out = accompany(G_PHRASE, **{"harmony.rhythm": rhythm})
    # the first chord comes on the first beat after the player's fifth note (modes.MIN_KEY_NOTES: the
    # key of a first phrase is told from five notes); later ones only on the harmonic rhythm's grid
    first, *changes = [step for step, _ in s.engine.harmony.chords_played]
    assert first == 36 and changes and all(step % every == 0 for step in changes), changes
    s.close()


def test_the_stop_cc_ends_every_part_and_sends_cc_123_on_each_channel():
    s, clock, out, _ = session(mode="accompany", **SETS)
    play(s, clock, G_PHRASE)
    for step in range(0, 40):
        run_to(s, clock, step)
    assert {2, 3} <= {ch for ch, _ in sounding(out)} or parts(out, clock)
    s.engine.midi_in([CC, 23, 0], clock.now_ns())  # control.start_stop_cc: stop
    run_to(s, clock, 41)
    assert sounding(out) == set()
    tail = out.messages[-8:]
    assert {(CC | (ch - 1), 123, 0) for ch in (2, 3)} <= set(tail), tail
    for step in range(41, 80):
        run_to(s, clock, step)
    assert not [m for m in out.messages[out.messages.index(tail[-1]):] if m[0] & 0xF0 == ON], "notes after the stop"
    s.close()


def test_the_player_stopping_stops_the_chords_and_nothing_sounds():
    s, clock, out = accompany(G_PHRASE[:7], until=120)  # one bar and a half, then silence
    chords = [step for step, _ in parts(out, clock).get(2, [])]
    assert chords and max(chords) < 16 + 32 + 16 + 4, "chords went on long after the player stopped"
    assert sounding(out) == set() and s.scheduler.sounding() == []
    s.close()


def test_harmony_cc_switches_accompany_between_chords_and_a_melody():
    s, clock, out, _ = session(mode="accompany", **SETS)
    s.engine.midi_in([CC, 27, 0], clock.now_ns())  # control.harmony_cc off: the melodic accompaniment
    play(s, clock, G_PHRASE)
    for step in range(0, 64):
        run_to(s, clock, step)
    got = parts(out, clock)
    assert 1 in got and 2 not in got and 3 not in got
    s.close()


def test_continuous_with_harmony_under_its_melody_chords_below_on_each_bar():
    s, clock, out, _ = session(mode="continuous", **{**SETS, "harmony.under_melody": True})
    for step in range(0, 80):
        run_to(s, clock, step)
    got = parts(out, clock)
    assert {1, 2, 3} <= set(got)
    assert all(step % 4 == 0 for step, _ in got[2] + got[3])
    lowest_melody = min(p for _, p in got[1])
    assert all(p < lowest_melody for _, p in got[2]) or lowest_melody <= 48 + 7
    s.engine.midi_in([CC, 27, 0], clock.now_ns())  # harmony off
    run_to(s, clock, 81)
    n = len(out.sent)
    for step in range(81, 128):
        run_to(s, clock, step)
    later = [m for _, m in out.sent[n:] if m[0] & 0xF0 == ON and m[2] > 0]
    assert later and all(m[0] == ON for m in later), "chords or bass after the harmony CC turned them off"
    s.close()


def test_call_response_answer_with_chords_and_nothing_left_sounding():
    s, clock, out, _ = session(mode="call-response", **{**SETS, "harmony.under_melody": True,
                                                        "live.response_bars": 2})
    play(s, clock, [Note(n.start - 16, n.pitch - 7, n.duration) for n in G_PHRASE[:7]])  # in C, from bar 0
    for step in range(0, 96):
        run_to(s, clock, step)
    got = parts(out, clock)
    answer = s.engine.answers[0][0]
    assert got[2] and min(step for step, _ in got[2]) == answer
    assert max(step for step, _ in got[2]) < answer + 32
    assert sounding(out) == set()
    s.close()


def test_a_phrase_cut_at_its_longest_and_then_silence_ends_the_chords():
    """Found by a fresh user: a phrase that reached live.max_phrase_bars kept the chords going for
    ever once the player stopped.  They go on across the cut, and end a silence after the last note."""
    notes = [Note(16 + 4 * i, 67 + (i % 3) * 2, 4) for i in range(20)]  # 5 bars of quarters, no gap
    s, clock, out = accompany(notes, until=200, **{"live.max_phrase_bars": 2})
    chords = sorted(step for step, _ in parts(out, clock).get(2, []))
    assert [p.reason for p in s.engine.phrases][:2] == ["max-length", "max-length"]
    assert chords and 48 <= max(chords) < 16 + 80 + 16 + 8, chords  # past the cuts, not long after the end
    assert not any(48 - 4 < step < 48 for step in chords) and len({step for step in chords if 40 <= step <= 56}) >= 3
    assert sounding(out) == set() and s.scheduler.sounding() == []
    s.close()


@pytest.mark.parametrize("parts_", [["chords"], ["bass"], ["bass", "melody"]])
def test_harmony_parts_plays_only_the_parts_it_lists(parts_):
    s, clock, out = accompany(G_PHRASE, **{"harmony.parts": parts_})
    got = parts(out, clock)
    want = {ch for part, ch in (("melody", 1), ("chords", 2), ("bass", 3)) if part in parts_}
    assert set(got) == want, sorted(got)
    s.close()


def test_no_pitch_is_struck_twice_without_a_note_off_between():
    for pattern in ("beats", "sustained"):
        for rhythm in ("beat", "half-bar"):
            s, clock, out = accompany(G_PHRASE, **{"harmony.pattern": pattern, "harmony.rhythm": rhythm})
            on: set[tuple[int, int]] = set()
            for _, m in out.sent:
                key = (m[0] & 0x0F, m[1])
                if m[0] & 0xF0 == ON and m[2] > 0:
                    assert key not in on, (pattern, rhythm, key)
                    on.add(key)
                elif m[0] & 0xF0 == OFF:
                    on.discard(key)
            s.close()


def test_harmony_cc_off_under_jamds_melody_stops_the_chords_and_not_the_melody():
    s, clock, out, _ = session(mode="continuous", **{**SETS, "harmony.under_melody": True})
    for step in range(0, 40):
        run_to(s, clock, step)
    n = len(out.sent)
    s.engine.midi_in([CC, 27, 0], clock.now_ns())
    for step in range(40, 80):
        run_to(s, clock, step)
    later = out.sent[n:]
    assert not any(m[1] == 123 for _, m in later if m[0] & 0xF0 == CC), "the switch silenced everything"
    assert [m for _, m in later if m[0] == ON and m[2] > 0], "the melody stopped"
    assert not [m for _, m in later if m[0] in (ON | 1, ON | 2) and m[2] > 0], "chords or bass went on"
    assert not {k for k in sounding(out) if k[0] in (2, 3)}
    s.close()
