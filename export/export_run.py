"""Export a finished training run folder: checkpoint + its corpus + figures -> ONNX."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import ConfigError, DataError
from jamd.tokens import Vocabulary, bar_positions, steps_per_bar

log = logging.getLogger(__name__)

# what picks a run's tunes and its validation split; cache_dir and workers are this machine's
RUN_CORPUS_KEYS = ("source", "part", "validation_fraction", "split_seed")


def with_run_corpus(cfg: Config, state: dict[str, Any], run_dir: Path) -> Config:
    """`cfg` with the corpus the run was trained on (state.json's config.corpus), so an export's
    parity check and metadata use that corpus's validation tunes whatever the configuration
    now says (a `jamd train --set corpus.source=folk` run exported by a plain `jamd export`)."""
    recorded = (state.get("config") or {}).get("corpus")
    if not isinstance(recorded, dict):
        return cfg
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in RUN_CORPUS_KEYS}
    corpus = dataclasses.replace(cfg.corpus, **changes)
    if corpus != cfg.corpus:
        log.info("%s: exporting with the run's own corpus %s (the configuration has %s)",
                 run_dir, _name(corpus.source), _name(cfg.corpus.source))
    return dataclasses.replace(cfg, corpus=corpus)


def read_run(run_dir: Path, figures: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A training run folder's state and figures (the given figures win), or one-line DataError."""
    state_path = run_dir / "state.json"
    if not state_path.is_file():
        raise DataError(f"{run_dir}: not a training run folder (no state.json)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if figures is None and (run_dir / "figures.json").is_file():
            figures = json.loads((run_dir / "figures.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{run_dir}: damaged training state ({str(exc)[:80]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("vocabulary"), list):
        raise DataError(f"{state_path}: no vocabulary in the training state")
    return state, figures


def run_corpus(cfg: Config, state: dict[str, Any], run_dir: Path,
               explicit: Collection[str] = ()) -> tuple[Any, Config, bool]:
    """The corpus an export's parity check reads, the configuration with the run's corpus and split
    (`with_run_corpus`), and whether that corpus is the run's own.

    The run's own corpus (`with_run_corpus`) when it loads; else, when the command line set
    ``corpus.source`` (`explicit`: the keys it set), the configured one; else None, with one
    warning naming the run's corpus: the parity check then runs on tokens drawn from the run's
    vocabulary (state.json holds it), so a moved or deleted corpus folder does not stop an export.
    Raises what `load_corpus` raises only for the corpus the user named."""
    from jamd.training.corpus import load_corpus

    run_cfg = with_run_corpus(cfg, state, run_dir)
    try:
        return load_corpus(run_cfg.corpus, progress=False, input_channels=cfg.live.input_channels), run_cfg, True
    except (DataError, ConfigError) as exc:
        missing = f"{run_dir}: the run's corpus {_name(run_cfg.corpus.source)} is not available ({exc})"
    if "corpus.source" in explicit and cfg.corpus != run_cfg.corpus:
        log.warning("%s; the parity check runs on corpus.source %s", missing, _name(cfg.corpus.source))
        return load_corpus(cfg.corpus, progress=False, input_channels=cfg.live.input_channels), run_cfg, False
    log.warning("%s; the parity check runs on symbols drawn from the run's vocabulary (seed 0)", missing)
    return None, run_cfg, False


def _name(source: Any) -> str:
    """A corpus source as the corpus names itself ("erk", "erk+/data/midi"), not a Python tuple."""
    return "+".join(map(str, source)) if isinstance(source, (list, tuple)) else str(source)


def corpus_metadata(state: dict[str, Any], corpus: Any, cfg: Config) -> dict[str, Any]:
    """The metadata's "corpus": the source and stats state.json recorded as the run trained (what it
    trained on, whatever the folder holds now), else, for runs from before that was recorded, those
    of `corpus` (the run's own, loaded now; None: the run's configured source, stats null); the
    split is `cfg`'s (the run's)."""
    recorded = state.get("corpus") if isinstance(state.get("corpus"), dict) else {}
    source = recorded.get("source", corpus.source if corpus is not None else _name(cfg.corpus.source))
    stats = recorded.get("stats", corpus.stats if corpus is not None else None)
    return {"source": source, "stats": stats, "validation_fraction": cfg.corpus.validation_fraction,
            "split_seed": cfg.corpus.split_seed}


def export_run(run_dir: Path, out: Path, cfg: Config, figures: dict[str, Any] | None = None,
               bar_repeat: dict[str, Any] | None = None, explicit: Collection[str] = ()) -> dict:
    """Export an LSTM run's best checkpoint with its corpus, figures and (when given) its bar
    repetition settings (`jamd.inference.repeat`) in the metadata.  `explicit`: the config keys
    the command line set (`run_corpus`)."""
    from jamd.export.lstm_onnx import export_lstm

    state, figures = read_run(run_dir, figures)
    corpus, cfg, own = run_corpus(cfg, state, run_dir, explicit)
    val_idx = corpus.split()[1] if corpus is not None else []
    vocab = Vocabulary(state["vocabulary"])
    # a real validation melody (several tunes joined) drives the parity rollout; without one,
    # export_lstm draws symbols from the vocabulary, on a 4/4 bar grid
    parity_tokens = corpus.stream(val_idx[:10], 4, vocab=vocab) if val_idx else None
    parity_positions = None
    if val_idx:
        # beside each token, the bar position of the step after it, on each tune's own bar grid
        # (its 4 delimiters continue that grid)
        parity_positions = np.concatenate([
            bar_positions(len(corpus.ids(i)) + 4, steps_per_bar(corpus.tunes[i].meter),
                          corpus.tunes[i].pickup_steps, start=1) for i in val_idx[:10]])
    metadata = {
        "vocabulary": state["vocabulary"],
        "corpus": corpus_metadata(state, corpus if own else None, cfg),
        "training": {**state.get("config", {}).get("training", {}), "figures": figures or {}},
    }
    if bar_repeat is not None:
        metadata["bar_repeat"] = dict(bar_repeat)
    return export_lstm(run_dir / "best.keras", out, metadata, parity_tokens, parity_positions)
