"""`jamd eval`: measure generated melodies against the corpus, next to a Markov baseline.

N melodies from a model (or a folder of MIDI files) and N reference tunes
(from the corpus's validation split, or a folder) are compared with the
seed's and Yang & Lerch's measures; an order-n Markov chain trained on the
same training tunes is generated and measured in the same run, and the
held-out NLL of both is computed on the validation tunes.  The report
(Markdown with PNGs, and JSON) goes to --out.  All the work is in
`jamd.training.evaluation`; this module only resolves the options, and
imports nothing heavy until it runs.

`jamd eval --harmony` measures the harmony model instead: free-running on
held-out Bach chorales (agreement with his chords) and on held-out folk tunes
(chord tones, key, chord variety), next to a rule-based and a Markov-chain
harmoniser, over the harmonic rhythms and a scan of ``harmony.melody_fit``;
it prints the harmony goals, each pass or FAIL.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import Config
from ..errors import UsageError
from .paths import check_output_dir

HELP = "compare generated melodies with the corpus (seed + Yang & Lerch metrics, NLL, Markov baseline)"
EXAMPLE = "jamd eval --model lstm --reference erk --n 100 --out report/ --random-seed 1"
# options of the melody evaluation that mean nothing to --harmony
NOT_HARMONY = (("generated", "--generated"), ("reference", "--reference"), ("bars", "--bars"),
               ("no_baseline", "--no-baseline"))

log = logging.getLogger("jamd.eval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--harmony", action="store_true",
                   help="evaluate the harmony model (harmony.model, or --model) on held-out Bach chorales "
                        "and folk tunes against a rule-based and a Markov baseline; --n caps the tunes "
                        "per set (default: the whole validation splits), --temperature is the model's "
                        "(default: harmony.temperature), --markov-order the chord chain's (default: 1)")
    p.add_argument("--model", metavar="NAME|PATH", action="append",
                   help="model to generate from: a shipped name or an .onnx path; repeat it to "
                        "compare several (default: model.name; none when --generated is given)")
    p.add_argument("--generated", metavar="DIR", help="a folder of MIDI files to evaluate instead of a model")
    p.add_argument("--reference", metavar="CORPUS|DIR",
                   help="reference tunes: a folder of MIDI files, or a corpus source "
                        "(default: corpus.source)")
    p.add_argument("--n", type=int, metavar="N",
                   help="melodies per set (default: eval.n; for folders: all their files)")
    p.add_argument("--bars", type=int, metavar="BARS",
                   help="longest melody, in 4/4 bars; generated melodies are as long as the "
                        "reference ones (default: eval.bars)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: eval.temperature)")
    p.add_argument("--markov-order", type=int, metavar="N",
                   help="order of the baseline (default: eval.markov_order)")
    p.add_argument("--no-baseline", action="store_true", help="skip the Markov baseline (and its corpus)")
    p.add_argument("--random-seed", type=int, metavar="SEED",
                   help="seed for drawing and sampling; the same seed gives the same report "
                        "(default: model.random_seed, else a new one, printed in the report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show only on a terminal)")
    p.add_argument("--out", metavar="DIR", default="report", help="where the report goes (default: report/)")


def _check_harmony(args: argparse.Namespace) -> None:
    for attr, option in NOT_HARMONY:
        if getattr(args, attr):
            raise UsageError(f"{option} does not apply to --harmony (it evaluates the harmony model on "
                             "the chorales' and corpus.source's validation tunes)")
    if args.model and len(args.model) > 1:
        raise UsageError(f"--harmony evaluates one model (received --model {', '.join(args.model)})")
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be at least 1 (received {args.n})")


def _check(args: argparse.Namespace, cfg: Config) -> None:
    if args.harmony:
        _check_harmony(args)
    elif args.n is not None and args.n < 2:
        raise UsageError(
            f"--n must be at least 2: distances within a set need two melodies (received {args.n})")
    if args.bars is not None and not 1 <= args.bars <= 256:
        raise UsageError(f"--bars must be between 1 and 256 (received {args.bars})")
    if args.markov_order is not None and not 1 <= args.markov_order <= 16:
        raise UsageError(f"--markov-order must be between 1 and 16 (received {args.markov_order})")
    if args.temperature is not None and not 0 <= args.temperature <= 5:
        raise UsageError(f"--temperature must be between 0 and 5 (received {args.temperature})")
    if args.random_seed is not None and not 0 <= args.random_seed < 2**32:
        raise UsageError(f"--random-seed must be between 0 and 2**32-1 (received {args.random_seed})")
    if args.model and len(set(args.model)) < len(args.model):
        raise UsageError(f"--model given twice for the same model ({', '.join(args.model)})")
    if args.generated and not Path(args.generated).is_dir():
        raise UsageError(f"--generated {args.generated}: not a folder")
    check_output_dir(args.out, "--out")  # before any generation: a file in the way costs nothing


def run(args: argparse.Namespace, cfg: Config) -> int:
    _check(args, cfg)
    from jamd.training.tf_quiet import debugging, quiet_tensorflow

    quiet_tensorflow(debugging(), import_now=False)  # eval itself needs no TensorFlow: only its noise settings
    if args.harmony:
        return _run_harmony(args, cfg)
    from jamd.training.evaluation import pipeline

    settings = pipeline.Settings.resolve(args, cfg)
    figures = pipeline.run(settings, cfg, progress=sys.stderr.isatty() and not args.no_progress)
    out = Path(settings.out)
    print(f"report: {out / 'report.md'} (figures: {out / 'figures.json'})")
    for name, s in figures["sets"].items():
        failed = [k for k, bar in s["quality_bars"].items() if not bar["ok"]]
        verdict = "meets every quality bar" if not failed else "falls short on " + ", ".join(failed)
        print(f"{name}: {verdict}")
    return 0


def _run_harmony(args: argparse.Namespace, cfg: Config) -> int:
    from jamd.training.evaluation import harmony_pipeline, harmony_report

    settings = harmony_pipeline.Settings.resolve(args, cfg)
    figures = harmony_pipeline.run(settings, cfg, progress=sys.stderr.isatty() and not args.no_progress)
    out = Path(settings.out)
    print(f"report: {out / 'report.md'} (figures: {out / 'figures.json'})")
    for line in harmony_report.goal_lines(figures):
        print(line)
    rec = figures["recommended_melody_fit"]
    print(f"recommended harmony.melody_fit: {rec['value']:g} ({rec['rule']})")
    return 0
