"""The seed's 16th-note encoding, both ways."""

from __future__ import annotations

import pytest

from jamd.errors import UsageError
from jamd.tokens import (
    Note,
    Vocabulary,
    fit_pitch_to_vocab,
    fit_symbols_to_vocab,
    fold_to_midi,
    notes_to_symbols,
    parse_seed,
    symbols_to_notes,
    transpose_symbols,
)

SEED = "67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _"


def test_seed_decodes_to_the_seeds_notes():
    notes = symbols_to_notes(SEED.split())
    assert notes == [Note(0, 67, 2), Note(2, 67, 2), Note(4, 67, 3), Note(7, 65, 1),
                     Note(8, 64, 2), Note(10, 64, 2), Note(12, 64, 3)]


def test_rests_and_delimiter():
    assert symbols_to_notes("r _ 60 _ r 62 / 64".split()) == [Note(2, 60, 2), Note(5, 62, 1)]
    assert symbols_to_notes("_ _ 60".split(), offset=16) == [Note(18, 60, 1)]


@pytest.mark.parametrize("text", [SEED, "r _ 60 _ r _ _ 62 64 _ _ _ r", "60 62 64 65 67 _ _ _"])
def test_round_trip(text):
    symbols = text.split()
    assert notes_to_symbols(symbols_to_notes(symbols), len(symbols)) == symbols


def test_later_note_cuts_an_earlier_one():
    assert notes_to_symbols([Note(0, 60, 8), Note(2, 62, 2)], 6) == "60 _ 62 _ r _".split()


def test_vocabulary_is_ordered_and_complete():
    v = Vocabulary.from_pitches([64, 60, 62, 60])
    assert v.symbols == ("/", "r", "_", "60", "62", "64")
    assert v.decode(v.encode(["60", "_", "r", "/"])) == ["60", "_", "r", "/"]
    assert v.pitch_range == (60, 64)


def test_bad_seed_token_is_named():
    v = Vocabulary.from_pitches(range(55, 80))
    with pytest.raises(UsageError) as err:
        parse_seed("67 x _", v)
    assert str(err.value) == (
        "seed token 'x' (position 2) is not allowed: use a MIDI pitch 55-79, 'r' (rest) or '_' (hold)"
    )
    with pytest.raises(UsageError, match="'100'"):
        parse_seed("100", v)
    with pytest.raises(UsageError, match="seed is empty"):
        parse_seed("  ", v)


def test_transpose_and_fit():
    assert transpose_symbols(["60", "_", "r"], 2) == ["62", "_", "r"]
    v = Vocabulary.from_pitches([60, 62, 64, 72])
    assert fit_pitch_to_vocab(48, v) == 60
    assert fit_pitch_to_vocab(86, v) == 62  # 86 -> 74, not in vocab: 62 is the nearest D it has


def test_a_pitch_the_model_lacks_in_one_octave_keeps_its_class_from_another():
    """A fresh user's seed: C# 121 and C# 1 came out as C, because the shipped model's
    vocabulary skips 85 and 49; it has 61 and 73, so the seed keeps its notes."""
    v = Vocabulary.from_pitches([p for p in range(48, 90) if p not in (49, 85)])
    assert [fit_pitch_to_vocab(p, v) for p in (127, 121, 124, 117, 0, 1)] == [79, 73, 88, 81, 48, 61]
    assert fit_pitch_to_vocab(10**9, v) % 12 == 10**9 % 12  # any integer, in constant time
    only_c = Vocabulary.from_pitches([48, 60])
    assert fit_pitch_to_vocab(62, only_c) == 60  # a class the model never saw: the nearest pitch


def test_transposition_never_leaves_0_127_and_any_pitch_fits_a_vocabulary():
    assert [fold_to_midi(p) for p in (130, 127, 0, -3, 140)] == [118, 127, 0, 9, 116]
    assert transpose_symbols(["127", "_", "0"], 6) == ["121", "_", "6"]
    assert transpose_symbols(["125", "2"], -6) == ["119", "8"]
    assert transpose_symbols(["125"], 6) == ["119"]  # 131 folds to 119: same pitch class
    v = Vocabulary.from_pitches(range(55, 84))
    assert fit_symbols_to_vocab(["130", "_", "r", "-2", "/", "60"], v) == ["82", "_", "r", "58", "/", "60"]
    for pitch in range(-12, 140):
        assert str(fit_pitch_to_vocab(pitch, v)) in v
        assert fit_pitch_to_vocab(pitch, v) % 12 == pitch % 12


def test_a_vocabulary_without_pitches_is_a_model_error():
    from jamd.errors import ModelError

    with pytest.raises(ModelError, match="no pitches"):
        fit_pitch_to_vocab(60, Vocabulary(["/", "r", "_"]))
