"""Exporting a GAN run's generator to ONNX, with a parity check and metadata.

The ONNX graph has inputs ``z float32 [batch, latent]`` (and, for the
conditional variant, ``prev int32 [batch, steps]``), the generator in
inference mode (BatchNorm's moving statistics, no Gaussian noise).  A flat
generator (the seed's) outputs ``logits float32 [batch, steps, vocab]`` and
the daemon draws each step; an autoregressive one (`AutoregressiveBar`)
also takes ``noise float32 [batch, steps, vocab]`` (temperature x Gumbel
noise, with the mask on it) and draws the steps itself: outputs
``ids int64 [batch, steps]`` and the logits each step was drawn from.  The
export checks itself like the LSTM's: on fixed z (and real previous bars,
and fixed noise) the ONNX and Keras per-step probabilities must agree to
1e-4, and an autoregressive model's drawn bars must be the same bars, or
nothing is written.

Metadata (kind ``gan-bar`` or ``cgan-bar``, vocabulary, steps per bar, z
size, key normalisation, corpus and training figures) goes into the ONNX
file under ``jamd`` and into the ``.json`` sidecar beside it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from jamd.inference.gan import CGAN_KIND, GAN_KIND
from jamd.inference.sampling import softmax
from jamd.tokens import DELIMITER

from .lstm_onnx import OPSET, check_vocabulary, load_checkpoint, parity_checked, rename_outputs, save_with_metadata

log = logging.getLogger(__name__)

PARITY_BATCH = 64


def is_autoregressive(generator) -> bool:
    """Whether the Keras generator draws its own steps (it takes a ``noise`` input)."""
    return any(i.name == "noise" for i in generator.inputs)


def _shape(generator) -> tuple[int, int]:
    """(steps, vocab) of a generator's logits (its last output, for either head)."""
    logits = generator.outputs[-1]
    return int(logits.shape[1]), int(logits.shape[2])


def convert(generator, conditional: bool) -> Any:
    """Keras generator -> ONNX ModelProto: inputs z[, prev] -> logits (flat head), or
    z[, prev], noise -> ids, logits (autoregressive head)."""
    import keras
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    latent = generator.inputs[0].shape[-1]
    steps, vocab_size = _shape(generator)
    spec = [tf.TensorSpec((None, latent), tf.float32, name="z")]
    if conditional:
        spec.append(tf.TensorSpec((None, steps), tf.int32, name="prev"))
    names: tuple[str, ...] = ("logits",)
    if is_autoregressive(generator):
        spec.append(tf.TensorSpec((None, steps, vocab_size), tf.float32, name="noise"))
        # the one-hot bar is what the critic saw in training; the daemon needs the ids
        generator = keras.Model(generator.inputs, generator.outputs[1:], name="generator")
        names = ("ids", "logits")
    onnx_model, _ = tf2onnx.convert.from_keras(generator, input_signature=tuple(spec), opset=OPSET)
    rename_outputs(onnx_model, names)
    return onnx_model


