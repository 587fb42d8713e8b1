"""Exporting the trained LSTM to a single-step ONNX model, with tf2onnx.

The step model has inputs ``token [1] int32``, ``h`` and ``c`` (``[1, 1,
units]``, the LSTM op's own state layout) and outputs ``logits [1, vocab]``,
``h_out`` and ``c_out``.  tf2onnx rewrites the Keras LSTM into ONNX's ``LSTM``
op; the export refuses a graph that still contains a ``Loop`` or ``Scan``,
since those would cost a loop per step.  tf2onnx's 13 nodes around that op
(a one-hot, unsqueezes, squeezes, a slice, the output layer) are then rebuilt
as four, ``Gather -> LSTM -> Reshape -> Gemm`` (`lean_step_graph`): the
daemon calls the model once per 16th note, and every node, and the LSTM's
input GEMM, cost time per call.

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
from jamd.inference.model_store import METADATA_KEY
from jamd.inference.sampling import softmax
from jamd.tokens import METRIC_POSITIONS

log = logging.getLogger(__name__)

OPSET = 17
PARITY_STEPS = 200
PARITY_TOLERANCE = 1e-4
OUTPUT_NAMES = ("logits", "h_out", "c_out")


class ExportError(JamdError):
    exit_code = 3


def rename_outputs(model, new_names) -> None:
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


def static_shape(shape) -> list[int]:
    """A session input's shape with symbolic (batch) dimensions as 1."""
    return [d if isinstance(d, int) else 1 for d in shape]


