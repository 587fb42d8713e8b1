"""`jamd train`: train a model on the configured corpus (needs jamd[train])."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import Config
from ..errors import UsageError

HELP = "train the LSTM on the corpus in Keras (GPU if TensorFlow sees one), then export it to ONNX"
EXAMPLE = "jamd train --model lstm --epochs 50 --out runs/lstm --export models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=["lstm"], default="lstm", help="which model to train")
    p.add_argument("--epochs", type=int, help="most epochs (default: training.epochs)")
    p.add_argument("--out", metavar="DIR", help="run folder for checkpoints and curves (default: training.out_dir)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming from DIR's checkpoint")
    p.add_argument("--export", metavar="FILE.onnx",
                   help="export the best checkpoint here when training ends (default: DIR/lstm.onnx)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")


def require_training_extra() -> None:
    # TensorFlow's C++ start-up logging is noise for users; set before its first import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise UsageError("training needs TensorFlow and tf2onnx: pip install 'jamd[train]'") from None


def run(args: argparse.Namespace, cfg: Config) -> int:
    require_training_extra()
    if args.epochs is not None:
        cfg = cfg.replace(**{"training.epochs": args.epochs})
    out = Path(args.out or cfg.training.out_dir)
    from jamd.export.export_run import export_run
    from jamd.training.train_lstm import train

    figures = train(cfg, out, fresh=args.fresh, progress=not args.no_progress)
    export_run(out, Path(args.export) if args.export else out / "lstm.onnx", cfg, figures)
    return 0
