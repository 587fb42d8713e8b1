"""`jamd export`: turn a training run's best checkpoint into an ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config
from .train import require_training_extra

HELP = "export a trained run (LSTM step model or GAN generator) to ONNX with metadata, checked for parity"
EXAMPLE = "jamd export runs/lstm --out models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="training run folder: state.json and best.keras (LSTM) or best_generator.keras (GAN)")
    p.add_argument("--out", metavar="FILE.onnx", required=True, help="where to write the model (+ .json sidecar)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    require_training_extra()
    from jamd.export.export_run import export_run

    run_dir = Path(args.run_dir)
    if (run_dir / "best_generator.keras").is_file():  # a GAN run (jamd train --model gan|wgan|cgan)
        from jamd.export.gan_onnx import export_gan_run

        export_gan_run(run_dir, Path(args.out), cfg)
        return 0
    export_run(run_dir, Path(args.out), cfg)
    return 0