def lean_step_graph(model, layers: int = 1, positioned: bool = False) -> Any:
    """tf2onnx's step graph -> ``Gather -> LSTM -> Reshape -> Gemm``, batch 1.

    The same LSTM op with the same weights; what changes is around it:

    * The one-hot input times the input weights, plus both biases, is one
      column of ``W + b`` per token, so a Gather picks that column and feeds it
      to the LSTM as its input weights, with a constant input of 1.0.  This
      drops tf2onnx's Cast/OneHot/Reshape, the LSTM's 41x1024 input GEMM and
      its bias pass.  It is exact only for one token per step, hence batch 1.
    * ``h``/``c`` keep the LSTM op's own layout ``[1, 1, units]``, so no
      Unsqueeze/Squeeze goes around the op, and ``Y`` (the full sequence
      output, tf2onnx's Squeeze/Slice/Squeeze chain) is not produced at all.
    * The output layer is one Gemm.

    Together ~25% off the bare call (109 -> 80 µs CPU per call in one A/B run
    on the project's 2-core VM); what remains is mostly ONNX Runtime's LSTM
    kernel, whose 1 MB recurrent matrix does not fit the 1 MB L2 cache.

    With `positioned` (issue 16's metric position) the first layer's input
    weights are the token's column plus the position's (a second Gather and an
    Add); with `layers` > 1 the next LSTM ops read the one before's ``h_out``
    as their input, with their own weights as tf2onnx wrote them, and ``h``/``c``
    are the layers' states stacked, ``[layers, 1, units]`` (Split in, Concat out).
    A one-layer model without position is built exactly as before.
    """
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    graph = model.graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    # graph order is topological, so the LSTM ops come layer by layer
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    if len(lstms) != layers:
        what = "one LSTM op" if layers == 1 else f"{layers} LSTM ops"
        raise ExportError(f"expected {what} in tf2onnx's graph, found {len(lstms)}")
    cells = [_lstm_cell(n, init) for n in lstms]
    W, R, bias, attrs = cells[0]
    units = R.shape[2]
    vocab_size = W.shape[2] - (METRIC_POSITIONS if positioned else 0)
    if vocab_size < 1 or any(c[1].shape[2] != units or c[0].shape[2] != units for c in cells[1:]):
        raise ExportError("tf2onnx's LSTM ops do not have the expected input sizes "
                          f"({'token + position' if positioned else 'token'} for the first, {units} for the next)")
    kernel, dense_bias = _output_layer(producer, init)
    if kernel is None or dense_bias is None or kernel.shape != (units, vocab_size) or dense_bias.shape != (vocab_size,):
        raise ExportError("tf2onnx's output layer is not the expected MatMul + Add (or Gemm) over the LSTM output")

    # gates for token t = W[:, t] + Wb + Rb + R h: W's columns with the bias folded in
    token_columns = (W[0][:, :vocab_size] + (bias[: 4 * units] + bias[4 * units :])[:, None]).T[:, :, None]
    consts = {"token_input_weights": np.ascontiguousarray(token_columns, dtype=np.float32)}  # [vocab, 4 units, 1]
    nodes = [helper.make_node("Gather", ["token_input_weights", "token"], ["input_weights"], axis=0)]
    if positioned:
        # the position's one-hot times W: its column, added to the token's (no bias: that is folded in once)
        consts["position_input_weights"] = np.ascontiguousarray(W[0][:, vocab_size:].T[:, :, None], np.float32)
        nodes[0].output[0] = "token_weights"
        nodes += [helper.make_node("Gather", ["position_input_weights", "position"], ["position_weights"], axis=0),
                  helper.make_node("Add", ["token_weights", "position_weights"], ["input_weights"])]
    consts["one"] = np.ones((1, 1, 1), np.float32)
    consts["recurrent_weights"] = R.astype(np.float32)
    if layers == 1:
        h_in, c_in, h_out, c_out = ["h"], ["c"], ["h_out"], ["c_out"]
    else:
        h_in, c_in = [f"h_{i + 1}" for i in range(layers)], [f"c_{i + 1}" for i in range(layers)]
        h_out, c_out = [f"h_out_{i + 1}" for i in range(layers)], [f"c_out_{i + 1}" for i in range(layers)]
        nodes += [helper.make_node("Split", ["h"], h_in, axis=0), helper.make_node("Split", ["c"], c_in, axis=0)]
    lstm_attrs = [{k: v for k, v in cell[3].items() if k != "layout"} for cell in cells]
    nodes.append(helper.make_node("LSTM", ["one", "input_weights", "recurrent_weights", "", "", h_in[0], c_in[0]],
                                  ["", h_out[0], c_out[0]], name="lstm", **lstm_attrs[0]))
    for i, (Wi, Ri, bi, _) in enumerate(cells[1:], 1):
        consts[f"input_weights_{i + 1}"] = Wi.astype(np.float32)
        consts[f"recurrent_weights_{i + 1}"] = Ri.astype(np.float32)
        consts[f"bias_{i + 1}"] = bi[None, :].astype(np.float32)
        # Y_h [1, 1, units] is also the next op's X [seq 1, batch 1, units]
        nodes.append(helper.make_node(
            "LSTM", [h_out[i - 1], f"input_weights_{i + 1}", f"recurrent_weights_{i + 1}", f"bias_{i + 1}", "",
                     h_in[i], c_in[i]], ["", h_out[i], c_out[i]], name=f"lstm_{i + 1}", **lstm_attrs[i]))
    if layers > 1:
        nodes += [helper.make_node("Concat", h_out, ["h_out"], axis=0),
                  helper.make_node("Concat", c_out, ["c_out"], axis=0)]
    consts["flat_state"] = np.array([1, units], np.int64)
    consts["output_kernel"] = kernel.astype(np.float32)
    consts["output_bias"] = dense_bias.astype(np.float32)
    nodes += [
        helper.make_node("Reshape", [h_out[-1], "flat_state"], ["h_flat"]),
        helper.make_node("Gemm", ["h_flat", "output_kernel", "output_bias"], ["logits"]),
    ]
    state = [layers, 1, units]
    inputs = [helper.make_tensor_value_info("token", TP.INT32, [1])]
    if positioned:
        inputs.append(helper.make_tensor_value_info("position", TP.INT32, [1]))
    inputs += [helper.make_tensor_value_info("h", TP.FLOAT, state),
               helper.make_tensor_value_info("c", TP.FLOAT, state)]
    outputs = [helper.make_tensor_value_info("logits", TP.FLOAT, [1, vocab_size]),
               helper.make_tensor_value_info("h_out", TP.FLOAT, state),
               helper.make_tensor_value_info("c_out", TP.FLOAT, state)]
    lean = helper.make_graph(nodes, graph.name or "lstm_step", inputs, outputs,
                             [numpy_helper.from_array(v, k) for k, v in consts.items()])
    out = helper.make_model(lean, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=model.ir_version,
                            producer_name=model.producer_name, producer_version=model.producer_version)
    onnx.checker.check_model(out, full_check=True)
    return out


