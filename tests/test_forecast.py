"""`jamd.inference.forecast`: the live player's notes as 16th symbols (exact inputs), the shipped
melody LSTM's forecast of the coming beats' notes, and `LstmGenerator.snapshot` / `restore`."""

from __future__ import annotations

import numpy as np
import pytest

from jamd.errors import ModelError
from jamd.inference.forecast import MelodyForecast, window_symbols
from jamd.inference.lstm import LstmGenerator
from jamd.tokens import Note, fit_pitch_to_vocab, notes_to_symbols, symbols_to_notes

C_MAJOR = [0, 2, 4, 5, 7, 9, 11]


# -- window_symbols: exact event lists --------------------------------------------------
def test_window_symbols_of_a_held_note_across_the_window_start():
    notes = [Note(0, 60, 6), Note(6, 64, 2)]
    # the note of step 0 goes on into the window: a hold, not a new onset
    assert window_symbols(notes, 4, 4) == ["_", "_", "64", "_"]
    assert window_symbols(notes, 0, 4) == ["60", "_", "_", "_"]


def test_window_symbols_rest_starting_and_going_on():
    notes = [Note(0, 62, 3), Note(9, 65, 1)]
    assert window_symbols(notes, 0, 8) == ["62", "_", "_", "r", "_", "_", "_", "_"]
    # a window starting inside the rest continues it; the short note is followed by a rest
    assert window_symbols(notes, 4, 8) == ["_", "_", "_", "_", "_", "65", "r", "_"]
    # a rest starts at step 0, with nothing before it; later windows continue it
    assert window_symbols([Note(2, 60, 2)], 0, 4) == ["r", "_", "60", "_"]
    assert window_symbols([Note(6, 60, 2)], 4, 4) == ["_", "_", "60", "_"]


def test_window_symbols_of_overlapping_notes():
    # a chord (the highest wins), legato overlap, then an earlier note outlasting a later one
    notes = [Note(0, 60, 4), Note(0, 67, 4), Note(0, 64, 4), Note(3, 72, 3),
             Note(8, 69, 6), Note(10, 71, 1)]
    assert window_symbols(notes, 0, 16) == ["67", "_", "_", "72", "_", "_", "r", "_",
                                            "69", "_", "71", "_", "_", "_", "r", "_"]
    # any pitch, also outside the models' range, passes through (hear() folds it)
    assert window_symbols([Note(1, 130, 1)], 0, 3) == ["r", "130", "r"]
    assert window_symbols(notes, 20, 0) == []


# -- the shipped melody LSTM -----------------------------------------------------------
@pytest.fixture(scope="module")
def lstm():
    return LstmGenerator.load("lstm")


def test_snapshot_and_restore_give_back_the_same_next_logits(lstm):
    lstm.reset()
    lstm.prime("r 60 _ 62 _ 64 _ _".split())
    state = lstm.snapshot()
    after = lstm.feed(lstm.vocab.id("65")).copy()
    for s in "67 _ _ 72".split():
        lstm.feed(lstm.vocab.id(s))
    assert not np.allclose(lstm.next_logits, after)
    lstm.restore(state)
    np.testing.assert_array_equal(lstm.next_logits, state[0])
    np.testing.assert_array_equal(lstm.feed(lstm.vocab.id("65")), after)
    lstm.restore(state)  # a snapshot stays valid after being restored and fed past
    np.testing.assert_array_equal(lstm.feed(lstm.vocab.id("65")), after)


def forecast(lstm, seed: int = 0, rollouts: int = 8) -> MelodyForecast:
    return MelodyForecast(lstm, rollouts, np.random.default_rng(seed))


PHRASE = "r r r r 67 _ _ _ 64 _ 65 _ 67 _ _ _ 72 _ _ _ 71 _ 69 _ 67 _ _ _ 65 _ 64 _".split()


def test_onsets_are_bounded_reproducible_and_leave_the_state(lstm):
    f = forecast(lstm)
    f.reset()
    f.hear(PHRASE)
    for n_steps, beats in ((8, 2), (4, 1), (12, 3), (6, 2), (1, 1)):
        x = f.onsets(n_steps)
        assert x.shape == (12,) and np.all(x >= 0) and 0 < x.sum() <= beats
    assert f.onsets(0).sum() == 0
    a = forecast(lstm, seed=3).onsets(8)
    b = forecast(lstm, seed=3).onsets(8)  # reset() by the constructor: the start state, then no symbol
    np.testing.assert_array_equal(a, b)
    f2 = forecast(lstm, seed=5)
    f2.hear(PHRASE)
    np.testing.assert_array_equal(f2.onsets(8), forecast_after(lstm, 5, PHRASE).onsets(8))

    # the state after hear() is untouched by onsets(): the next logits are those without the call
    f.reset()
    f.hear(PHRASE)
    f.hear(["60"])
    without = lstm.next_logits.copy()
    f.reset()
    f.hear(PHRASE)
    f.onsets(16)
    f.hear(["60"])
    np.testing.assert_array_equal(lstm.next_logits, without)


