"""The harmony decoder and the bar-by-bar harmonizer, exactly, over a tiny fixed-logit ONNX model
(tests/harmony_fixtures.py); the shipped model is exercised in test_generate_harmony."""

from __future__ import annotations

import numpy as np
import pytest
from harmony_fixtures import one_hot, write_fixture

from jamd.config import HarmonyConfig
from jamd.errors import ModelError
from jamd.inference.harmony import Harmonizer, HarmonyModel
from jamd.inference.harmony_track import BarHarmonizer, harmonize, lead_sheet, pitch_class_weights
from jamd.music import chords
from jamd.music.chords import chord_id
from jamd.music.voicing import Voicer
from jamd.tokens import Note

C, F, G, AM = chord_id(0, 0), chord_id(5, 0), chord_id(7, 0), chord_id(9, 1)
G7 = chord_id(7, 3)


def harmonizer(tmp_path, temperature=0.0, melody_fit=1.0, seed=0, **fixture):
    path = write_fixture(tmp_path / "h.onnx", **fixture)
    return Harmonizer(HarmonyModel.load(str(path)), temperature, melody_fit, np.random.default_rng(seed))


def span_of(*pitch_classes):
    return pitch_class_weights(list(pitch_classes))


# -- the decoder ---------------------------------------------------------------------------------
def test_temperature_zero_takes_the_best_chord(tmp_path):
    h = harmonizer(tmp_path, melody_fit=0.0, chord_bias=one_hot(chords.N_CHORDS, G, 3.0))
    assert h.decide(None, 0, change=True).chord == G


def test_no_chord_is_never_chosen(tmp_path):
    bias = one_hot(chords.N_CHORDS, chords.NO_CHORD, 10.0) + one_hot(chords.N_CHORDS, AM, 2.0)
    h = harmonizer(tmp_path, melody_fit=0.0, chord_bias=bias)
    assert h.decide(None, 0, change=True).chord == AM
    hot = harmonizer(tmp_path, temperature=5.0, melody_fit=0.0, chord_bias=bias)
    assert all(hot.decide(None, 0, change=True).chord != chords.NO_CHORD for _ in range(200))


def test_melody_fit_picks_the_chord_holding_the_span(tmp_path):
    # the model leans to F by 0.5; the span is C E G: C scores log 1.05, F 0.5 + log(0.05 + 1/3)
    bias = one_hot(chords.N_CHORDS, F, 0.5)
    span = span_of(60, 64, 67)
    assert harmonizer(tmp_path, melody_fit=1.0, chord_bias=bias).decide(None, 0, True, span=span).chord == C
    assert harmonizer(tmp_path, melody_fit=0.0, chord_bias=bias).decide(None, 0, True, span=span).chord == F


def test_online_the_melody_head_guess_stands_for_the_span(tmp_path):
    # no span: the model's guess of the next note, B (pitch class 11), favours the chords with B
    h = harmonizer(tmp_path, melody_fit=2.0, melody_bias=one_hot(chords.N_MELODY_CLASSES, 11, 20.0),
                   chord_bias=one_hot(chords.N_CHORDS, G, 0.1))
    assert h.decide(None, 0, change=True).chord == G  # G B D; E minor (also with B) has no 0.1 lean
    assert 11 in chords.chord_tones(h.current.chord)


def test_the_bass_is_the_chord_tone_the_bass_head_likes_best(tmp_path):
    bass = one_hot(chords.N_BASS, 2, 5.0) + one_hot(chords.N_BASS, 4, 1.0)  # D best, then E
    h = harmonizer(tmp_path, melody_fit=0.0, chord_bias=one_hot(chords.N_CHORDS, C, 3.0), bass_bias=bass)
    h.decide(None, 0, change=True)
    assert (h.current.chord, h.current.bass) == (C, 4)  # D is no tone of C: E, the first inversion


def test_the_harmonic_rhythm_holds_the_chord_and_the_model_still_steps(tmp_path):
    h = harmonizer(tmp_path, melody_fit=1.0)
    first = h.decide(None, 0, change=True, span=span_of(65, 69, 72))
    assert (first.chord, first.changed) == (F, True)
    held = h.decide(None, 1, change=False, span=span_of(67, 71, 74))
    assert (held.chord, held.bass, held.changed) == (F, first.bass, False)
    assert float(h.model.h[0, 0]) == 2.0  # the fixture's state counts steps
    moved = h.decide(None, 2, change=True, span=span_of(67, 71, 74))
    assert (moved.chord, moved.changed) == (G, True)


def test_the_first_chord_is_chosen_even_where_no_change_is_allowed(tmp_path):
    h = harmonizer(tmp_path, melody_fit=1.0)
    assert h.decide(None, 1, change=False, span=span_of(60, 64, 67)).chord == C


def test_sampling_is_reproducible_and_follows_the_scores(tmp_path):
    bias = one_hot(chords.N_CHORDS, C, 2.0) + one_hot(chords.N_CHORDS, G, 2.0 - np.log(3.0))
    picks = [harmonizer(tmp_path, temperature=1.0, melody_fit=0.0, seed=s, chord_bias=bias) for s in (7, 7)]
    runs = [[h.decide(None, 0, True).chord for _ in range(300)] for h in picks]
    assert runs[0] == runs[1]
    share_c = runs[0].count(C) / len(runs[0])
    # C is e^2 / (e^2 + e^2/3 + 46) of the mass (N is never chosen): 0.13; G a third of that
    expected = np.exp(2) / (np.exp(2) * 4 / 3 + 46)
    assert abs(share_c - expected) < 0.06
    assert runs[0].count(G) < runs[0].count(C)


