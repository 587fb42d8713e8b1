"""`jamd export`: turn a training run's best checkpoint into an ONNX model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UsageError
from . import options
from .paths import check_output_file, writing
from .train import require_training_extra

HELP = "export a trained run (LSTM step model or GAN generator) to ONNX with metadata, checked for parity"
EXAMPLE = "jamd export runs/lstm --out models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="training run folder: state.json and best.keras (LSTM) or best_generator.keras (GAN)")
    p.add_argument("--out", metavar="FILE.onnx", required=True, help="where to write the model (+ .json sidecar)")
    p.add_argument("--generator", choices=("best", "last", "pretrained"), default="best",
                   help="GAN runs: which generator to export: best (the monitor's best adversarial step, "
                        "default), last (the last checkpoint's) or pretrained (the maximum-likelihood "
                        "pretraining's alone, to compare with what the GAN made of it)")
    p.add_argument("--selection", metavar="JSON",
                   help="GAN runs: how the daemon chooses each bar among the model's samples, stored with "
                        "the model, e.g. '{\"candidates\": 8}' (fields of "
                        "jamd.inference.gan_selection.Selection; the rest keep the kind's defaults; docs/MODELS.md)")
    p.add_argument("--bar-repeat", metavar="JSON",
                   help="LSTM runs: let the model replay its own earlier bars at bar lines, stored with the "
                        "model, e.g. '{\"chance\": 0.15, \"lookback\": 8, \"min_logp\": -1.0}' (docs/MODELS.md "
                        "\"Bar repetition\"; model.bar_repeat overrides the chance when playing)")


def _json_option(text: str | None, flag: str, check: Callable[[Any], Any]) -> dict | None:
    """An option's JSON object, checked by `check` (which raises ModelError or TypeError naming the
    field); one `UsageError` line naming `flag` otherwise.  None: the option was not given."""
    if text is None:
        return None
    import json

    from ..errors import ModelError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc.msg}): {text!r}") from None
    try:
        check(value)
    except (ModelError, TypeError) as exc:
        raise UsageError(f"{flag}: {exc}") from None
    return None if value is None else dict(value)


def parse_bar_repeat(text: str | None) -> dict | None:
    """`--bar-repeat`'s JSON, checked as the model's metadata is (None: not given, or null: none)."""
    from ..inference.model_store import check_bar_repeat

    return _json_option(text, "--bar-repeat", lambda v: check_bar_repeat(v, None))


def parse_selection(text: str | None) -> dict | None:
    """`--selection`'s JSON as a checked mapping of `Selection` fields (None: not given)."""
    from ..inference.gan_selection import Selection

    return _json_option(text, "--selection", Selection.from_dict)


def run(args: argparse.Namespace, cfg: Config) -> int:
    # every cheap check first: a typo is answered before TensorFlow's seconds of import
    out = check_output_file(args.out, "--out")
    run_dir = Path(args.run_dir)
    bar_repeat = parse_bar_repeat(args.bar_repeat)
    # a GAN run (jamd train --model gan|wgan|cgan) saves its generator at every checkpoint
    gan_run = any((run_dir / f"{which}_generator.keras").is_file() for which in ("best", "last"))
    if gan_run:
        selection = parse_selection(args.selection)
        if bar_repeat is not None:
            raise UsageError("--bar-repeat: for LSTM runs; a GAN run chooses its bars with --selection")
    elif args.selection is not None and (run_dir / "state.json").is_file():  # else: not a run, said below
        raise UsageError("--selection: for GAN runs; an LSTM run repeats bars with --bar-repeat")
    require_training_extra()
    if gan_run:
        from jamd.export.gan_onnx import export_gan_run

        with writing(out, "--out"):
            export_gan_run(run_dir, out, cfg, which=args.generator, selection=selection,
                           explicit=options.set_keys(args))
        return 0
    from jamd.export.export_run import export_run

    with writing(out, "--out"):
        export_run(run_dir, out, cfg, bar_repeat=bar_repeat, explicit=options.set_keys(args))
    return 0
