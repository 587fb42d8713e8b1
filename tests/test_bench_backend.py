"""training/bench_backend.py: the LSTM's Keras training step timed on the current Keras backend."""

from __future__ import annotations

import json

import pytest


@pytest.mark.train
def test_backend_bench_trains_the_jamd_model_and_reports_tokens_per_second(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    from jamd.training import bench_backend

    out = tmp_path / "keras.jsonl"
    argv = ["--sizes", "16x1,8x2", "--vocab", "12", "--batch", "4", "--seq", "8", "--steps", "3", "--epochs", "3"]
    assert bench_backend.main([*argv, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["units"], r["layers"]) for r in rows] == [(16, 1), (8, 2)]
    for r in rows:
        assert r["backend"] == "tensorflow"
        assert r["device"] == "cpu" or r["device"].startswith("gpu")
        assert r["tokens_per_second"] == pytest.approx(4 * 8 * 3 / r["epoch_s"])
        assert r["first_epoch_s"] > 0 and r["batch"] == 4 and r["sequence_length"] == 8
    # the model is jamd's own: one-hot tokens and positions, stacked LSTMs, softmax over the vocabulary
    one = 4 * 16 * (12 + 48 + 16 + 1) + 16 * 12 + 12
    two = 4 * 8 * (12 + 48 + 8 + 1) + 4 * 8 * (8 + 8 + 1) + 8 * 12 + 12
    assert [r["parameters"] for r in rows] == [one, two]
    assert "tensorflow on cpu: 16x1 batch 4:" in capsys.readouterr().out or rows[0]["device"] != "cpu"