def test_a_model_of_another_kind_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a harmony model"):
        HarmonyModel.load("lstm")


# -- bar by bar ----------------------------------------------------------------------------------
# 4/4 in C, eighth notes: C E G (C) | F A C (F) || G B D F (G7) | C E G (C); the span of each half-bar
# holds its chord's tones, so a flat model with melody_fit 1 picks them (C before C7, F before F7 by id)
BAR_1 = "72 _ 76 _ 79 _ 76 _ 77 _ 81 _ 72 _ 77 _".split()
BAR_2 = "79 _ 83 _ 74 _ 77 _ 72 _ 76 _ 79 _ _ _".split()


def bar_harmonizer(tmp_path, **cfg):
    h = harmonizer(tmp_path, melody_fit=1.0)
    return BarHarmonizer(h, Voicer(48, 72), HarmonyConfig(**cfg), beats_per_bar=4)


def test_two_bars_half_bar_rhythm_beats_pattern(tmp_path):
    bh = bar_harmonizer(tmp_path, rhythm="half-bar", pattern="beats")
    first = bh.bar(BAR_1, 0, 0)
    assert [len(first[p]) for p in ("chords", "bass")] == [4, 4]
    assert first["chords"][0].started == [Note(0, 55, 4), Note(0, 60, 4), Note(0, 64, 4)]
    assert first["bass"][1].extended == [Note(0, 48, 8)]
    bh.bar(BAR_2, 16, 0)
    bh.stop()
    # chords on every beat, voiced under the melody's lowest note (C5, C5, D5, C5) by least movement
    voicings = [(55, 60, 64), (57, 60, 65), (55, 59, 62, 65), (55, 60, 64)]
    assert bh.writers["chords"].notes == sorted(
        Note(beat * 4, p, 4) for beat in range(8) for p in voicings[beat // 2])
    # the bass on beats 1 and 3, the root an octave under the chord's lowest note
    assert bh.writers["bass"].notes == [Note(0, 48, 8), Note(8, 53, 8), Note(16, 43, 8), Note(24, 48, 8)]
    assert bh.lead_sheet() == "bar 1: C F | bar 2: G7 C"
    assert bh.lead_sheet(2) == "bar 1: D G | bar 2: A7 D"


def test_sustained_whole_bar_chords_transposed(tmp_path):
    bh = bar_harmonizer(tmp_path, rhythm="bar", pattern="sustained")
    melody = "72 _ 76 _ 79 _ 76 _ 72 _ 67 _ 64 _ 67 _".split()  # a C arpeggio: C for the bar
    out = bh.run(melody + melody, transpose=-3)  # sounding in A major
    # the melody's lowest sounding note is E4 - 3 = C#4 (61): the only A close position from 48 to 60
    # is C#3 E3 A3; the bass A2 under it; each bar line may change the chord, so both strike again
    assert out["chords"] == [Note(0, 49, 16), Note(0, 52, 16), Note(0, 57, 16),
                             Note(16, 49, 16), Note(16, 52, 16), Note(16, 57, 16)]
    assert out["bass"] == [Note(0, 45, 16), Note(16, 45, 16)]
    assert bh.lead_sheet(-3) == "bar 1: A | bar 2: A"


def test_a_pickup_and_a_short_last_beat(tmp_path):
    # the melody starts on beat 4 (a one-beat pickup, G: C is the first chord holding G) and its
    # last beat is 2 steps short: filled with rest, the parts end with it
    h = harmonizer(tmp_path, melody_fit=1.0)
    out = harmonize(h, ["67", "_", "_", "_"] + BAR_1 + BAR_2[:6], 0, Voicer(48, 72),
                    HarmonyConfig(rhythm="half-bar", pattern="sustained"), beats_per_bar=4, start_beat_in_bar=3)
    assert out["bass"] == [Note(0, 48, 4), Note(4, 48, 8), Note(12, 53, 8), Note(20, 43, 8)]
    # the short last span, G B D, is G (G7 needs its F)
    assert [n.start for n in out["chords"]] == [0] * 3 + [4] * 3 + [12] * 3 + [20] * 3
    assert max(n.end for n in out["chords"]) == 28


def test_three_four_bars(tmp_path):
    # 3/4, half-bar is the whole bar; pattern beats: chords on each beat, bass on beat 1 only
    bh = BarHarmonizer(harmonizer(tmp_path), Voicer(48, 72), HarmonyConfig(rhythm="half-bar", pattern="beats"),
                       beats_per_bar=3)
    out = bh.run("77 _ 81 _ 72 _ 77 _ 81 _ _ _ 79 _ 83 _ 74 _ 77 _ 74 _ _ _".split(), 0)
    # F: A3 C4 F4 (middle-most under C5), bass F3; G7: G3 B3 D4 F4 (moves 5), bass G2
    assert out["bass"] == [Note(0, 53, 12), Note(12, 43, 12)]
    assert [n.start for n in out["chords"]] == [0] * 3 + [4] * 3 + [8] * 3 + [12] * 4 + [16] * 4 + [20] * 4
    assert bh.lead_sheet() == "bar 1: F | bar 2: G7"


def test_a_bar_longer_than_the_meter_is_refused(tmp_path):
    with pytest.raises(ValueError, match="do not fit a bar"):
        bar_harmonizer(tmp_path).bar(BAR_1 + ["_"], 0, 0)


def test_lead_sheet_lists_each_change():
    from jamd.inference.harmony import Harmony

    chart = [[Harmony(C, 0), Harmony(C, 0, False), Harmony(G7, 7), Harmony(G7, 7, False)], [Harmony(C, 0)]]
    assert lead_sheet(chart) == "bar 1: C G7 | bar 2: C"