def _lstm_cell(node, init: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """One tf2onnx LSTM op's (W [1, 4u, in], R [1, 4u, u], bias [8u], attributes); refused unless it is
    a forward LSTM with constant weights and no sequence lengths or peepholes."""
    from onnx import helper

    args = list(node.input) + [""] * (8 - len(node.input))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if (args[1] not in init or args[2] not in init or (args[3] and args[3] not in init) or args[4] or args[7]
            or attrs.get("direction", b"forward") != b"forward" or attrs.get("layout", 0) != 0):
        raise ExportError("tf2onnx's LSTM op is not the expected forward LSTM with constant weights")
    W, R = init[args[1]], init[args[2]]
    units = R.shape[2]
    bias = init[args[3]][0] if args[3] else np.zeros(8 * units, np.float32)
    return W, R, bias, attrs


def _output_layer(producer: dict, init: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The output layer's (kernel [units, vocab], bias [vocab]): Add(MatMul(y, kernel), bias) or Gemm."""
    from onnx import helper

    last = producer.get("logits")
    kernel = dense_bias = None
    if last is not None and last.op_type == "Add":
        mm_out, b_name = (last.input[0], last.input[1]) if last.input[1] in init else (last.input[1], last.input[0])
        mm = producer.get(mm_out)
        if mm is not None and mm.op_type == "MatMul" and mm.input[1] in init and b_name in init:
            kernel, dense_bias = init[mm.input[1]], init[b_name]
    elif last is not None and last.op_type == "MatMul" and last.input[1] in init:
        # an all-zero bias (an untrained model) is optimised away by tf2onnx
        kernel = init[last.input[1]]
        dense_bias = np.zeros(kernel.shape[1], kernel.dtype)
    elif last is not None and last.op_type == "Gemm" and len(last.input) == 3 and last.input[1] in init:
        g = {a.name: helper.get_attribute_value(a) for a in last.attribute}
        if g.get("alpha", 1.0) == 1.0 and g.get("beta", 1.0) == 1.0 and not g.get("transA", 0):
            kernel = init[last.input[1]].T if g.get("transB", 0) else init[last.input[1]]
            dense_bias = init.get(last.input[2])
    return kernel, dense_bias


def convert(step_model) -> Any:
    """Keras step model (`build_step_model`) -> ONNX ModelProto, checked for LSTM ops.

    Outputs are renamed logits, h_out, c_out, h_out_2, c_out_2, ... (the step model's order).
    """
    import tensorflow as tf
    import tf2onnx

    from jamd.training.lstm_model import state_names

    # tf2onnx logs every optimisation pass at INFO; only its warnings matter here
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)

    spec = []
    for tensor in step_model.inputs:
        name = tensor.name.split(":")[0]
        if name in ("token", "position"):
            spec.append(tf.TensorSpec((None, 1), tf.int32, name=name))
        else:
            spec.append(tf.TensorSpec((None, tensor.shape[-1]), tf.float32, name=name))
    layers = (len(step_model.outputs) - 1) // 2
    names = ["logits"] + [n for i in range(layers) for n in state_names(i)[2:]]
    onnx_model, _ = tf2onnx.convert.from_keras(step_model, input_signature=tuple(spec), opset=OPSET)
    rename_outputs(onnx_model, names)
    ops = {n.op_type for n in onnx_model.graph.node}
    if "LSTM" not in ops or ops & {"Loop", "Scan"}:
        raise ExportError(f"tf2onnx did not produce a single LSTM op (ops: {', '.join(sorted(ops))})")
    return onnx_model


def tf2onnx_ops(onnx_model) -> list[str]:
    return sorted({n.op_type for n in onnx_model.graph.node})


def parity(onnx_path: Path, sequence_model, tokens: np.ndarray, positions: np.ndarray | None = None) -> float:
    """Largest |p_onnx - p_keras| when stepping ONNX through `tokens` from zero state.

    `positions` (same length, 0..METRIC_POSITIONS-1): what a model with the metric-position
    input reads beside each token (the bar position of the step it predicts); ignored otherwise.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shapes = {i.name: static_shape(i.shape) for i in session.get_inputs()}
    positioned = "position" in shapes
    if positioned and positions is None:
        raise ExportError("parity: the model reads a metric position but no positions were given")
    h = np.zeros(shapes["h"], np.float32)
    c = np.zeros(shapes["c"], np.float32)
    onnx_probs = []
    for i, t in enumerate(tokens):
        feeds = {"token": np.full(shapes["token"], t, np.int32), "h": h, "c": c}
        if positioned:
            feeds["position"] = np.full(shapes["position"], positions[i], np.int32)
        logits, h, c = session.run(list(OUTPUT_NAMES), feeds)
        onnx_probs.append(softmax(logits.reshape(-1)))
    x = tokens[None, :].astype(np.int32)
    keras_in = [x, np.asarray(positions)[None, : len(tokens)].astype(np.int32)] if positioned else x
    keras_probs = np.asarray(sequence_model(keras_in, training=False))[0]
    return float(np.abs(np.array(onnx_probs) - keras_probs).max())


# -- shared by the LSTM's and the GANs' exports ----------------------------------

def load_checkpoint(checkpoint: Path, missing: str):
    """The Keras model saved at `checkpoint`; `missing` finishes the one-line error when there is none."""
    import keras

    from jamd.training.lstm_model import OneHot

    if not checkpoint.is_file():
        raise ExportError(f"{checkpoint}: {missing}")
    try:
        return keras.models.load_model(checkpoint, custom_objects={"OneHot": OneHot})
    except Exception as exc:  # zipfile, h5py and Keras each raise their own
        first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ""
        raise ExportError(f"{checkpoint}: damaged checkpoint ({type(exc).__name__}: {first})") from None


def check_vocabulary(checkpoint: Path, what: str, outputs: int, metadata: dict[str, Any], per: str = "") -> None:
    """`what` ("model", "generator") must have as many `outputs` (`per` step...) as the vocabulary has symbols."""
    symbols = len(metadata.get("vocabulary", []))
    if symbols != outputs:
        raise ExportError(f"{checkpoint}: {what} has {outputs} outputs{per} but the vocabulary has {symbols} symbols")


def parity_checked(onnx_model, out: Path, measure, over: str) -> float:
    """Save `onnx_model` to a scratch file, `measure(path)` its largest difference from Keras,
    and refuse it (nothing written at `out`) beyond `PARITY_TOLERANCE`; `over` says over what."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / out.name
        onnx.save(onnx_model, str(candidate))
        err = measure(candidate)
    if not err <= PARITY_TOLERANCE:
        raise ExportError(f"export parity failed: ONNX and Keras differ by {err:.3g} over {over} "
                          f"(tolerance {PARITY_TOLERANCE:g}); nothing written")
    return err


def save_with_metadata(onnx_model, out: Path, meta: dict[str, Any]) -> None:
    """Write the model with `meta` embedded (under `METADATA_KEY`) and as the .json sidecar beside it."""
    import onnx

    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    from jamd.training.checkpoints import atomic_save, atomic_write

    # each file whole or not at all; a kill between the two leaves a sidecar that disagrees
    # with the model's embedded copy, which loading refuses
    atomic_save(out, lambda tmp: onnx.save(onnx_model, str(tmp)))
    atomic_write(out.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")


KEY_NORMALISATION = {
    "c": "major tunes to C major, minor tunes to A minor (smallest shift, -6..+5)",
    "all-keys": "none: trained in all 12 keys (each window moved to a random key); the daemon plays in the "
                "player's own key",
}


def export_lstm(checkpoint: str | Path, out: str | Path, metadata: dict[str, Any],
                parity_tokens: np.ndarray | None = None, parity_positions: np.ndarray | None = None
                ) -> dict[str, Any]:
    """Export `checkpoint` (a .keras sequence model) to `out` (.onnx) plus its .json sidecar.

    The model's layers and whether it reads the metric position come from the checkpoint;
    its key handling from ``metadata["training"]["transpose"]`` ("c" when absent).
    `parity_positions`: the position read beside each parity token (default: a 4/4 bar
    grid from a downbeat).  Raises `ExportError` (nothing written) when ONNX and Keras
    differ by more than `PARITY_TOLERANCE`.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from jamd.tokens import bar_positions
    from jamd.training.lstm_model import build_step_model, has_position, stacked_layers

    checkpoint, out = Path(checkpoint), Path(out)
    model = load_checkpoint(checkpoint, "checkpoint not found (train first: jamd train)")
    layers, positioned = stacked_layers(model), has_position(model)
    step = build_step_model(model)
    vocab_size = model.get_layer("output").units
    check_vocabulary(checkpoint, "model", vocab_size, metadata)
    transpose = (metadata.get("training") or {}).get("transpose", "c")
    if transpose not in KEY_NORMALISATION:
        raise ExportError(f"{checkpoint}: training.transpose is {transpose!r}; it must be one of "
                          f"{', '.join(KEY_NORMALISATION)}")
    converted = convert(step)
    onnx_model = lean_step_graph(converted, layers, positioned)
    state = "[1, 1, units]" if layers == 1 else "[layers, 1, units]"
    inputs = {"token": "int32 [1]"}
    if positioned:
        inputs["position"] = (f"int32 [1], 0..{METRIC_POSITIONS - 1}: the bar position (16ths after the downbeat) "
                              "of the step the logits predict")
    meta = {
        "kind": "lstm-step",
        "units": step.get_layer("lstm").units,
        "layers": layers,
        "metric_position": positioned,
        **({"positions": METRIC_POSITIONS} if positioned else {}),
        "transpose": transpose,
        "step_quarter_length": 0.25,
        "start_symbols": 64,
        "key_normalisation": KEY_NORMALISATION[transpose],
        "inputs": {**inputs, "h": f"float32 {state}", "c": f"float32 {state}"},
        "outputs": {"logits": "float32 [1, vocab]", "h_out": f"float32 {state}", "c_out": f"float32 {state}"},
        **metadata,
    }
    if parity_tokens is None:
        parity_tokens = np.random.default_rng(0).integers(0, vocab_size, PARITY_STEPS)
    parity_tokens = np.asarray(parity_tokens[:PARITY_STEPS])
    if parity_positions is None:
        parity_positions = bar_positions(len(parity_tokens), 16, start=1)
    parity_positions = np.asarray(parity_positions[:PARITY_STEPS])
    err = parity_checked(onnx_model, out, lambda path: parity(path, model, parity_tokens, parity_positions),
                         f"{len(parity_tokens)} steps")
    graph = ("batch 1; Gather picks the token's column of the LSTM input weights (bias folded in) as the LSTM's W "
             "over a constant input 1.0; state in the LSTM op's layout; output layer as one Gemm")
    if positioned:
        graph += "; the position's column is gathered and added to the token's"
    if layers > 1:
        graph += f"; {layers} LSTM ops, each next one reading the one before's h_out, states stacked on axis 0"
    meta["export"] = {"opset": OPSET, "parity_steps": int(len(parity_tokens)), "parity_max_abs_diff": err,
                      "tf2onnx_ops": tf2onnx_ops(converted),
                      "ops": [n.op_type for n in onnx_model.graph.node], "graph": graph}
    save_with_metadata(onnx_model, out, meta)
    log.info("exported %s (parity %.2g over %d steps, ops: %s)", out, err, len(parity_tokens),
             ", ".join(meta["export"]["ops"]))
    return meta
