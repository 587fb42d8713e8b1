"""ONNX Runtime provider choice and the two-runtimes warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from jamd import runtime
from jamd.errors import ModelError
from jamd.lstm import LstmGenerator


def test_auto_uses_what_really_loaded_and_logs_it(shipped_lstm, caplog):
    caplog.set_level(logging.INFO, logger="jamd.runtime")
    session = runtime.make_session(shipped_lstm, "auto", 1)
    used = session.get_providers()[0]
    assert used in (runtime.CPU, runtime.CUDA)
    assert f"runs on {used}" in caplog.text


def test_cuda_without_a_cuda_runtime_is_one_line(shipped_lstm):
    import onnxruntime

    if runtime.CUDA in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(ModelError, match="no CUDA provider") as err:
        runtime.make_session(shipped_lstm, "cuda", 1)
    assert "\n" not in str(err.value)


def test_both_runtimes_warn_once(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"])
    with caplog.at_level(logging.WARNING, logger="jamd.runtime"):
        runtime.warn_if_both_runtimes()
    assert len(caplog.records) == 1 and "overwrite" in caplog.records[0].getMessage()
    monkeypatch.setattr(runtime, "installed_runtimes", lambda: ["onnxruntime"])
    caplog.clear()
    runtime.warn_if_both_runtimes()
    assert not caplog.records


def test_step_model_state_is_explicit(shipped_lstm):
    gen = LstmGenerator.load(str(shipped_lstm))
    gen.reset()
    a = gen.generate(32, 0.0, np.random.default_rng(0))
    gen.reset()
    b = gen.generate(32, 0.0, np.random.default_rng(1))
    assert a == b  # argmax from the same state is deterministic, whatever the rng
    gen.reset()
    gen.prime(["72", "_", "71", "_", "69", "_"])
    assert gen.next_logits.shape == (len(gen.vocab),)
    p = gen.step_probabilities("67")
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()


def test_bound_buffers_match_plain_session_runs(shipped_lstm):
    # feed() runs on preallocated IO bindings; it must give exactly what
    # plain session.run calls with the state passed by hand give
    gen = LstmGenerator.load(str(shipped_lstm))
    gen.reset()
    _, h, c = gen._reset_state
    for t in np.random.default_rng(0).integers(3, len(gen.vocab), 100):
        bound = gen.feed(int(t))
        plain, h, c = gen._run(int(t), h, c)
        np.testing.assert_array_equal(bound, plain)
