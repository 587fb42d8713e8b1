"""`jamd bench --suite providers`: every shipped model timed on each provider ONNX Runtime offers."""

from __future__ import annotations

import json

import onnxruntime

from jamd.cli import main
from jamd.inference import runtime
from jamd.inference.model_store import shipped_model_names


def test_providers_suite_times_every_shipped_model_on_what_really_ran(tmp_path, capsys):
    out = tmp_path / "providers.json"
    assert main(["bench", "--suite", "providers", "--quick", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    printed = capsys.readouterr().out
    has_cuda = runtime.CUDA in onnxruntime.get_available_providers()
    assert figures["providers"] == (["cpu", "cuda"] if has_cuda else ["cpu"])
    if not has_cuda:
        assert "CUDA: not available in this ONNX Runtime" in printed
    rows = {(m["model"], m["provider"]): m for m in figures["models"]}
    # every shipped model, each on each provider; the families the daemon runs
    assert {name for name, _ in rows} == set(shipped_model_names())
    families = {m["model"]: m["family"] for m in figures["models"]}
    assert families["lstm"] == families["lstm-folk"] == "lstm"
    assert families["gan"] == families["cgan"] == "gan" and families["harmony"] == "harmony"
    for (name, provider), m in rows.items():
        assert m["used"] == (runtime.CPU if provider == "cpu" else runtime.CUDA), (name, provider)
        assert 0 < m["per_call"]["median_us"] <= m["per_call"]["p99_us"]
        assert m["per_call"]["n"] == 50
        assert m["unit"] == {"lstm": "16th", "gan": "bar", "harmony": "beat"}[m["family"]]
        assert ("bars_per_second" in m) == (m["family"] == "gan")
        assert f"| {name} | {provider} | {m['used'].replace('ExecutionProvider', '')} |" in printed


def test_a_model_that_cannot_load_on_a_provider_is_reported_not_hidden(monkeypatch, capsys):
    from jamd.bench import providers
    from jamd.config import Config
    from jamd.errors import ModelError

    why = "lstm.onnx: the CUDA provider did not load (ONNX Runtime fell back to CPUExecutionProvider)"

    def refuse(*_a, **_k):
        raise ModelError(why)

    monkeypatch.setitem(providers.MEASURE, "lstm", refuse)
    got = providers.measure("lstm", Config(), "cuda", 10)
    assert got == {"model": "lstm", "provider": "cuda", "error": why}
    providers._print({"onnxruntime": "1.31.1", "device": "GPU", "available": [runtime.CUDA, runtime.CPU],
                      "providers": ["cpu", "cuda"], "intra_op_threads": 1,
                      "first_session_ms": {"cuda": 826.0}, "models": [got]})
    assert "| lstm | cuda | — | — | — | lstm.onnx: the CUDA provider did not load" in capsys.readouterr().out
