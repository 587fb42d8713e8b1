"""Bars for the GANs: cut on real bar lines, normalised, measured for mode collapse."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from jamd.inference.gan import draw_noise, last_bar, normalise_bar, sample_steps, silent_bar
from jamd.inference.sampling import softmax
from jamd.tokens import Note, Vocabulary, symbols_to_notes
from jamd.training.corpus import Tune
from jamd.training.gan_data import (
    collapse_figures,
    distinct_share,
    extract_bars,
    meter_steps,
    pitch_std,
    reference_figures,
)

VOCAB = Vocabulary.from_pitches(range(55, 80))


class FakeCorpus(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.tunes)


def corpus(*tunes: Tune) -> FakeCorpus:
    return FakeCorpus(vocab=VOCAB, tunes=list(tunes))


def tune(symbols: str, meter: str = "4/4", pickup: int = 0, changes: bool = False) -> Tune:
    return Tune("t", symbols.split(), "C major", 0, meter, pickup, changes)


@pytest.mark.parametrize("meter, steps", [("4/4", 16), ("2/4", 8), ("2/2", 16), ("6/8", 12), ("3/8", 6),
                                          ("4/2", 32), ("5/4", 20), ("x", None), ("3/32", None)])
def test_meter_steps(meter, steps):
    assert meter_steps(meter) == steps


def test_bars_start_after_the_pickup_and_ties_become_notes():
    # a 4-step pickup, two full 4/4 bars, then half a bar that is dropped
    bar1 = "60 _ _ _ 62 _ _ _ 64 _ _ _ 65 _ _ _"
    bar2 = "_ _ _ _ r _ _ _ 67 _ 67 _ 67 _ _ _"  # the 65 of bar 1 is tied over the bar line
    t = tune(f"55 _ 57 _ {bar1} {bar2} 60 _ _ _ _ _ _ _", pickup=4)
    bars = extract_bars(corpus(t), steps_per_bar=16)
    assert bars.stats["bars"] == 2 and bars.stats["tunes_used_by_meter"] == {"4/4": 1}
    assert VOCAB.decode(bars.bars[0]) == bar1.split()
    assert VOCAB.decode(bars.bars[1]) == ("65 " + bar2[2:]).split()
    # the first bar is conditioned on the pickup, rest-padded in front; the second on the first
    assert VOCAB.decode(bars.prev[0]) == ["r"] + ["_"] * 11 + "55 _ 57 _".split()
    assert VOCAB.decode(bars.prev[1]) == bar1.split()
    # decoding a bar gives notes with their durations
    assert symbols_to_notes(VOCAB.decode(bars.bars[1])) == [Note(0, 65, 4), Note(8, 67, 2), Note(10, 67, 2),
                                                             Note(12, 67, 4)]


def test_two_four_bars_are_paired_and_other_meters_skipped_with_a_count():
    two_four = tune("60 _ 62 _ 64 _ 65 _ " * 4, meter="2/4")  # four 2/4 bars: two 16-step bars
    waltz = tune("60 _ _ _ 62 _ _ _ 64 _ _ _ " * 2, meter="3/4")
    changing = tune("60 _ _ _ " * 8, changes=True)
    bars = extract_bars(corpus(two_four, waltz, changing), steps_per_bar=16)
    assert len(bars) == 2
    assert bars.stats["tunes_skipped_by_reason"] == {"meter 3/4": 1, "meter changes": 1}
    assert VOCAB.decode(bars.bars[0]) == ("60 _ 62 _ 64 _ 65 _ " * 2).split()
    # a 3/4 model takes the waltz and skips the 2/4 tune
    bars12 = extract_bars(corpus(two_four, waltz), steps_per_bar=12)
    assert len(bars12) == 2 and bars12.stats["tunes_skipped_by_reason"] == {"meter 2/4": 1}


def test_normalise_and_last_bar():
    assert normalise_bar(["_", "_", "60", "/"], 6, sounding="64") == ["64", "_", "60", "r", "_", "_"]
    assert normalise_bar(["_", "60"], 2) == ["r", "60"]
    assert last_bar(["60", "_"], 4) == ["r", "_", "60", "_"]
    assert last_bar(["60", "_", "_", "_", "_", "62"], 4) == ["60", "_", "_", "62"]
    assert silent_bar(3) == ["r", "_", "_"]


def test_collapse_measures_on_known_sets():
    a = VOCAB.encode("60 _ 62 _ 64 _ 65 _".split())
    b = VOCAB.encode("67 _ _ _ 72 _ _ _".split())
    collapsed = np.stack([a] * 10)
    assert distinct_share(collapsed) == pytest.approx(0.1)
    assert distinct_share(np.stack([a, b])) == 1.0
    assert pitch_std(collapsed, VOCAB) == pytest.approx(np.std([60, 62, 64, 65]))
    ref = collapse_figures(np.stack([a, b] * 5), VOCAB)
    same = collapse_figures(np.stack([a, b] * 5), VOCAB, ref)
    assert same["pitch_std_ratio"] == pytest.approx(1.0) and same["score"] == pytest.approx(0.0)
    worse = collapse_figures(collapsed, VOCAB, ref)
    assert worse["distinct_ratio"] == pytest.approx(0.5) and worse["score"] > 0.4


def test_reference_figures_on_real_bars():
    t = tune(" ".join(["60 _ 62 _ 64 _ 65 _ 67 _ _ _ 67 _ _ _"] * 3 + ["72 _ 71 _ 69 _ 67 _ 65 _ 64 _ 62 _ 60 _"]))
    ref = reference_figures(extract_bars(corpus(t)), n=1000)
    assert ref["distinct_share"] == pytest.approx(0.5) and ref["notes_per_bar"] == pytest.approx(6.5)


def test_the_bar_profile_sees_the_intervals_inside_bars():
    from jamd.training.gan_data import INTERVAL_BINS, bar_profile

    tune_like = VOCAB.encode("60 _ 62 _ 64 _ 65 _ 67 _ _ _ 67 _ _ _".split())
    leaping = VOCAB.encode("55 _ 79 _ 57 _ 70 _ r _ _ _ 56 _ _ _".split())
    hist = bar_profile(np.stack([tune_like]), VOCAB)["interval"]
    assert len(hist) == INTERVAL_BINS and hist[[0, 1, 2]] == pytest.approx([0.2, 0.2, 0.6])
    hist = bar_profile(np.stack([leaping]), VOCAB)["interval"]
    assert hist[13] == pytest.approx(1.0)  # 24, 22, 13 and 14 semitones: all beyond an octave


def test_sample_steps_masks_and_argmax():
    logits = np.zeros((3, 4, 5))
    logits[..., 2] = 5.0
    rng = np.random.default_rng(0)
    assert (sample_steps(logits, 0.0, rng) == 2).all()
    mask = np.array([True, True, False, True, True])
    drawn = sample_steps(logits, 1.0, rng, mask)
    assert drawn.shape == (3, 4) and (drawn != 2).all()
    # at temperature 1 the likely symbol dominates
    many = sample_steps(np.repeat(logits, 200, axis=0), 1.0, rng)
    assert 0.9 < (many == 2).mean() < 1.0


def test_gumbel_noise_draws_as_the_softmax_at_each_temperature():
    # an autoregressive model draws argmax(logits + noise): with draw_noise that must be a
    # sample of softmax(logits / T), the same distribution sample_steps draws from
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5])
    rng = np.random.default_rng(0)
    for temperature in (0.5, 1.0, 2.0):
        noise = draw_noise((40000, 5), temperature, rng)
        freq = np.bincount(np.argmax(logits + noise, axis=-1), minlength=5) / 40000
        want = softmax(logits, temperature)
        assert np.abs(freq - want).max() < 0.012, (temperature, freq, want)
        ref = np.bincount(sample_steps(np.broadcast_to(logits, (40000, 5)), temperature, rng), minlength=5) / 40000
        assert np.abs(freq - ref).max() < 0.015
    # temperature 0 is the argmax; a mask excludes its symbols whatever the logits
    assert not draw_noise((3, 5), 0.0, rng).any()
    mask = np.array([False, True, True, True, True])
    noise = draw_noise((1000, 5), 1.0, rng, mask)
    assert (np.argmax(logits + noise, axis=-1) != 0).all()
    assert (np.argmax(logits + draw_noise((4, 5), 0.0, rng, mask), axis=-1) == 1).all()


def test_join_figures_measure_how_bars_follow_their_predecessors():
    from jamd.training.gan_data import join_figures

    prev = np.stack([VOCAB.encode(f"{p} _ _ _".split()) for p in (60, 64, 67, 72)])
    smooth = np.stack([VOCAB.encode(f"{p + 2} _ _ _".split()) for p in (60, 64, 67, 72)])
    jumpy = np.stack([VOCAB.encode(f"{p} _ _ _".split()) for p in (72, 60, 72, 60)])
    assert join_figures(prev, smooth, VOCAB) == pytest.approx({"leap": 2.0, "register_correlation": 1.0})
    assert join_figures(prev, jumpy, VOCAB)["register_correlation"] < 0
