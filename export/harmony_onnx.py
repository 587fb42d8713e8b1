"""Exporting the trained harmony LSTM to its one-beat ONNX step model, with tf2onnx.

The step model (`jamd.training.harmony_model.build_step_model`) is converted
at opset 17 with inputs ``x [1, 117]``, ``h`` and ``c`` (``[1, units]``) and
its outputs renamed to the contract in `jamd.music.chords`: ``chord_logits``,
``bass_logits``, ``melody_logits``, ``h_out``, ``c_out``.  tf2onnx turns the
Keras LSTM into ONNX's ``LSTM`` op; a graph with a ``Loop`` or ``Scan`` is
refused.  The graph is left as tf2onnx writes it (the LSTM's lean-graph
rewrite is not needed: one call per beat, not per 16th).

The export checks itself: the ONNX model, stepped with explicit state over a
real validation chorale's beats (lookahead on every other beat), must give
the Keras sequence model's chord, bass and melody probabilities to 1e-4, or
the export fails (`ExportError`) and nothing is written.  Metadata (kind
``harmony-step``, units, step_features, the chord table, corpus report,
training figures) goes to the .json sidecar and into the model under
``jamd``, as for the LSTM.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import DataError
from jamd.inference.harmony import INPUTS, KIND, OUTPUTS
from jamd.inference.sampling import softmax
from jamd.music import chords

from .lstm_onnx import (
    OPSET,
    ExportError,
    load_checkpoint,
    parity_checked,
    rename_outputs,
    save_with_metadata,
    static_shape,
    tf2onnx_ops,
)

log = logging.getLogger(__name__)

HEADS = ("chord", "bass", "melody")


def convert(step_model) -> Any:
    """Keras step model -> ONNX ModelProto with the contract's names, checked for the LSTM op."""
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    units = step_model.get_layer("lstm").units
    spec = (tf.TensorSpec((None, chords.STEP_FEATURES), tf.float32, name=INPUTS[0]),
            tf.TensorSpec((None, units), tf.float32, name=INPUTS[1]),
            tf.TensorSpec((None, units), tf.float32, name=INPUTS[2]))
    onnx_model, _ = tf2onnx.convert.from_keras(step_model, input_signature=spec, opset=OPSET)
    rename_outputs(onnx_model, OUTPUTS)
    names = [i.name for i in onnx_model.graph.input]
    if names != INPUTS:
        raise ExportError(f"tf2onnx named the inputs {names}, not {INPUTS}")
    ops = {n.op_type for n in onnx_model.graph.node}
    if "LSTM" not in ops or ops & {"Loop", "Scan"}:
        raise ExportError(f"tf2onnx did not produce a single LSTM op (ops: {', '.join(sorted(ops))})")
    return onnx_model


def parity(onnx_path: Path, sequence_model, x: np.ndarray) -> float:
    """Largest |p_onnx - p_keras| over the three heads, stepping ONNX through beats `x` [n, 117]
    from zero state."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    state_shape = static_shape(session.get_inputs()[1].shape)
    h = np.zeros(state_shape, np.float32)
    c = np.zeros(state_shape, np.float32)
    stepped: dict[str, list[np.ndarray]] = {k: [] for k in HEADS}
    for row in x:
        *logits, h, c = session.run(OUTPUTS, {"x": row[None, :].astype(np.float32), "h": h, "c": c})
        for k, lg in zip(HEADS, logits, strict=True):
            stepped[k].append(softmax(lg.reshape(-1)))
    keras_p = sequence_model(x[None].astype(np.float32), training=False)
    return max(float(np.abs(np.array(stepped[k]) - np.asarray(keras_p[k])[0]).max()) for k in HEADS)


def export_harmony(checkpoint: str | Path, out: str | Path, metadata: dict[str, Any],
                   parity_x: np.ndarray) -> dict[str, Any]:
    """Export `checkpoint` (the .keras sequence model) to `out` (.onnx) and its .json sidecar;
    `parity_x` [n, 117]: the beats the parity check steps through."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from jamd.training.harmony_model import build_step_model

    checkpoint, out = Path(checkpoint), Path(out)
    model = load_checkpoint(checkpoint, "checkpoint not found (train first: jamd train --model harmony)")
    try:
        step = build_step_model(model)
    except ValueError as exc:  # a checkpoint of another model: no such layer
        raise ExportError(f"{checkpoint}: not a harmony model ({str(exc).splitlines()[0][:80]})") from None
    onnx_model = convert(step)
    units = step.get_layer("lstm").units
    meta = {
        "kind": KIND,
        "units": units,
        "step_features": chords.STEP_FEATURES,
        "chords": chords.chord_table(),
        "beat_quarter_length": 1.0,
        "key_normalisation": "C major / A minor (major tunes to C major, minor tunes to A minor, "
                             "smallest shift, -6..+5)",
        "inputs": {"x": f"float32 [1, {chords.STEP_FEATURES}] (jamd.music.chords.step_input)",
                   "h": "float32 [1, units]", "c": "float32 [1, units]"},
        "outputs": {"chord_logits": f"float32 [1, {chords.N_CHORDS}]", "bass_logits": f"float32 [1, {chords.N_BASS}]",
                    "melody_logits": f"float32 [1, {chords.N_MELODY_CLASSES}]",
                    "h_out": "float32 [1, units]", "c_out": "float32 [1, units]"},
        **metadata,
    }
    parity_x = np.asarray(parity_x, np.float32)
    err = parity_checked(onnx_model, out, lambda path: parity(path, model, parity_x), f"{len(parity_x)} beats")
    meta["export"] = {"opset": OPSET, "parity_beats": int(len(parity_x)), "parity_max_abs_diff": err,
                      "ops": tf2onnx_ops(onnx_model)}
    save_with_metadata(onnx_model, out, meta)
    log.info("exported %s (parity %.2g over %d beats)", out, err, len(parity_x))
    return meta


def export_harmony_run(run_dir: Path, out: Path, cfg: Config, figures: dict[str, Any] | None = None) -> dict:
    """Export a `jamd train --model harmony` run folder's best checkpoint, with its corpus report and figures."""
    from jamd.training.harmony_data import beat_arrays, load_chorales

    state_path = run_dir / "state.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if figures is None and (run_dir / "figures.json").is_file():
            figures = json.loads((run_dir / "figures.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{run_dir}: not a finished harmony training run ({str(exc)[:80]})") from None
    corpus = load_chorales(cfg, progress=False)
    train_idx, val_idx = corpus.split()
    tune = corpus.tunes[(val_idx or train_idx)[0]]  # a real held-out chorale drives the parity check
    parity_x, *_ = beat_arrays(tune, np.arange(tune.n_beats) % 2 == 1)
    metadata = {
        "corpus": {"source": corpus.source, "stats": {k: v for k, v in corpus.stats.items() if k != "cache_file"},
                   "validation_fraction": cfg.corpus.validation_fraction, "split_seed": cfg.corpus.split_seed,
                   "parity_chorale": tune.name},
        "training": {**state.get("config", {}).get("harmony_training", {}), "figures": figures or {}},
    }
    return export_harmony(run_dir / "best.keras", out, metadata, parity_x)
