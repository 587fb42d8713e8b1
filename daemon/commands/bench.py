"""`jamd bench`: reproducible benchmarks whose figures go in docs/BENCHMARKS.md.

Each suite is a module with `run(args, cfg) -> dict`; it prints a Markdown
table and returns the figures, which `--out` writes as JSON.  Suites that need
TensorFlow (the seed's Keras loop) live in `jamd.export` and are imported only
when chosen.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil

from ..config import Config
from ..errors import UsageError
from . import options
from .paths import check_output_file, write_text

HELP = "measure latency, throughput and timing; figures for docs/BENCHMARKS.md"
EXAMPLE = "jamd bench --suite lstm --steps 2000"

SUITES = {
    "lstm": "jamd.export.bench_lstm",  # per-step latency vs the seed's loop; epoch time
    "gan": "jamd.bench.gan",  # per-bar latency at batch 1 and bars/s in batches, CPU
    "realtime": "jamd.bench.realtime",  # scheduling error, response time, RSS, CPU, start-up
    "clock": "jamd.bench.clock",  # MIDI clock sync: master tick intervals, slave onset error and settling
    "harmony": "jamd.bench.harmony",  # harmony step latency; jamd run CPU/RSS harmony off vs on; chord onsets
    "ingest": "jamd.bench.ingest",  # corpus ingestion files/s/core: symusic vs music21, on --folder's MIDI files
    "train": "jamd.bench.train",  # LSTM training tokens/s, 1 vs 2 localhost workers, per model size
    "providers": "jamd.bench.providers",  # every shipped model on the CPU and on CUDA (where it loads)
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=sorted(SUITES), default="lstm", help="which benchmark to run")
    p.add_argument("--steps", type=int, default=2000, help="timed calls per measured variant")
    p.add_argument("--events", type=int, default=10000, help="scheduled events (realtime suite)")
    p.add_argument("--load", action="store_true",
                   help="keep another core fully busy while measuring (realtime suite)")
    p.add_argument("--flood", action="store_true",
                   help="only the input-flood measurement: output timing without and with "
                        "10,000 input messages/s (realtime suite)")
    p.add_argument("--footprint", action="store_true",
                   help="only jamd run's start-up, memory, CPU while playing and first answer "
                        "(realtime suite; issue 15's Raspberry Pi goals)")
    p.add_argument("--compare", metavar="PYTHON",
                   help="with --footprint: also measure the jamd of this interpreter (another checkout's "
                        "venv, e.g. /tmp/base/.venv/bin/python), alternating with this one")
    p.add_argument("--rounds", type=int, default=3, help="with --footprint: rounds per side (default 3)")
    p.add_argument("--folder", metavar="DIR", help="MIDI files to ingest (ingest suite)")
    p.add_argument("--m21-files", type=int, default=300, metavar="N",
                   help="files music21 parses for its rate, a random subset (ingest suite)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    p.add_argument("--out", metavar="FILE", help="also write the figures as JSON")


def run(args: argparse.Namespace, cfg: Config) -> int:
    options.check_number(args.steps, "--steps", lo=1, hi=10**8)
    options.check_number(args.events, "--events", lo=1, hi=10**8)
    options.check_number(args.rounds, "--rounds", lo=1, hi=1000)
    if args.compare is not None and not shutil.which(args.compare):
        raise UsageError(f"--compare {args.compare}: no such interpreter "
                         "(give a venv's python, e.g. /tmp/base/.venv/bin/python)")
    if args.suite == "ingest" and not args.folder:  # Path("") would be the current folder
        raise UsageError("--suite ingest needs --folder DIR, a folder of MIDI files "
                         "(write one: jamd corpus --source folk --write-midi DIR)")
    if args.out is not None:
        check_output_file(args.out, "--out")  # before the measurements
    if args.suite == "lstm":  # the seed's Keras loop: TensorFlow's start-up noise muted
        from jamd.training.tf_quiet import debugging, quiet_tensorflow

        quiet_tensorflow(debugging())
    suite = importlib.import_module(SUITES[args.suite])
    figures = suite.run(args, cfg)
    if args.out is not None:
        write_text(args.out, json.dumps(figures, indent=2) + "\n", "--out")
    return 0
