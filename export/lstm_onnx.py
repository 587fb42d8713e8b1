"""Exporting the trained LSTM to a single-step ONNX model, with tf2onnx.

The step model has inputs ``token [batch, 1] int32``, ``h`` and ``c`` and
outputs ``logits``, ``h_out`` and ``c_out``.  tf2onnx rewrites the Keras LSTM
into ONNX's ``LSTM`` op; the export refuses a graph that still contains a
``Loop`` or ``Scan``, since those would cost a loop per step.

The export checks itself: the ONNX model, stepped with explicit state, must
agree with the Keras sequence model to 1e-4 over a 200-step rollout, or the
export fails and nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jamd.errors import JamdError
from jamd.model_store import METADATA_KEY
from jamd.sampling import softmax

log = logging.getLogger(__name__)

OPSET = 17
PARITY_STEPS = 200
PARITY_TOLERANCE = 1e-4
OUTPUT_NAMES = ("logits", "h_out", "c_out")


class ExportError(JamdError):
    exit_code = 3


def _rename_outputs(model, new_names) -> None:
    mapping = {o.name: n for o, n in zip(model.graph.output, new_names, strict=True)}
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for o in model.graph.output:
        o.name = mapping[o.name]


def convert(step_model) -> Any:
    """Keras step model -> ONNX ModelProto, checked for the LSTM op."""
    import tensorflow as tf
    import tf2onnx

    # tf2onnx logs every optimisation pass at INFO; only its warnings matter here
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)

    units = step_model.get_layer("lstm").units
    spec = (
        tf.TensorSpec((None, 1), tf.int32, name="token"),
        tf.TensorSpec((None, units), tf.float32, name="h"),
        tf.TensorSpec((None, units), tf.float32, name="c"),
    )
    onnx_model, _ = tf2onnx.convert.from_keras(step_model, input_signature=spec, opset=OPSET)
    _rename_outputs(onnx_model, OUTPUT_NAMES)
    ops = {n.op_type for n in onnx_model.graph.node}
    if "LSTM" not in ops or ops & {"Loop", "Scan"}:
        raise ExportError(f"tf2onnx did not produce a single LSTM op (ops: {', '.join(sorted(ops))})")
    return onnx_model


def parity(onnx_path: Path, sequence_model, tokens: np.ndarray) -> float:
    """Largest |p_onnx - p_keras| when stepping ONNX through `tokens` from zero state."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    units = session.get_inputs()[1].shape[1]
    h = np.zeros((1, units), np.float32)
    c = np.zeros((1, units), np.float32)
    onnx_probs = []
    for t in tokens:
        logits, h, c = session.run(list(OUTPUT_NAMES), {"token": np.array([[t]], np.int32), "h": h, "c": c})
        onnx_probs.append(softmax(logits[0]))
    keras_probs = np.asarray(sequence_model(tokens[None, :].astype(np.int32), training=False))[0]
    return float(np.abs(np.array(onnx_probs) - keras_probs).max())


def export_lstm(checkpoint: str | Path, out: str | Path, metadata: dict[str, Any],
                parity_tokens: np.ndarray | None = None) -> dict[str, Any]:
    """Export `checkpoint` (a .keras sequence model) to `out` (.onnx) plus its .json sidecar."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnx

    from jamd.training.lstm_model import OneHot, build_step_model

    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: checkpoint not found (train first: jamd train)")
    model = keras.models.load_model(checkpoint, custom_objects={"OneHot": OneHot})
    step = build_step_model(model)
    vocab_size = model.get_layer("output").units
    if len(metadata.get("vocabulary", [])) != vocab_size:
        raise ExportError(f"{checkpoint}: model has {vocab_size} outputs but the vocabulary has "
                          f"{len(metadata.get('vocabulary', []))} symbols")
    onnx_model = convert(step)
    meta = {
        "kind": "lstm-step",
        "units": step.get_layer("lstm").units,
        "step_quarter_length": 0.25,
        "start_symbols": 64,
        "key_normalisation": "major tunes to C major, minor tunes to A minor (smallest shift, -6..+5)",
        "inputs": {"token": "int32 [batch, 1]", "h": "float32 [batch, units]", "c": "float32 [batch, units]"},
        "outputs": {"logits": "float32 [batch, vocab]", "h_out": "float32 [batch, units]",
                    "c_out": "float32 [batch, units]"},
        **metadata,
    }
    if parity_tokens is None:
        parity_tokens = np.random.default_rng(0).integers(0, vocab_size, PARITY_STEPS)
    parity_tokens = np.asarray(parity_tokens[:PARITY_STEPS])
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / out.name
        onnx.save(onnx_model, str(candidate))
        err = parity(candidate, model, parity_tokens)
        if not err <= PARITY_TOLERANCE:
            raise ExportError(f"export parity failed: ONNX and Keras differ by {err:.3g} over "
                              f"{len(parity_tokens)} steps (tolerance {PARITY_TOLERANCE:g}); nothing written")
    meta["export"] = {"opset": OPSET, "parity_steps": int(len(parity_tokens)), "parity_max_abs_diff": err,
                      "tf2onnx_ops": sorted({n.op_type for n in onnx_model.graph.node})}
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(out))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    log.info("exported %s (parity %.2g over %d steps, ops: %s)", out, err, len(parity_tokens),
             ", ".join(meta["export"]["tf2onnx_ops"]))
    return meta
