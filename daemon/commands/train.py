"""`jamd train`: train a model on the configured corpus (needs jamd[train])."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..config import Config
from ..errors import UsageError
from . import options
from .paths import check_output_dir, check_output_file, writing

GAN_VARIANTS = ("gan", "wgan", "cgan")

HELP = ("train the LSTM or a GAN on the corpus, or the harmony model on the Bach chorales, in Keras "
        "(GPU if TensorFlow sees one), then export it to ONNX")
EXAMPLE = "jamd train --model lstm --epochs 50 --out runs/lstm --export models/lstm.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=["lstm", *GAN_VARIANTS, "harmony"], default="lstm",
                   help="which model to train: the LSTM, a per-bar GAN (gan: the seed's; wgan: with noise "
                        "and L2; cgan: conditioned on the previous bar), or harmony (chords and bass per beat, "
                        "on harmony_training.source)")
    p.add_argument("--epochs", type=int,
                   help="most epochs (default: training.epochs; harmony: harmony_training.epochs)")
    p.add_argument("--steps", type=int, help="GANs: generator updates to train for (default: gan.steps)")
    p.add_argument("--out", metavar="DIR", help="run folder for checkpoints and curves (default: "
                                                 "training.out_dir; GANs: gan.out_dir/VARIANT; harmony: "
                                                 "harmony_training.out_dir)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming from DIR's checkpoint")
    p.add_argument("--export", metavar="FILE.onnx",
                   help="export the best checkpoint here when training ends (default: DIR/MODEL.onnx)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of progress bars")
    p.add_argument("--cluster", metavar="JOB=HOST:PORT,...",
                   help="LSTM on several machines (tf.distribute MultiWorkerMirroredStrategy): every task of the "
                        "cluster, the same string on each machine, e.g. chief=10.0.0.1:2222,worker=10.0.0.2:2222 "
                        "(default: training.cluster, else the TF_CONFIG environment variable, else this machine "
                        "alone); start the same command on every machine, each with its own --task.  The batch "
                        "size is per replica: a step trains on batch_size x replicas windows.  The chief writes "
                        "the run folder and the export; a lost worker: start them all again, they resume")
    p.add_argument("--task", metavar="JOB:INDEX",
                   help="which task of --cluster this machine is: chief:0, worker:0, worker:1, ... (without a "
                        "chief job, worker:0 is the chief)")


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


def _paths(args: argparse.Namespace, default_out: Path, model_file: str) -> tuple[Path, Path]:
    """The run folder and the export file, checked before training starts (one line each if unusable)."""
    out_option = "--out" if args.out is not None else "the run folder (config out_dir)"
    out = check_output_dir(args.out if args.out is not None else default_out, out_option)
    export = args.export if args.export is not None else out / model_file
    return out, check_output_file(export, "--export" if args.export is not None else "the export file")


def _check_cluster(args: argparse.Namespace, cfg: Config) -> None:
    """--cluster and --task (or training.cluster), checked as `jamd.training.distribute.resolve`
    will check them, but before TensorFlow loads: one line naming the bad value."""
    if args.model != "lstm":
        if args.cluster is not None or args.task is not None:
            raise UsageError(f"--cluster and --task train the LSTM only, not --model {args.model}")
        return
    if args.cluster is None and args.task is None and not cfg.training.cluster:
        return
    from jamd.training.distribute import parse_cluster, parse_task  # plain Python: no TensorFlow

    cluster, name = (args.cluster, "--cluster") if args.cluster is not None else (cfg.training.cluster,
                                                                                  "training.cluster")
    if not cluster:
        raise UsageError(f"--task {args.task!r} needs a cluster: --cluster or training.cluster")
    jobs = parse_cluster(cluster, name)
    if args.task is None:
        raise UsageError(f"{name} needs --task: which of its tasks this machine is (e.g. --task worker:0)")
    parse_task(args.task, jobs)


def run(args: argparse.Namespace, cfg: Config) -> int:
    _check_cluster(args, cfg)
    if args.model in GAN_VARIANTS:
        return _run_gan(args, cfg)
    if args.model == "harmony":
        return _run_harmony(args, cfg)
    cfg = options.apply(cfg, {"--epochs": ("training.epochs", args.epochs)})
    out, export = _paths(args, Path(cfg.training.out_dir), "lstm.onnx")
    require_training_extra()  # after the cheap checks: TensorFlow takes seconds to load
    from jamd.export.export_run import export_run
    from jamd.training.train_lstm import train

    figures = train(cfg, out, fresh=args.fresh, progress=not args.no_progress, cluster=args.cluster,
                    task=args.task)
    if figures.get("chief", True):  # other workers of a cluster leave the run folder to the chief
        with writing(export, "--export"):
            export_run(out, export, cfg, figures)
    return 0


def _run_gan(args: argparse.Namespace, cfg: Config) -> int:
    cfg = options.apply(cfg, {"--steps": ("gan.steps", args.steps), "--epochs": ("training.epochs", args.epochs)})
    out, export = _paths(args, Path(cfg.gan.out_dir) / args.model, f"{args.model}.onnx")
    require_training_extra()  # after the cheap checks: TensorFlow takes seconds to load
    from jamd.export.gan_onnx import export_gan_run
    from jamd.training.train_gan import train

    figures = train(cfg, args.model, out, fresh=args.fresh, progress=not args.no_progress)
    with writing(export, "--export"):
        export_gan_run(out, export, cfg, figures)
    return 0


def _run_harmony(args: argparse.Namespace, cfg: Config) -> int:
    cfg = options.apply(cfg, {"--epochs": ("harmony_training.epochs", args.epochs)})
    out, export = _paths(args, Path(cfg.harmony_training.out_dir), "harmony.onnx")
    require_training_extra()  # after the cheap checks: TensorFlow takes seconds to load
    from jamd.export.harmony_onnx import export_harmony_run
    from jamd.training.train_harmony import train

    figures = train(cfg, out, fresh=args.fresh, progress=not args.no_progress)
    with writing(export, "--export"):
        export_harmony_run(out, export, cfg, figures)
    return 0
