"""Chord voicing, the bass under it, the playing patterns and the per-beat part writer (exact lists)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jamd.inference.harmony import may_change
from jamd.music.chords import N_CHORDS, NO_CHORD, chord_id, chord_tones
from jamd.music.patterns import BeatWrite, PartWriter, part_actions
from jamd.music.voicing import Voicer, close_positions, movement
from jamd.tokens import Note

C, F, G, AM = chord_id(0, 0), chord_id(5, 0), chord_id(7, 0), chord_id(9, 1)
G7 = chord_id(7, 3)


def voice_all(voicer, chords, transpose=0, below=None):
    return [voicer.voice(c, transpose, below)[0] for c in chords]


# -- voicing -------------------------------------------------------------------------------------
def test_c_f_g_c_moves_by_least_movement():
    # hand-checked, range 48-72 (middle 60): C starts nearest the middle, G3 C4 E4 (mean 59.7);
    # F: A3 C4 F4 moves 2+0+1 = 3 (C4 F4 A4 would move 15, F3 A3 C4 9);
    # G: G3 B3 D4 and B3 D4 G4 both move 6; G3 B3 D4's mean 58.7 is nearer 60 than 62.7;
    # C: G3 C4 E4 again, 0+1+2 = 3
    v = Voicer(48, 72)
    assert voice_all(v, [C, F, G, C]) == [[55, 60, 64], [57, 60, 65], [55, 59, 62], [55, 60, 64]]


def test_the_same_progression_in_g_major():
    # transpose 7, G C D G: G starts as G3 B3 D4 (mean 58.7, nearest 60); C: G3 C4 E4 moves 0+1+2 = 3;
    # D: F#3 A3 D4 and A3 D4 F#4 both move 6, A3 D4 F#4 (mean 61.7) is nearer 60 than 57.7;
    # G: B3 D4 G4 moves 2+0+1 = 3 (G3 B3 D4 would move 9)
    v = Voicer(48, 72)
    assert voice_all(v, [C, F, G, C], transpose=7) == [[55, 59, 62], [55, 60, 64], [57, 62, 66],
                                                        [59, 62, 67]]


def test_a_dominant_seventh_sounds_all_four_tones_and_leads_back():
    # C (G3 C4 E4) -> G7: G3 B3 D4 F4 costs 4 (drop F4: 0+1+2, F4 is 1 from E4), G7's other
    # positions cost 5 or more; back to C: G3 C4 E4, 4 again
    v = Voicer(48, 72)
    assert voice_all(v, [C, G7, C]) == [[55, 60, 64], [55, 59, 62, 65], [55, 60, 64]]


def test_movement_between_triad_and_seventh():
    assert movement((55, 60, 64), (55, 59, 62, 65)) == 4
    assert movement((55, 59, 62, 65), (55, 60, 64)) == 4
    assert movement((55, 60, 64), (57, 60, 65)) == 3


def test_close_positions_are_each_inversion_at_each_octave():
    assert close_positions(chord_tones(C), 48, 60) == [(48, 52, 55), (52, 55, 60)]
    assert close_positions(chord_tones(C), 49, 60) == [(52, 55, 60)]


def test_below_the_melody():
    v = Voicer(48, 72)
    assert v.voice(C, 0, below=60)[0] == [48, 52, 55]  # C4 in the tune: the chord stays under it
    v.reset()
    assert v.voice(C, 0, below=61)[0] == [52, 55, 60]  # the middle-most position under C#4
    v.reset()
    # the tune at E3, too low for any C chord from C3 up: the lowest position, C3 E3 G3
    assert v.voice(C, 0, below=52)[0] == [48, 52, 55]


def test_no_chord_is_silent_and_keeps_the_voice_leading():
    v = Voicer(48, 72)
    assert v.voice(C, 0) == ([55, 60, 64], 48)
    assert v.voice(NO_CHORD, 0) == ([], None)
    assert v.voice(F, 0)[0] == [57, 60, 65]


def test_reset_forgets_the_previous_voicing():
    v = Voicer(48, 72)
    v.voice(C, 0)
    assert v.voice(AM, 0)[0] == [57, 60, 64]
    v.reset()
    assert v.voice(AM, 0)[0] == [57, 60, 64]  # A3 C4 E4 is also the middle-most Am
    v.reset()
    assert v.voice(G, 0)[0] == [55, 59, 62]


def test_bass_placement():
    v = Voicer(48, 72)
    assert v.bass(0, [55, 60, 64]) == 48
    assert v.bass(7, [55, 60, 64]) == 43  # the chord's lowest pitch class: a full octave below
    assert v.bass(4, [55, 60, 64]) == 52
    assert v.bass(None, [55, 60, 64]) is None
    assert v.bass(0, []) is None
    assert v.voice(C, 0, bass_pc=4) == ([55, 60, 64], 52)  # C/E
    assert v.voice(G, 2, bass_pc=7) == ([57, 61, 64], 45)  # G in D major is A: root A2


def test_a_range_under_an_octave_is_refused():
    with pytest.raises(ValueError, match="narrower than an octave"):
        Voicer(60, 71)


@settings(max_examples=300, deadline=None)
@given(lowest=st.integers(24, 84), width=st.integers(12, 36),
       chords=st.lists(st.tuples(st.integers(1, N_CHORDS - 1), st.one_of(st.none(), st.integers(30, 110)),
                                 st.one_of(st.none(), st.integers(0, 11))), min_size=1, max_size=8),
       transpose=st.integers(-6, 6))
def test_every_voicing_is_the_chord_in_range_and_under_the_melody(lowest, width, chords, transpose):
    v = Voicer(lowest, lowest + width)
    for chord, below, bass_pc in chords:
        pitches, bass = v.voice(chord, transpose, below, bass_pc=bass_pc)
        tones = sorted((t + transpose) % 12 for t in chord_tones(chord))
        assert sorted(p % 12 for p in pitches) == tones
        assert pitches == sorted(pitches) and len(pitches) in (3, 4)
        assert lowest <= pitches[0] and pitches[-1] <= lowest + width
        fits = close_positions(tones, lowest, min(lowest + width, below - 1)) if below is not None else [1]
        if below is not None and fits:
            assert pitches[-1] < below
        assert pitches[0] - 12 <= bass < pitches[0]
        root = chord_tones(chord)[0]
        assert bass % 12 == ((root if bass_pc is None else bass_pc) + transpose) % 12


# -- patterns ------------------------------------------------------------------------------------
def actions_over_a_bar(pattern, rhythm, beats_per_bar):
    out = []
    for beat in range(beats_per_bar):
        a = part_actions(pattern, may_change(beat, rhythm, beats_per_bar), beat, beats_per_bar)
        out.append((int(a["chords"]), int(a["bass"])))
    return out


@pytest.mark.parametrize("pattern, rhythm, beats_per_bar, expected", [
    ("sustained", "beat", 4, [(1, 1), (1, 1), (1, 1), (1, 1)]),
    ("sustained", "half-bar", 4, [(1, 1), (0, 0), (1, 1), (0, 0)]),
    ("sustained", "bar", 4, [(1, 1), (0, 0), (0, 0), (0, 0)]),
    ("beats", "beat", 4, [(1, 1), (1, 1), (1, 1), (1, 1)]),
    ("beats", "half-bar", 4, [(1, 1), (1, 0), (1, 1), (1, 0)]),
    ("beats", "bar", 4, [(1, 1), (1, 0), (1, 1), (1, 0)]),
    ("sustained", "beat", 3, [(1, 1), (1, 1), (1, 1)]),
    ("sustained", "half-bar", 3, [(1, 1), (0, 0), (0, 0)]),
    ("sustained", "bar", 3, [(1, 1), (0, 0), (0, 0)]),
    ("beats", "beat", 3, [(1, 1), (1, 1), (1, 1)]),
    ("beats", "half-bar", 3, [(1, 1), (1, 0), (1, 0)]),
    ("beats", "bar", 3, [(1, 1), (1, 0), (1, 0)]),
])
def test_pattern_over_a_bar(pattern, rhythm, beats_per_bar, expected):
    assert actions_over_a_bar(pattern, rhythm, beats_per_bar) == expected


def test_an_unknown_pattern_is_refused():
    with pytest.raises(ValueError, match="arpeggio"):
        part_actions("arpeggio", True, 0, 4)


# -- the part writer -----------------------------------------------------------------------------
def test_part_writer_strikes_holds_and_restrikes():
    w = PartWriter("chords")
    assert w.beat([55, 60, 64], True, 0, 4) == BeatWrite(
        started=[Note(0, 55, 4), Note(0, 60, 4), Note(0, 64, 4)])
    assert w.beat([55, 60, 64], False, 4, 4) == BeatWrite(
        extended=[Note(0, 55, 8), Note(0, 60, 8), Note(0, 64, 8)])
    assert w.beat([57, 60, 65], True, 8, 4) == BeatWrite(
        started=[Note(8, 57, 4), Note(8, 60, 4), Note(8, 65, 4)],
        ended=[Note(0, 55, 8), Note(0, 60, 8), Note(0, 64, 8)])
    assert w.beat([], True, 12, 4) == BeatWrite(ended=[Note(8, 57, 4), Note(8, 60, 4), Note(8, 65, 4)])
    assert w.beat([], False, 16, 4) == BeatWrite()  # silent: nothing to extend
    assert w.sounding == []
    assert w.notes == [Note(0, 55, 8), Note(0, 60, 8), Note(0, 64, 8),
                       Note(8, 57, 4), Note(8, 60, 4), Note(8, 65, 4)]


def test_stop_ends_the_sounding_notes():
    w = PartWriter("bass")
    w.beat([48], True, 0, 4)
    w.beat([48], False, 4, 4)
    assert w.stop(6) == [Note(0, 48, 6)]
    assert w.sounding == [] and w.notes == [Note(0, 48, 6)]
    w.beat([43], True, 8, 4)
    assert w.stop() == [Note(8, 43, 4)]
    w.beat([45], True, 12, 4)
    assert w.stop(12) == [Note(12, 45, 0)]  # never sounded: returned to cancel, not kept
    assert w.notes == [Note(0, 48, 6), Note(8, 43, 4)]


def test_a_bar_of_beats_pattern_written_out():
    # 4/4, half-bar rhythm, C then F, pattern beats: chords on each beat, bass on 1 and 3
    v, chords_w, bass_w = Voicer(48, 72), PartWriter("chords"), PartWriter("bass")
    for beat, chord in enumerate([C, C, F, F]):
        pitches, bass = v.voice(chord, 0)
        act = part_actions("beats", may_change(beat, "half-bar", 4), beat, 4)
        chords_w.beat(pitches, act["chords"], beat * 4, 4)
        bass_w.beat([bass], act["bass"], beat * 4, 4)
    chords_w.stop()
    bass_w.stop()
    assert chords_w.notes == [Note(0, 55, 4), Note(0, 60, 4), Note(0, 64, 4),
                              Note(4, 55, 4), Note(4, 60, 4), Note(4, 64, 4),
                              Note(8, 57, 4), Note(8, 60, 4), Note(8, 65, 4),
                              Note(12, 57, 4), Note(12, 60, 4), Note(12, 65, 4)]
    assert bass_w.notes == [Note(0, 48, 8), Note(8, 53, 8)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(36, 84), max_size=4), st.booleans(), st.integers(1, 8)),
                max_size=20), st.one_of(st.none(), st.integers(0, 200)))
def test_part_writer_never_overlaps_a_pitch_and_stop_silences(beats, stop_at):
    w = PartWriter("chords")
    t = 0
    for pitches, strike, length in beats:
        write = w.beat(pitches, strike, t, length)
        assert all(n.start == t and n.duration == length for n in write.started)
        assert all(n.end == t for n in write.ended)
        assert all(n.end == t + length for n in write.extended)
        t += length
    w.stop(stop_at if stop_at is None else max(stop_at, t))
    assert w.sounding == []
    by_pitch: dict[int, list[Note]] = {}
    for n in w.notes:
        assert n.duration > 0
        by_pitch.setdefault(n.pitch, []).append(n)
    for notes in by_pitch.values():
        notes.sort()
        assert all(a.end <= b.start for a, b in zip(notes, notes[1:], strict=False))
