"""The input-pipeline figure of `jamd bench --suite train` on a corpus smaller than its shuffle buffer."""

from __future__ import annotations

import pytest
from corpora import erk5_folder

from jamd import config


@pytest.mark.train
def test_a_corpus_smaller_than_the_shuffle_buffer_is_measured_over_several_epochs(tmp_path):
    """27 tunes give a few dozen windows an epoch, far fewer than the 10,000-window buffer
    (the fresh user's crash: StopIteration while filling it); the epoch's pipeline repeats."""
    pytest.importorskip("tensorflow")
    from jamd.training.bench_train import pipeline_rate

    cfg = config.load(None, [*erk5_folder(tmp_path), "corpus.workers=1", "training.shuffle_buffer=2000"])
    got = pipeline_rate(cfg, 64, batches=20)
    assert got["batches"] == 20 and got["tokens_per_second"] > 0
    assert got["tokens_per_second"] == pytest.approx(20 * 64 * 64 / got["seconds"])
