"""`jamd train`: train a model on the configured corpus (needs jamd[train])."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..config import Config
from ..errors import UsageError

GAN_VARIANTS = ("gan", "wgan", "cgan")

HELP = "train the LSTM or a GAN on the corpus in Keras (GPU if TensorFlow sees one), then export it to ONNX"
EXAMPLE = "jamd train --model lstm --epochs 50 --out runs/lstm --export models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=["lstm", *GAN_VARIANTS], default="lstm",
                   help="which model to train: the LSTM, or a per-bar GAN (gan: the seed's; wgan: with noise "
                        "and L2; cgan: conditioned on the previous bar)")
    p.add_argument("--epochs", type=int, help="most epochs (default: training.epochs)")
    p.add_argument("--steps", type=int, help="GANs: generator updates to train for (default: gan.steps)")
    p.add_argument("--out", metavar="DIR", help="run folder for checkpoints and curves "
                                                 "(default: training.out_dir; GANs: gan.out_dir/VARIANT)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming from DIR's checkpoint")
    p.add_argument("--export", metavar="FILE.onnx",
                   help="export the best checkpoint here when training ends (default: DIR/MODEL.onnx)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")


def require_training_extra() -> None:
    # Only look for the packages: daemon/ never imports TensorFlow itself; the
    # training code in jamd.training / jamd.export does, when it runs.
    missing = [name for name in ("tensorflow", "tf2onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"training needs {' and '.join(missing)}: pip install 'jamd[train]'")
    # TensorFlow's C++ start-up logging (cuInit on a CPU-only machine, oneDNN) is noise
    # for users: muted unless --log-level debug, before its first import
    from jamd.training.tf_quiet import debugging, quiet_tensorflow

    quiet_tensorflow(debugging())


def run(args: argparse.Namespace, cfg: Config) -> int:
    require_training_extra()
    if args.model in GAN_VARIANTS:
        return _run_gan(args, cfg)
    if args.epochs is not None:
        cfg = cfg.replace(**{"training.epochs": args.epochs})
    out = Path(args.out or cfg.training.out_dir)
    from jamd.export.export_run import export_run
    from jamd.training.train_lstm import train

    figures = train(cfg, out, fresh=args.fresh, progress=not args.no_progress)
    export_run(out, Path(args.export) if args.export else out / "lstm.onnx", cfg, figures)
    return 0


def _run_gan(args: argparse.Namespace, cfg: Config) -> int:
    if args.steps is not None:
        try:
            cfg = cfg.replace(**{"gan.steps": args.steps})
        except Exception as exc:  # ConfigError names the key; re-label it as the option
            raise UsageError(str(exc).replace("override: gan.steps", "--steps")) from None
    out = Path(args.out) if args.out else Path(cfg.gan.out_dir) / args.model
    from jamd.export.gan_onnx import export_gan_run
    from jamd.training.train_gan import train

    figures = train(cfg, args.model, out, fresh=args.fresh, progress=not args.no_progress)
    export_gan_run(out, Path(args.export) if args.export else out / f"{args.model}.onnx", cfg, figures)
    return 0
