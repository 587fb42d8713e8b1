"""`jamd bench --suite train`: LSTM training throughput, 1 worker vs 2, for each model size.

The measurement trains with TensorFlow, which `daemon/` never imports: it lives in
`jamd.training.bench_train` and is imported only when this suite runs.  Figures:
tokens per second of one training process and of a two-worker localhost cluster
(MultiWorkerMirroredStrategy), for units x layers 256 x 1 and 512 x 2, and the
scaling efficiency (2-worker tokens/s over twice the 1-worker tokens/s).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ..config import Config


def run(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """Run the suite (`--quick`: the small size only, shorter epochs); returns its figures."""
    suite = importlib.import_module("jamd.training.bench_train")
    return suite.run_suite(args, cfg)