def parity(onnx_path: Path, generator, z: np.ndarray, prev: np.ndarray | None,
           noise: np.ndarray | None = None) -> float:
    """Largest |p_onnx - p_keras| over every step of a batch of bars (an autoregressive
    generator, drawing with `noise`, must also draw the same bars: else 1.0)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {"z": z.astype(np.float32)}
    inputs = [z]
    if prev is not None:
        feeds["prev"] = prev.astype(np.int32)
        inputs.append(prev.astype(np.int32))
    if noise is None:
        onnx_logits = session.run(["logits"], feeds)[0]
        keras_logits = np.asarray(generator(inputs, training=False))
        return float(np.abs(softmax(onnx_logits) - softmax(keras_logits)).max())
    feeds["noise"] = noise.astype(np.float32)
    onnx_ids, onnx_logits = session.run(["ids", "logits"], feeds)
    _, keras_ids, keras_logits = (np.asarray(a) for a in generator([*inputs, noise], training=False))
    if not np.array_equal(onnx_ids, keras_ids):
        log.error("export parity: ONNX and Keras drew different bars in %d of %d rows",
                  int((onnx_ids != keras_ids).any(axis=1).sum()), len(onnx_ids))
        return 1.0
    return float(np.abs(softmax(onnx_logits) - softmax(keras_logits)).max())


def export_gan(checkpoint: str | Path, out: str | Path, metadata: dict[str, Any],
               parity_prev: np.ndarray | None = None) -> dict[str, Any]:
    """Export `checkpoint` (a generator .keras) to `out` (.onnx) plus its .json sidecar."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    checkpoint, out = Path(checkpoint), Path(out)
    import jamd.training.gan_models  # noqa: F401  (registers the generator's own layers for loading)

    generator = load_checkpoint(checkpoint, "generator checkpoint not found (train first: jamd train --model wgan)")
    autoregressive = is_autoregressive(generator)
    conditional = any(i.name == "prev" for i in generator.inputs)
    latent = generator.inputs[0].shape[-1]
    steps, vocab_size = _shape(generator)
    check_vocabulary(checkpoint, "generator", vocab_size, metadata, " per step")
    onnx_model = convert(generator, conditional)
    meta = {
        "kind": CGAN_KIND if conditional else GAN_KIND,
        "steps_per_bar": int(steps),
        "latent_dim": int(latent),
        "z": "standard normal, float32 [batch, latent_dim]",
        "step_quarter_length": 0.25,
        "key_normalisation": "major tunes to C major, minor tunes to A minor (smallest shift, -6..+5)",
        "inputs": {"z": "float32 [batch, latent_dim]",
                   **({"prev": "int32 [batch, steps_per_bar]: the bar before, as vocabulary ids"}
                      if conditional else {}),
                   **({"noise": "float32 [batch, steps_per_bar, vocab]: temperature x Gumbel(0, 1) noise "
                                "(0: argmax), -1e9 where a symbol is masked"} if autoregressive else {})},
        "outputs": ({"ids": "int64 [batch, steps_per_bar]: the drawn bar, each step drawn after the ones before",
                     "logits": "float32 [batch, steps_per_bar, vocab]: each step's logits, given the steps drawn"}
                    if autoregressive else
                    {"logits": "float32 [batch, steps_per_bar, vocab]: one distribution per 16th step"}),
        "head": "autoregressive" if autoregressive else "flat",
        **metadata,
    }
    rng = np.random.default_rng(0)
    z = rng.standard_normal((PARITY_BATCH, latent)).astype(np.float32)
    prev = None
    if conditional:
        if parity_prev is None:
            parity_prev = rng.integers(0, vocab_size, (PARITY_BATCH, steps))
        prev = np.resize(np.asarray(parity_prev), (PARITY_BATCH, steps))  # repeats rows when there are fewer
    noise = None
    if autoregressive:  # temperature-1 draws, with the delimiter masked as the daemon masks it
        from jamd.inference.gan import draw_noise

        mask = np.array([s != DELIMITER for s in metadata["vocabulary"]])
        noise = draw_noise((PARITY_BATCH, steps, vocab_size), 1.0, rng, mask)
    err = parity_checked(onnx_model, out, lambda path: parity(path, generator, z, prev, noise),
                         f"{PARITY_BATCH} bars")
    meta["export"] = {"opset": OPSET, "parity_bars": PARITY_BATCH, "parity_max_abs_diff": err,
                      "tf2onnx_ops": sorted({n.op_type for n in onnx_model.graph.node})}
    save_with_metadata(onnx_model, out, meta)
    log.info("exported %s (%s, parity %.2g over %d bars, %.1f MB)", out, meta["kind"], err, PARITY_BATCH,
             out.stat().st_size / 1e6)
    return meta


def export_gan_run(run_dir: Path, out: Path, cfg, figures: dict[str, Any] | None = None,
                   which: str = "best", selection: dict[str, Any] | None = None,
                   explicit: Collection[str] = ()) -> dict[str, Any]:
    """Export a GAN training run folder's generator, with its corpus and figures: `which` is
    ``best`` (the monitor's best adversarial step), ``last`` or ``pretrained`` (the
    maximum-likelihood pretraining's generator, before any adversarial step).  `selection`
    (fields of `jamd.inference.gan_selection.Selection`) goes into the metadata: how the daemon chooses its bars.
    The corpus: `export_run.run_corpus` (`explicit`: the config keys the command line set); without
    one, a cgan's parity check conditions on bars drawn from the vocabulary."""
    from jamd.export.export_run import corpus_metadata, read_run, run_corpus
    from jamd.training.gan_data import extract_bars

    state, figures = read_run(run_dir, figures)
    corpus, cfg, own = run_corpus(cfg, state, run_dir, explicit)
    gan_cfg = state.get("config", {}).get("gan", {})
    val_idx = corpus.split()[1] if corpus is not None else []
    parity_prev = None
    if state["variant"] == "cgan" and val_idx:
        # real previous bars from validation tunes drive the conditional parity check
        parity_prev = extract_bars(corpus, val_idx, int(gan_cfg.get("steps_per_bar", 16))).prev
    metadata = {
        "variant": state["variant"],
        "vocabulary": state["vocabulary"],
        "corpus": {**corpus_metadata(state, corpus if own else None, cfg), "bars": state.get("bars", {})},
        "training": {**gan_cfg, "figures": figures or {}},
    }
    step = {"best": (state.get("best") or {}).get("step"), "last": state.get("step"),
            "pretrained": (state.get("pretrained") or {}).get("step")}[which]
    metadata["generator"] = {"which": which, "step": step}
    if selection:
        metadata["selection"] = dict(selection)
    return export_gan(run_dir / f"{which}_generator.keras", out, metadata, parity_prev)
