"""Issue 16's models through the export: a stacked LSTM reading the metric position, trained a few
steps with Keras, exported to ONNX, and stepped by the daemon's generator like Keras's sequence model."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("tensorflow")

from jamd.export.lstm_onnx import PARITY_TOLERANCE, export_lstm  # noqa: E402
from jamd.inference.lstm import LstmGenerator  # noqa: E402
from jamd.inference.model_store import load_info  # noqa: E402
from jamd.tokens import METRIC_POSITIONS, bar_positions  # noqa: E402
from jamd.training.lstm_model import build_training_model  # noqa: E402

VOCAB = ["/", "r", "_"] + [str(p) for p in range(55, 80)]


def windows(n: int, steps: int, bar: int, rng: np.random.Generator):
    """`n` windows of random tokens with their bar positions (of the step each input predicts)."""
    tokens = rng.integers(1, len(VOCAB), (n, steps + 1)).astype(np.int32)
    pickups = rng.integers(0, bar, n)
    positions = np.stack([bar_positions(steps, bar, int(p), start=1) for p in pickups])
    return tokens[:, :-1], positions, tokens[:, 1:]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(layers, metric_position) -> (Keras model, exported .onnx, export metadata)."""
    tmp = tmp_path_factory.mktemp("metric")
    rng = np.random.default_rng(0)
    out = {}
    for layers, positioned, transpose in ((2, True, "all-keys"), (3, False, "c")):
        model = build_training_model(len(VOCAB), 16, 0.0, 0.01, layers=layers, metric_position=positioned)
        x, pos, y = windows(8, 32, 16, rng)
        model.fit([x, pos] if positioned else x, y, epochs=3, batch_size=4, verbose=0)  # weights away from init
        model.save(tmp / f"m{layers}.keras")
        onnx_path = tmp / f"m{layers}.onnx"
        meta = export_lstm(tmp / f"m{layers}.keras", onnx_path,
                           {"vocabulary": VOCAB, "training": {"layers": layers, "metric_position": positioned,
                                                              "transpose": transpose}})
        out[layers, positioned] = (model, onnx_path, meta)
    return out


def test_the_metadata_records_the_model_size_position_and_keys(exported):
    _, path, meta = exported[2, True]
    assert {k: meta[k] for k in ("layers", "units", "metric_position", "positions", "transpose")} == \
        {"layers": 2, "units": 16, "metric_position": True, "positions": METRIC_POSITIONS, "transpose": "all-keys"}
    assert meta["key_normalisation"].startswith("none: trained in all 12 keys")
    assert meta["export"]["ops"] == ["Gather", "Gather", "Add", "Split", "Split", "LSTM", "LSTM", "Concat", "Concat",
                                     "Reshape", "Gemm"]
    assert meta["export"]["parity_max_abs_diff"] <= PARITY_TOLERANCE
    # the sidecar and the embedded copy agree, and the daemon reads them
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    info = load_info(path)
    assert info.raw["layers"] == 2 and info.raw["metric_position"] is True
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == \
        [("token", [1]), ("position", [1]), ("h", [2, 1, 16]), ("c", [2, 1, 16])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == \
        [("logits", [1, len(VOCAB)]), ("h_out", [2, 1, 16]), ("c_out", [2, 1, 16])]
    _, path3, meta3 = exported[3, False]
    assert (meta3["layers"], meta3["metric_position"], meta3["transpose"]) == (3, False, "c")
    assert "positions" not in meta3
    assert [i.name for i in ort.InferenceSession(str(path3), providers=["CPUExecutionProvider"]).get_inputs()] == \
        ["token", "h", "c"]


@pytest.mark.parametrize(("key", "grid"), [((2, True), (0, 16)), ((2, True), (9, 12)), ((3, False), (0, 16))])
def test_the_daemons_generator_steps_like_the_keras_sequence_model(exported, key, grid):
    model, path, _ = exported[key]
    gen = LstmGenerator.load(str(path))
    assert (gen.layers, gen.metric_position) == key
    position, bar = grid
    tokens = np.random.default_rng(1).integers(1, len(VOCAB), 120).astype(np.int32)
    gen.reset(position, bar)
    stepped = [gen.next_logits.copy()]
    for t in tokens[:-1]:
        stepped.append(gen.feed(int(t)).copy())
    # Keras sees the whole stream: 64 delimiters, then the tokens; each input with the position
    # of the step after it, the delimiters continuing the melody's grid backwards
    stream = np.concatenate([np.zeros(64, np.int32), tokens[:-1]])[None]
    # (jamd.tokens' contract: input t predicts stream step t - 63, the melody's step 0 lying at `position`)
    positions = bar_positions(stream.shape[1], bar, pickup_steps=-position, start=-63)[None]
    assert positions[0, 63] == position and positions[0, 62] == (position - 1) % bar
    probs = np.asarray(model([stream, positions] if key[1] else stream, training=False))[0, 63:]
    ours = np.exp(np.array(stepped) - np.array(stepped).max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    assert probs.shape == ours.shape == (120, len(VOCAB))
    assert np.abs(ours - probs).max() < PARITY_TOLERANCE


def test_the_position_changes_what_the_model_predicts(exported):
    _, path, _ = exported[2, True]
    gen = LstmGenerator.load(str(path))
    gen.reset(0, 16)
    on_the_downbeat = gen.next_logits.copy()
    gen.reset(7, 16)
    assert np.abs(gen.next_logits - on_the_downbeat).max() > 1e-3
