"""A tiny harmony step model that keeps the ONNX contract (`jamd.music.chords`), for exact decoder tests.

Its logits are fixed linear functions of the step input: ``chord_logits =
x @ chord_weights + chord_bias`` (likewise bass and melody), and its state
counts the steps it took (``h_out = h + 1``, ``c_out = c``), so a test can
see that the model stepped.  It stands in for no trained model: integration
tests use the shipped ``models/harmony.onnx``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jamd.music import chords

UNITS = 4


def write_fixture(path: Path, chord_bias=None, bass_bias=None, melody_bias=None, chord_weights=None,
                  units: int = UNITS) -> Path:
    """Write the model to `path` (.onnx) with its metadata embedded and as the sidecar; returns `path`.

    Biases default to zeros; `chord_weights` is a ``[STEP_FEATURES, 49]`` matrix (default zeros).
    """
    n = chords.STEP_FEATURES
    heads = {
        "chord": (chords.N_CHORDS, chord_bias, chord_weights),
        "bass": (chords.N_BASS, bass_bias, None),
        "melody": (chords.N_MELODY_CLASSES, melody_bias, None),
    }
    inits, nodes = [], []
    for name, (size, bias, weights) in heads.items():
        w = np.zeros((n, size), np.float32) if weights is None else np.asarray(weights, np.float32)
        b = np.zeros(size, np.float32) if bias is None else np.asarray(bias, np.float32)
        assert w.shape == (n, size) and b.shape == (size,)
        inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b.reshape(1, size), f"{name}_b")]
        nodes += [helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_xw"]),
                  helper.make_node("Add", [f"{name}_xw", f"{name}_b"], [f"{name}_logits"])]
    inits.append(numpy_helper.from_array(np.ones((1, units), np.float32), "one"))
    nodes += [helper.make_node("Add", ["h", "one"], ["h_out"]), helper.make_node("Identity", ["c"], ["c_out"])]
    graph = helper.make_graph(
        nodes, "harmony_fixture",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, units]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, units])],
        [helper.make_tensor_value_info("chord_logits", TensorProto.FLOAT, [1, chords.N_CHORDS]),
         helper.make_tensor_value_info("bass_logits", TensorProto.FLOAT, [1, chords.N_BASS]),
         helper.make_tensor_value_info("melody_logits", TensorProto.FLOAT, [1, chords.N_MELODY_CLASSES]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, units]),
         helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [1, units])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"kind": "harmony-step", "units": units, "step_features": n, "chords": chords.chord_table(),
            "step_quarter_length": 1.0, "note": "test fixture: fixed linear logits"}
    helper.set_model_props(model, {"jamd": json.dumps(meta)})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def one_hot(size: int, index: int, value: float = 1.0) -> np.ndarray:
    v = np.zeros(size, np.float32)
    v[index] = value
    return v
