"""The pitch and variety bars of `jamd eval` (issue 3 section 5, issue 5 section 2).

The pitch-std bar is judged on a fixed, larger basis (many generated melodies
against the whole corpus) with the figure against the reference draw beside it;
bar models also get the distinct-bar bar, as the mean of several draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from test_eval_cli import TUNES, skip_plots

from jamd.cli import main
from jamd.inference.gan import BarGenerator
from jamd.training import gan_data
from jamd.training.corpus import Tune
from jamd.training.evaluation import features, melodies, pipeline
from jamd.training.evaluation.compare import PitchCheck, evaluate
from jamd.training.evaluation.melodies import from_symbols

WIDE = ["48 _ 60 _ 72 _ 84 _", "50 _ 62 _ 74 _ 86 _", "52 _ 64 _ 76 _ 88 _"]
NARROW = ["60 _ 62 _ 64 _ 62 _", "62 _ 64 _ 62 _ 60 _", "64 _ 62 _ 60 _ 62 _"]


def sets(*groups):
    return [[from_symbols(f"m{i}", t.split()) for i, t in enumerate(g)] for g in groups]


def test_the_pitch_bar_is_judged_on_its_check_with_the_set_ratio_beside_it():
    ref, narrow = sets(WIDE, NARROW)
    wide_std = features.pitch_stats(ref)["pitch_std"]
    # the set alone is far too narrow, but measured on the larger basis it is the corpus's spread
    ok = evaluate(ref, "ref", {"m": (narrow, "narrow")},
                  pitch_checks={"m": PitchCheck(wide_std * 0.9, 1000, wide_std, "the corpus")})
    bar = ok.sets["m"].bars["pitch_std_within_25pct"]
    assert bar["ok"] and bar["ratio"] == pytest.approx(0.9) and bar["ratio_reference_set"] < 0.5
    assert bar["value_set"] == pytest.approx(features.pitch_stats(narrow)["pitch_std"])
    # and the other way round: a set that matches the draw fails when the larger basis is short
    short = evaluate(ref, "ref", {"m": (list(ref), "copy")},
                     pitch_checks={"m": PitchCheck(wide_std * 0.7, 1000, wide_std, "the corpus")})
    bar = short.sets["m"].bars["pitch_std_within_25pct"]
    assert not bar["ok"] and bar["ratio_reference_set"] == pytest.approx(1.0)
    # without a check the bar is the set against the reference, as before
    plain = evaluate(ref, "ref", {"m": (narrow, "narrow")}).sets["m"].bars["pitch_std_within_25pct"]
    assert not plain["ok"] and "ratio_reference_set" not in plain


@pytest.mark.parametrize("share, ok", [(0.85, True), (0.80, False)])
def test_the_distinct_bar_is_ninety_percent_of_the_corpuss_share(share, ok):
    ref, = sets(WIDE)
    d = {"distinct_share": share, "min": share, "max": share, "draws": 5, "n": 1000,
         "reference": {"distinct_share": 0.9, "min": 0.88, "max": 0.92, "draws": 20, "n": 1000}}
    bars = evaluate(ref, "ref", {"m": (list(ref), "copy")}, distinct={"m": d}).sets["m"].bars
    assert bars["distinct_bars_at_least_90pct"]["ok"] is ok
    assert bars["distinct_bars_at_least_90pct"]["ratio"] == pytest.approx(share / 0.9)


def test_expected_distinct_share_averages_draws():
    bars = np.repeat(np.arange(20), 5)[:, None] * np.ones((1, 4), int)  # 100 bars, 20 distinct
    fig = gan_data.expected_distinct_share(bars, n=10, draws=30, rng=np.random.default_rng(0))
    assert fig["draws"] == 30 and fig["n"] == 10
    assert fig["min"] < fig["max"]  # single draws differ; the mean lies between them
    assert fig["min"] - 1e-12 <= fig["distinct_share"] <= fig["max"] + 1e-12
    # 10 of 100 bars (5 copies of each of 20) hold 20 * (1 - C(95,10) / C(100,10)) = 8.3 distinct on average
    assert fig["distinct_share"] == pytest.approx(0.83, abs=0.04)
    everything = gan_data.expected_distinct_share(np.arange(40).reshape(10, 4), n=1000, draws=3)
    assert everything["n"] == 10 and everything["distinct_share"] == 1.0


# -- end to end, with the shipped GAN on a tiny corpus of real tunes -------------------

@dataclass
class TinyCorpus:
    tunes: list
    vocab: object

    def __len__(self) -> int:
        return len(self.tunes)

    def split(self, validation_fraction=None, seed=None):
        return list(range(4)), list(range(4, 8))


def test_eval_of_a_gan_measures_both_bars_on_their_basis(capsys, tmp_path, monkeypatch):
    gen = BarGenerator.load("gan")
    corpus = TinyCorpus([Tune(f"t{i}", t.split(), "C major", 0, "4/4", 0) for i, t in enumerate(TUNES)],
                        gen.vocab)
    monkeypatch.setattr(pipeline, "load_corpus", lambda cfg, progress: corpus)
    monkeypatch.setattr(pipeline, "PITCH_MELODIES", 30)
    monkeypatch.setattr(pipeline, "DISTINCT_BARS", 40)
    monkeypatch.setattr(pipeline, "DISTINCT_DRAWS", 2)
    skip_plots(monkeypatch)
    args = ["eval", "--model", "gan", "--reference", "erk", "--n", "4", "--bars", "2", "--markov-order", "2",
            "--random-seed", "3", "--out", str(tmp_path / "a")]
    assert main(args) == 0, capsys.readouterr().err
    fig = json.loads((tmp_path / "a" / "figures.json").read_text())
    whole = [melodies.from_symbols(t.name, t.symbols, 32) for t in corpus.tunes]
    corpus_std = features.pitch_stats(whole)["pitch_std"]
    for name in ("gan", "markov-2", "corpus"):
        bar = fig["sets"][name]["quality_bars"]["pitch_std_within_25pct"]
        assert bar["reference"] == pytest.approx(corpus_std) and "all 8 tunes" in bar["basis"]
        assert bar["reference_set"] == pytest.approx(fig["reference"]["pitch"]["pitch_std"])
    assert fig["sets"]["gan"]["quality_bars"]["pitch_std_within_25pct"]["basis"].startswith("30 melodies")
    distinct = fig["sets"]["gan"]["quality_bars"]["distinct_bars_at_least_90pct"]
    assert distinct["n"] == 40 and distinct["draws"] == 2 and distinct["reference"]["draws"] == 20
    assert distinct["ratio"] == pytest.approx(distinct["distinct_share"] / distinct["reference"]["distinct_share"])
    assert "distinct_bars_at_least_90pct" not in fig["sets"]["markov-2"]["quality_bars"]
    assert "distinct bars" in (tmp_path / "a" / "report.md").read_text()
    # the added measures draw from streams of their own: the N melodies are those of before
    assert main([*args[:-1], str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "figures.json").read_text())
    assert again["sets"]["gan"]["quality_bars"] == fig["sets"]["gan"]["quality_bars"]