def forecast_after(lstm, seed: int, symbols) -> MelodyForecast:
    f = forecast(lstm, seed)
    f.hear(symbols)
    return f


def test_hear_folds_pitches_and_never_feeds_the_delimiter(lstm):
    f = forecast(lstm)
    f.hear(["_", "108", "/", "_"])  # a leading hold and the delimiter are rests; 108 folds into the range
    heard = lstm.next_logits.copy()
    folded = fit_pitch_to_vocab(108, lstm.vocab)
    assert folded != 108 and str(folded) in lstm.vocab.symbols
    f.reset()
    f.hear(["r", str(folded), "r", "_"])
    np.testing.assert_array_equal(lstm.next_logits, heard)
    f.reset()
    f.hear(["r", str(folded), "_", "_"])  # a hold after a note is fed as a hold
    assert not np.array_equal(lstm.next_logits, heard)


def test_onsets_on_an_erk_tune_lie_mostly_in_the_key(lstm):
    from jamd.config import Config
    from jamd.training.evaluation.harmony_pipeline import folk_set

    tunes = [b for b in folk_set(Config(), 12, False).tunes if not b.minor][:6]
    assert tunes
    f = forecast(lstm, seed=1)
    total = np.zeros(12)
    for b in tunes:
        f.reset()
        f.hear(b.tune.symbols[:32])  # two 4/4 bars or so
        total += f.onsets(8)
    assert total[C_MAJOR].sum() > 0.8 * total.sum()


def test_load_refuses_a_model_that_is_not_an_lstm_step_model():
    with pytest.raises(ModelError, match="not an LSTM step model"):
        MelodyForecast.load("harmony", None, 8, None)
    with pytest.raises(ValueError, match="rollouts"):
        MelodyForecast(LstmGenerator.load("lstm"), 0)


# -- real tunes -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def erk_tunes():
    from jamd.config import Config
    from jamd.training.evaluation.harmony_pipeline import folk_set

    return folk_set(Config(), 6, False).tunes


def test_window_symbols_beat_by_beat_give_back_a_real_tune(erk_tunes):
    # a tune's notes, windowed beat by beat as the daemon feeds them, read as its canonical encoding
    for b in erk_tunes:
        notes = symbols_to_notes(b.tune.symbols)
        n = len(b.tune.symbols)
        windows = [s for start in range(0, n, 4) for s in window_symbols(notes, start, min(4, n - start))]
        assert windows == notes_to_symbols(notes, n)


def test_the_evaluations_online_system_with_the_forecast_on_real_tunes(erk_tunes, lstm):
    from jamd.inference.harmony import Harmonizer, HarmonyModel
    from jamd.training.evaluation.harmony_pipeline import score
    from jamd.training.evaluation.harmony_systems import ModelSystem, SpanForecast
    from jamd.training.evaluation.harmony_tunes import change_beats, span_ends

    model = HarmonyModel.load("harmony")
    spans = SpanForecast(forecast(lstm), 7, "lstm")
    online = ModelSystem("m", Harmonizer(model, 0.0, 4.0), False, spans)
    head = ModelSystem("m", Harmonizer(model, 0.0, 4.0), False)
    outs = [online.run(b, "half-bar") for b in erk_tunes]
    for b in erk_tunes:
        guessed = spans.spans(b, "half-bar")
        change = change_beats(b, "half-bar")
        assert sorted(guessed) == np.flatnonzero(change).tolist()
        ends = span_ends(change)
        assert all(s.shape == (12,) and 0 <= s.sum() <= ends[k] - k for k, s in guessed.items())
        assert sum(s.sum() for s in guessed.values()) > 0
    # drawn once per tune and rhythm: a fresh forecast with the same seed guesses the same
    again = SpanForecast(forecast(lstm, seed=0), 7, "lstm")
    np.testing.assert_array_equal(again.spans(erk_tunes[0], "half-bar")[0], spans.spans(erk_tunes[0], "half-bar")[0])
    assert [o.chords.tolist() for o in outs] == [online.run(b, "half-bar").chords.tolist() for b in erk_tunes]
    with_forecast = score(erk_tunes, outs, False)
    with_head = score(erk_tunes, [head.run(b, "half-bar") for b in erk_tunes], False)
    assert with_forecast["onset_notes"] == with_head["onset_notes"] > 0
    for s in (with_forecast, with_head):
        assert 0.0 <= s["chord_tone_share"] <= 1.0
    # the guesses decide: the chords differ from the melody head's somewhere
    assert [o.chords.tolist() for o in outs] != [head.run(b, "half-bar").chords.tolist() for b in erk_tunes]
