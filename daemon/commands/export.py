"""`jamd export`: turn a training run's best checkpoint into an ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config
from .train import require_training_extra

HELP = "export a trained run to a single-step ONNX model with metadata, checked for parity"
EXAMPLE = "jamd export runs/lstm --out models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run folder (holds best.keras and state.json)")
    p.add_argument("--out", metavar="FILE.onnx", required=True, help="where to write the model (+ .json sidecar)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    require_training_extra()
    from jamd.export.export_run import export_run

    export_run(Path(args.run_dir), Path(args.out), cfg)
    return 0
