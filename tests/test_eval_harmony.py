"""`jamd eval --harmony`: its measures and baselines on exact hand-made tunes, its report end to end
(fake corpora and a fake model), and one run over the shipped harmony model on real tunes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from cli_checks import assert_one_line, run_cli

from jamd.config import HarmonyConfig
from jamd.inference.harmony import Harmonizer
from jamd.inference.model_store import shipped_models_dir
from jamd.music import chords
from jamd.training.corpus import Tune
from jamd.training.evaluation import harmony_pipeline as hp
from jamd.training.evaluation import harmony_report
from jamd.training.evaluation.harmony_metrics import score_tune, transitions, windows
from jamd.training.evaluation.harmony_systems import (
    ChordChain,
    MarkovSystem,
    ModelSystem,
    RuleSystem,
    chain_sequences,
    pick,
    rule_chord,
)
from jamd.training.evaluation.harmony_tunes import SkipReason, beats_of, from_tune, is_minor, span_ends
from jamd.training.harmony_data import HarmonizedTune

C, D, E, F, G = (chords.chord_id(r, 0) for r in (0, 2, 4, 5, 7))
AM, DM, EM = chords.chord_id(9, 1), chords.chord_id(2, 1), chords.chord_id(4, 1)
N = chords.NO_CHORD

# two bars of 4/4: beats start on C, E, F, B | C, A, G, rest
TWO_BARS = "60 _ _ _ 64 _ _ _ 65 _ 67 _ 71 _ _ _ 72 _ _ _ 69 _ _ _ 67 _ _ _ r _ _ _"


def tune(symbols: str, bpb: int = 4, pickup: int = 0, labels=(), key: str = "C major") -> HarmonizedTune:
    return HarmonizedTune("t", symbols.split(), bpb, pickup, np.array(labels, np.int64), key=key)


# -- the tunes ------------------------------------------------------------------------
def test_beats_hold_onsets_and_the_last_note_heard():
    b = beats_of(tune(TWO_BARS))
    assert b.n == 8
    assert b.onset == [60, 64, 65, 71, 72, 69, 67, None]
    # heard: the last note started before the beat (65, then 67 on the & of beat 3)
    assert b.heard == [None, 60, 64, 67, 71, 72, 69, 67]
    np.testing.assert_allclose(b.weights[2][[5, 7]], [0.5, 0.5])


def test_folk_tune_conversion():
    t = Tune("x", "67 _ 60 _ _ _ 64 _ 67 _ _ _ 72 _ _ _".split(), "C major", 0, "6/8", 2)
    h = from_tune(t)
    # an 8th pickup is padded with an 8th rest, to a whole beat; 6/8 is 3 quarter beats
    assert h.symbols[:4] == ["r", "r", "67", "_"] and len(h.symbols) == 20
    assert (h.beats_per_bar, h.pickup_beats) == (3, 1)
    assert h.beat_in_bar(1) == 0
    with pytest.raises(SkipReason, match="3/8"):
        from_tune(Tune("y", ["60"] * 6, "C major", 0, "3/8", 0))
    with pytest.raises(SkipReason, match="meter changes"):
        from_tune(Tune("z", ["60"] * 16, "C major", 0, "4/4", 0, meter_changes=True))
    assert (from_tune(Tune("w", ["60"] * 16, "C major", 0, "2/2", 0)).beats_per_bar) == 4


def test_mode_from_the_written_key_or_the_last_note():
    assert is_minor(tune("60 _ _ _", key="a minor"))
    assert is_minor(tune("60 _ 69 _ _ _ r _"))
    assert not is_minor(tune("69 _ 60 _"))


def test_span_ends():
    assert span_ends([True, False, True, False, False]).tolist() == [2, 2, 5, 5, 5]


# -- the measures -----------------------------------------------------------------------
def test_chord_tones_key_and_agreement_on_two_bars():
    b = beats_of(tune(TWO_BARS))
    ids = [C, C, G, G, F, F, E, C]
    labels = [C, N, G, C, F, F, G, N]
    c = score_tune(b, ids, labels)
    # onsets 60 64 65 71 72 69 67 (rest not counted): 65 is not in G, 67 not in E major
    assert (c.onset_notes, c.onset_chord_tones) == (7, 5)
    # 8 chords of 3 notes: only E major's G# is outside C major
    assert (c.chord_notes, c.chord_notes_in_key) == (24, 23)
    # Bach's N beats left out: C/C, G/G, G/C, F/F, F/F, E/G
    assert (c.labelled_beats, c.agreeing_beats) == (6, 4)
    s = c.summary()
    assert s["chord_tone_share"] == pytest.approx(5 / 7) and s["agreement"] == pytest.approx(4 / 6)
    assert s["distinct_per_4_bars"] is None  # two bars: no whole 4-bar window
    minor = beats_of(tune(TWO_BARS, key="a minor"))
    assert score_tune(minor, ids).chord_notes_in_key == 24  # G# is in A harmonic minor


def test_distinct_chords_per_window_from_the_first_bar_line():
    # 3/4 with a one-beat pickup, 13 beats: one whole 4-bar window, beats 1..12
    b = beats_of(tune(" ".join(["60 _ _ _"] * 13), bpb=3, pickup=1))
    assert [(w.start, w.stop) for w in windows(b, 4)] == [(1, 13)]
    ids = [G] + [C] * 6 + [F] * 3 + [C] * 3
    c = score_tune(b, ids)
    assert (c.windows_4, c.distinct_4, c.windows_4_with_2, c.windows_8) == (1, 2, 1, 0)
    c = score_tune(b, [G] + [C] * 12)
    assert (c.distinct_4, c.windows_4_with_2) == (1, 0)  # the pickup's G is outside the window


def test_transitions_count_changes_only():
    m = transitions([[C, C, G, N, G, C, F], [AM, AM]])
    assert m[C, G] == 1 and m[G, C] == 1 and m[C, F] == 1
    assert m.sum() == 3


# -- the baselines ------------------------------------------------------------------------
def test_rule_picks():
    assert [rule_chord(p, False) for p in (60, 62, 64, 65, 67, 69, 71, 66)] == [C, G, C, F, C, F, G, None]
    assert [rule_chord(p, True) for p in (69, 71, 72, 74, 76, 77, 79, 80)] == [AM, E, AM, DM, AM, DM, None, E]
    assert rule_chord(None, False) is None


def test_rule_system_online_and_lookahead():
    b = beats_of(tune(TWO_BARS))
    # lookahead reads the note on the beat; online the last note heard before it; F# holds
    assert RuleSystem("r", True).run(b, "beat").chords.tolist() == [C, C, F, G, C, F, C, C]
    assert RuleSystem("r", False).run(b, "beat").chords.tolist() == [C, C, C, C, G, C, F, C]
    assert RuleSystem("r", True).run(b, "half-bar").chords.tolist() == [C, C, F, F, C, C, C, C]
    held = beats_of(tune("66 _ _ _ 62 _ _ _ 66 _ _ _ r _ _ _"))
    assert RuleSystem("r", True).run(held, "beat").chords.tolist() == [C, G, G, G]


def test_markov_counts_and_argmax():
    chain = ChordChain(1).fit([([C, G, C, N, F, C], False), ([AM, E, AM], True), ([N], False)])
    assert chain.starts[False] == Counter({C: 1}) and chain.starts[True] == Counter({AM: 1})
    assert chain.counts[(C,)] == Counter({G: 1, F: 1})
    assert chain.counts[()] == Counter({C: 3, AM: 2, G: 1, F: 1, E: 1})
    assert chain.following([DM]) == chain.counts[()]  # an unseen context backs off
    assert pick(Counter({G: 1, F: 1}), 0.0, np.random.default_rng(0)) == F  # ties: the lowest id
    b = beats_of(tune(TWO_BARS))
    out = MarkovSystem("m", {"half-bar": chain}).run(b, "half-bar").chords.tolist()
    assert out == [C, C, F, F, C, C, F, F]  # C, then argmax after C (F), after F (C), ...
    assert MarkovSystem("m", {"beat": chain}).run(beats_of(tune("69 _ _ _", key="a minor")), "beat").chords[0] == AM


def test_chain_sequences_take_the_labels_at_the_changes():
    b = beats_of(tune(TWO_BARS, labels=[C, C, G, G, F, N, C, C]))
    assert [s.tolist() for s, _ in chain_sequences([b], "half-bar")] == [[C, G, F, C]]


# -- the model system, over a fake step model -------------------------------------------------
class EchoModel:
    """A stand-in step model: major triads a little likelier than other chords, and the guess of the
    coming beat's notes is the beat before's (so online decisions follow the notes just heard)."""

    units = 4

    def reset(self):
        pass

    def step(self, x):
        logits = np.full(chords.N_CHORDS, -1.0)
        logits[1::4] = 0.0
        prev = x[chords.PREV_MELODY:chords.PREV_MELODY + 12]
        melody = np.full(chords.N_MELODY_CLASSES, -30.0)
        melody[:12] = np.log(prev + 1e-9) if prev.sum() > 0 else 0.0
        return logits, np.zeros(12), melody


def test_model_system_online_hears_the_beat_before_and_lookahead_the_span():
    b = beats_of(tune("60 _ 64 _ 67 _ 71 _ 65 _ 69 _ 62 _ 66 _"))  # C E | G B | F A | D F#
    online = ModelSystem("m", Harmonizer(EchoModel(), 0.0, 1.0), lookahead=False)
    ahead = ModelSystem("m", Harmonizer(EchoModel(), 0.0, 1.0), lookahead=True)
    assert online.run(b, "beat").chords.tolist() == [C, C, G, F]
    assert ahead.run(b, "beat").chords.tolist() == [C, G, F, D]
    assert ahead.run(b, "half-bar").chords.tolist() == [C, C, D, D]  # spans C E G B and F A D F#
    out = ahead.run(b, "beat")
    assert all(bass in chords.chord_tones(c) for c, bass in zip(out.chords, out.bass, strict=True))


# -- the report, end to end over fakes --------------------------------------------------------
@dataclass
class FakeCorpus:
    tunes: list
    n_val: int

    def split(self, validation_fraction=None, seed=None):
        n = len(self.tunes)
        return list(range(n - self.n_val)), list(range(n - self.n_val, n))


class FakeModelClass:
    @staticmethod
    def load(name, cfg=None):
        return EchoModel()


def fake_sets(monkeypatch):
    melodies = [f"{TWO_BARS} {TWO_BARS}", "64 _ 62 _ " * 16, "60 _ _ _ 67 _ 65 _ 64 _ 62 _ 60 _ _ _ " * 4]
    labels = [[C, C, G, G, F, F, C, C] * 2, [C, G] * 8, [C, G, F, C] * 4]
    chorales = [HarmonizedTune(f"bach/{i}", m.split(), 4, 0, np.array(lab), key="C major")
                for i, (m, lab) in enumerate(zip(melodies * 2, labels * 2, strict=True))]
    folk = [Tune(f"folk{i}", m.split(), "C major", 0, meter, 0)
            for i, (m, meter) in enumerate(zip(melodies, ["4/4", "2/4", "4/4"], strict=True))]
    folk.append(Tune("eighths", ["60"] * 12, "C major", 0, "3/8", 0))
    monkeypatch.setattr(hp, "load_chorales", lambda cfg, progress: FakeCorpus(chorales, 3))
    monkeypatch.setattr(hp, "load_folk", lambda cfg, progress: FakeCorpus(folk, 4))
    monkeypatch.setattr(hp, "HarmonyModel", FakeModelClass)


def check_report(out, figures, printed: str) -> None:
    assert {p.name for p in out.iterdir()} >= {"report.md", "figures.json", "chord_transitions.png",
                                                 "piano_roll_folk.png"}
    goal_lines = [line for line in printed.splitlines() if line.startswith(("pass: ", "FAIL: "))]
    assert len(goal_lines) == 4
    report = (out / "report.md").read_text()
    assert all(line in report for line in goal_lines)
    for set_rows in figures["rhythms"].values():
        for rows in set_rows.values():
            for row in rows.values():
                for k in ("agreement", "chord_tone_share", "in_key_share", "windows_4_with_2_chords"):
                    assert row[k] is None or 0.0 <= row[k] <= 1.0, (k, row)


def test_cli_report_over_fakes(capsys, tmp_path, monkeypatch):
    fake_sets(monkeypatch)
    out = tmp_path / "rep"
    code, text, err = run_cli(capsys, "eval", "--harmony", "--random-seed", "3", "--out", out)
    assert code == 0, err
    figures = json.loads((out / "figures.json").read_text())
    check_report(out, figures, text)
    assert figures["sets"]["folk"]["skipped"] == {"3/8 bars are not whole quarter notes": 1}
    assert figures["sets"]["folk"]["tunes"] == 3 and figures["sets"]["chorales"]["tunes"] == 3
    assert figures["rhythms"]["chorales"]["beat"]["bach"]["agreement"] == 1.0
    assert "recommended harmony.melody_fit" in text
    assert figures["recommended_melody_fit"]["value"] in hp.MELODY_FITS
    scan = figures["melody_fit_scan"]
    default = f"{HarmonyConfig().melody_fit:g}"  # the scan's row at the config's value is the main table's
    assert scan["folk"][default]["online"] == figures["rhythms"]["folk"]["half-bar"]["model online"]
    # a system that samples is pooled over its draws; one that does not runs once
    assert scan["draws"] == 3
    assert scan["chorales"]["4"]["lookahead"]["beats"] == 3 * figures["sets"]["chorales"]["beats"]
    assert figures["rhythms"]["chorales"]["beat"]["model online T=0"]["beats"] == figures["sets"]["chorales"]["beats"]
    # the rule baseline online, recomputed by hand for the folk tunes at half-bar
    folk = [beats_of(from_tune(t)) for t in hp.load_folk(None, False).tunes[:3]]
    counts = [score_tune(b, RuleSystem("r", False).run(b, "half-bar").chords) for b in folk]
    total = counts[0] + counts[1] + counts[2]
    assert figures["rhythms"]["folk"]["half-bar"]["rule online"]["chord_tone_share"] == pytest.approx(
        total.onset_chord_tones / total.onset_notes)
    # online, the melody LSTM guesses the span (harmony.forecast_model lstm); the melody head beside it
    assert figures["settings"]["online_predictor"] == "forecast by lstm, 8 rollouts"
    assert "model online, melody head" in figures["rhythms"]["folk"]["beat"]
    report = (out / "report.md").read_text()
    assert "guesses the span's notes with forecast by lstm, 8 rollouts" in report
    assert "| model online, melody head | half-bar |" in report
    # the same seed, the same figures
    code, _, _ = run_cli(capsys, "eval", "--harmony", "--random-seed", "3", "--out", tmp_path / "again")
    again = json.loads((tmp_path / "again" / "figures.json").read_text())
    assert again["rhythms"] == figures["rhythms"] and again["melody_fit_scan"] == figures["melody_fit_scan"]


def test_cli_report_without_the_forecast(capsys, tmp_path, monkeypatch):
    fake_sets(monkeypatch)
    out = tmp_path / "head"
    code, text, err = run_cli(capsys, "eval", "--harmony", "--random-seed", "3", "--out", out,
                              "--set", "harmony.forecast_model=null")
    assert code == 0, err
    figures = json.loads((out / "figures.json").read_text())
    check_report(out, figures, text)
    assert figures["settings"]["forecast_model"] is None
    assert "melody head" in figures["settings"]["online_predictor"]
    assert "model online, melody head" not in figures["rhythms"]["folk"]["beat"]
    assert "--set harmony.forecast_model=null" in figures["settings"]["command"]
    # lookahead never uses the forecast: its rows and scan are those of a run with the forecast on
    code, _, err = run_cli(capsys, "eval", "--harmony", "--random-seed", "3", "--out", tmp_path / "fc")
    assert code == 0, err
    with_fc = json.loads((tmp_path / "fc" / "figures.json").read_text())
    for name in ("chorales", "folk"):
        for rhythm, rows in figures["rhythms"][name].items():
            for system in ("model lookahead", "model lookahead T=0"):
                assert rows[system] == with_fc["rhythms"][name][rhythm][system]
        for k, row in figures["melody_fit_scan"][name].items():
            assert row["lookahead"] == with_fc["melody_fit_scan"][name][k]["lookahead"]
            # at melody_fit 0 no guess counts: the same draws give the same chords
            assert (row["online"] == with_fc["melody_fit_scan"][name][k]["online"]) == (k == "0")


def test_goal_verdicts_and_shortfall():
    g = harmony_report._goal("x", "x", 0.80, 0.85)
    assert not g["ok"] and g["short_by"] == pytest.approx(0.05)
    assert harmony_report._goal("x", "x", 0.5, 0.5)["ok"]
    assert not harmony_report._goal("x", "x", 0.5, 0.5, strict=True)["ok"]
    assert not harmony_report._goal("x", "x", None, 0.5)["ok"]


@pytest.mark.parametrize("argv, fragment", [
    (["--generated", "."], "--generated does not apply to --harmony"),
    (["--bars", "4"], "--bars does not apply to --harmony"),
    (["--model", "a", "--model", "b"], "one model"),
    (["--n", "0"], "--n must be at least 1"),
])
def test_harmony_usage_errors_are_one_line(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "eval", "--harmony", *argv, "--out", tmp_path / "o")
    assert code == 2
    assert_one_line(err, fragment)


# -- the shipped model on real tunes ------------------------------------------------------------
@pytest.mark.slow
def test_cli_over_the_shipped_model(capsys, tmp_path):
    if not (shipped_models_dir() / "harmony.onnx").is_file():
        pytest.skip("models/harmony.onnx is not shipped yet (trained on another branch)")
    out = tmp_path / "real"
    code, text, err = run_cli(capsys, "eval", "--harmony", "--n", "3", "--random-seed", "1", "--out", out)
    assert code == 0, err
    figures = json.loads((out / "figures.json").read_text())
    check_report(out, figures, text)
    assert figures["sets"]["chorales"]["tunes"] == 3 and figures["sets"]["folk"]["tunes"] == 3
    main = figures["rhythms"]["folk"]["half-bar"]["model online"]
    assert main["onset_notes"] > 0 and 0 <= main["chord_tone_share"] <= 1
