"""`jamd eval` end to end: the shipped LSTM against real Erk tunes, with the Markov baseline."""

from __future__ import annotations

import json

from jamd.cli import main


def test_eval_shipped_lstm_against_erk(tmp_path, shipped_lstm):
    out = tmp_path / "report"
    assert main(["eval", "--model", "lstm", "--reference", "erk", "--n", "12", "--bars", "4",
                 "--random-seed", "1", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    figures = json.loads((out / "figures.json").read_text())
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 4, pngs
    for png in pngs:
        assert f"({png})" in report or png in report, png
    sets = figures["sets"]
    assert set(sets) >= {"lstm", "markov-3"}

    # the LSTM beats the order-3 Markov chain on held-out NLL (issue 3's first quality bar),
    # scored on every validation tune
    lstm, markov = sets["lstm"]["nll"], sets["markov-3"]["nll"]
    assert lstm["tunes"] == markov["tunes"] > 100
    assert lstm["per_token"] < markov["per_token"]
    assert "quality_bars" in sets["lstm"]
