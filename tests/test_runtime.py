"""ONNX Runtime provider choice and the two-runtimes warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from jamd.errors import ModelError
from jamd.inference import runtime
from jamd.inference.lstm import LstmGenerator


def test_auto_uses_what_really_loaded_and_logs_it(shipped_lstm, caplog):
    caplog.set_level(logging.INFO, logger="jamd.inference.runtime")
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


class FallingBackRuntime:
    """onnxruntime-gpu on a machine where CUDA does not load: it offers the CUDA provider, counts
    `preload_dlls` calls, and its sessions run on the CPU (as the real one falls back, silently)."""

    def __init__(self, preload_error: Exception | None = None):
        import onnxruntime

        self.real, self.preloads, self.preload_error = onnxruntime, 0, preload_error
        self.SessionOptions = onnxruntime.SessionOptions

    def get_available_providers(self):
        return [runtime.CUDA, runtime.CPU]

    def preload_dlls(self):
        self.preloads += 1
        if self.preload_error:
            raise self.preload_error

    def InferenceSession(self, path, sess_options, providers):  # noqa: N802 - ORT's name
        assert providers[-1] == runtime.CPU
        return self.real.InferenceSession(path, sess_options=sess_options, providers=[runtime.CPU])


@pytest.mark.parametrize("preload_error", [None, OSError("libcudnn.so.9: cannot open shared object file")])
def test_cuda_libraries_preloaded_once_and_a_fallback_named(shipped_lstm, monkeypatch, caplog, preload_error):
    fake = FallingBackRuntime(preload_error)
    monkeypatch.setattr(runtime, "_ort", lambda: fake)
    monkeypatch.setattr(runtime, "_preloaded", False)
    runtime.make_session(shipped_lstm, "cpu", 1)
    assert fake.preloads == 0  # providers: cpu never touches CUDA's libraries
    with caplog.at_level(logging.INFO, logger="jamd.inference.runtime"):
        session = runtime.make_session(shipped_lstm, "auto", 1)
        runtime.make_session(shipped_lstm, "auto", 1)
    assert fake.preloads == 1
    assert session.get_providers()[0] == runtime.CPU
    assert "CUDA provider did not load; running on the CPU" in caplog.text
    fell_back = r"the CUDA provider did not load \(ONNX Runtime fell back to CPUExecutionProvider\)"
    with pytest.raises(ModelError, match=fell_back) as err:
        runtime.make_session(shipped_lstm, "cuda", 1)
    assert "\n" not in str(err.value)


def test_both_runtimes_warn_once(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"])
    with caplog.at_level(logging.WARNING, logger="jamd.inference.runtime"):
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


def _tf2onnx_style_model(path, lean_path) -> None:
    """The shipped weights in the earlier export's interface: token [batch, 1], h/c [batch, units]."""
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    lean = onnx.load(str(lean_path))
    w = {i.name: numpy_helper.to_array(i) for i in lean.graph.initializer}
    V, U = w["token_input_weights"].shape[0], w["recurrent_weights"].shape[2]
    lstm = next(n for n in lean.graph.node if n.op_type == "LSTM")
    consts = {"cols": w["token_input_weights"][:, :, 0], "R": w["recurrent_weights"], "ax0": np.array([0], np.int64),
              "xs": np.array([1, -1, V], np.int64), "eye": np.eye(V, dtype=np.float32),
              "K": w["output_kernel"], "b": w["output_bias"]}
    consts["W"] = consts["cols"].T[None]  # one-hot input weights with the bias already in each column
    nodes = [helper.make_node("Gather", ["eye", "token"], ["oh"], axis=0),
             helper.make_node("Reshape", ["oh", "xs"], ["x"]),
             helper.make_node("Unsqueeze", ["h", "ax0"], ["h0"]), helper.make_node("Unsqueeze", ["c", "ax0"], ["c0"]),
             helper.make_node("LSTM", ["x", "W", "R", "", "", "h0", "c0"], ["", "yh", "yc"],
                              **{a.name: helper.get_attribute_value(a) for a in lstm.attribute}),
             helper.make_node("Squeeze", ["yh", "ax0"], ["h_out"]),
             helper.make_node("Squeeze", ["yc", "ax0"], ["c_out"]),
             helper.make_node("Gemm", ["h_out", "K", "b"], ["logits"])]
    vi = helper.make_tensor_value_info
    state = ["batch", U]
    graph = helper.make_graph(
        nodes, "old", [vi("token", TP.INT32, ["batch", 1]), vi("h", TP.FLOAT, state), vi("c", TP.FLOAT, state)],
        [vi("logits", TP.FLOAT, ["batch", V]), vi("h_out", TP.FLOAT, state), vi("c_out", TP.FLOAT, state)],
        [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in consts.items() if k != "cols"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.metadata_props.extend(lean.metadata_props)
    onnx.save(model, str(path))


def test_models_with_the_earlier_2d_state_still_run(shipped_lstm, tmp_path):
    # exports made before the lean graph take token [batch, 1] and h/c [batch, units];
    # the generator reads the shapes from the model and gives the same steps
    old = tmp_path / "old.onnx"
    _tf2onnx_style_model(old, shipped_lstm)
    new_gen, old_gen = LstmGenerator.load(str(shipped_lstm)), LstmGenerator.load(str(old))
    assert old_gen._state_shape == (1, new_gen.units) and new_gen._state_shape == (1, 1, new_gen.units)
    np.testing.assert_allclose(old_gen.next_logits, new_gen.next_logits, atol=1e-4)
    for t in np.random.default_rng(2).integers(3, len(new_gen.vocab), 50):
        np.testing.assert_allclose(old_gen.feed(int(t)), new_gen.feed(int(t)), atol=1e-4)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    new_gen.reset()
    old_gen.reset()
    assert new_gen.generate(32, 0.0, rng_a) == old_gen.generate(32, 0.0, rng_b)
