"""`jamd export RUN` uses the corpus the run was trained on, not whatever the configuration says."""

from __future__ import annotations

import logging
from pathlib import Path

from jamd.config import Config
from jamd.export.export_run import with_run_corpus


def test_the_runs_own_corpus_and_split_replace_the_configurations(caplog):
    cfg = Config()
    state = {"config": {"corpus": {"source": ["essen", "oneill"], "part": 0, "validation_fraction": 0.2,
                                   "split_seed": 7, "cache_dir": "/elsewhere", "workers": 64}}}
    with caplog.at_level(logging.INFO, logger="jamd.export.export_run"):
        got = with_run_corpus(cfg, state, Path("runs/x"))
    assert got.corpus.source == ("essen", "oneill")  # a list in JSON, the config's tuple here
    assert (got.corpus.validation_fraction, got.corpus.split_seed) == (0.2, 7)
    # where the cache lives and how many workers parse are this machine's, not the run's
    assert (got.corpus.cache_dir, got.corpus.workers) == (cfg.corpus.cache_dir, cfg.corpus.workers)
    assert got.model == cfg.model and got.training == cfg.training
    assert "runs/x: exporting with the run's own corpus essen+oneill (the configuration has erk)" \
        in caplog.text


def test_a_run_without_a_recorded_corpus_or_the_same_one_changes_nothing(caplog):
    cfg = Config()
    with caplog.at_level(logging.INFO, logger="jamd.export.export_run"):
        assert with_run_corpus(cfg, {}, Path("r")) is cfg
        assert with_run_corpus(cfg, {"config": None}, Path("r")) is cfg
        assert with_run_corpus(cfg, {"config": {"corpus": "erk"}}, Path("r")) is cfg
        same = with_run_corpus(cfg, {"config": {"corpus": {"source": "erk"}}}, Path("r"))
    assert same.corpus == cfg.corpus and not caplog.records


class LoadedCorpus:
    source, stats = "tunes-now", {"kept": 772}


def test_the_stats_recorded_at_training_win_over_the_folder_at_export_time():
    from jamd.export.export_run import corpus_metadata

    cfg = Config()
    state = {"corpus": {"source": "tunes-then", "stats": {"kept": 771}}}
    assert corpus_metadata(state, LoadedCorpus(), cfg) == {
        "source": "tunes-then", "stats": {"kept": 771}, "validation_fraction": cfg.corpus.validation_fraction,
        "split_seed": cfg.corpus.split_seed}
    # a run from before the stats were recorded: the run's corpus as loaded now, else its name alone
    assert corpus_metadata({}, LoadedCorpus(), cfg)["stats"] == {"kept": 772}
    assert corpus_metadata({}, None, cfg) == {"source": "erk", "stats": None,
                                              "validation_fraction": cfg.corpus.validation_fraction,
                                              "split_seed": cfg.corpus.split_seed}
