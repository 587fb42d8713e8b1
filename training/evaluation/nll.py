"""Held-out negative log-likelihood of a step model, per token and per note.

Each validation tune is scored from the model's reset state (after the song
delimiters), symbol by symbol, teacher-forced.  Two figures:

* `per_token` scores the distribution jamd actually samples from: the song
  delimiter masked out and the rest renormalised, as `jamd generate`,
  `jamd run` and this evaluation all draw with the delimiter excluded.  The
  LSTM learned from 64-delimiter padding and cannot count it from a fixed
  window, so after the padding it still expects more delimiters (about
  95%); charging that to every tune's first notes would measure the padding,
  not the melody.  This is the figure the quality bar compares.
* `raw_per_token` is the plain next-symbol NLL with the delimiter allowed,
  plus the tune's closing delimiter (where a tune ends is part of what was
  learned; the further 63 padding symbols would be free and are not counted).

Per note divides a tune's total by its number of notes, which does not depend
on how finely the encoding slices time, so models with other encodings can
be compared on it.  All figures are in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from jamd.inference.sampling import log_softmax
from jamd.tokens import DELIMITER, symbols_to_notes

from .models import StepModel
from .progress import bar


@dataclass(frozen=True)
class Nll:
    per_token: float  # delimiter masked: what jamd samples from
    per_note: float
    raw_per_token: float  # delimiter allowed, closing delimiter scored
    raw_per_note: float
    tokens: int  # symbols scored for per_token (the raw figure scores one more per tune)
    notes: int
    tunes: int
    skipped_tunes: int  # tunes with a symbol the model's vocabulary lacks

    def to_dict(self) -> dict:
        return asdict(self)


def tune_nll(model: StepModel, symbols: Sequence[str], grid: tuple[int, int] | None = None) -> tuple[float, float]:
    """(masked, raw) total NLL of one tune; raw includes its closing delimiter.

    `grid`: (bar position of the tune's step 0, 16ths per bar), read by a model with the metric-position
    input (`LstmGenerator.metric_position`); None: from a downbeat of the model's current bar."""
    delimiter = model.vocab.id(DELIMITER)
    if grid is not None and getattr(model, "metric_position", False):
        model.reset(*grid)
    else:
        model.reset()
    logits = np.asarray(model.next_logits, dtype=np.float64)
    masked = raw = 0.0
    ids = model.vocab.encode(list(symbols) + [DELIMITER])
    for k, i in enumerate(ids):
        raw -= float(log_softmax(logits)[i])
        if k + 1 == len(ids):
            break
        without = logits.copy()
        without[delimiter] = -np.inf
        masked -= float(log_softmax(without)[i])
        logits = np.asarray(model.feed(int(i)), dtype=np.float64)
    return masked, raw


def held_out_nll(model: StepModel, tunes: Sequence[Sequence[str]], name: str = "model",
                 progress: bool = False, grids: Sequence[tuple[int, int]] | None = None) -> Nll:
    """NLL of `tunes` (each with its bar grid from `grids`, see `tune_nll`) under `model`."""
    masked = raw = 0.0
    tokens = notes = scored = skipped = 0
    for k, symbols in enumerate(bar(tunes, f"NLL ({name})", "tune", progress)):
        if any(s not in model.vocab for s in symbols) or DELIMITER in symbols:
            skipped += 1
            continue
        m, r = tune_nll(model, symbols, grids[k] if grids is not None else None)
        masked, raw = masked + m, raw + r
        tokens += len(symbols)
        notes += len(symbols_to_notes(symbols))
        scored += 1
    nan = float("nan")
    return Nll(
        per_token=masked / tokens if tokens else nan,
        per_note=masked / notes if notes else nan,
        raw_per_token=raw / (tokens + scored) if tokens else nan,
        raw_per_note=raw / notes if notes else nan,
        tokens=tokens, notes=notes, tunes=scored, skipped_tunes=skipped,
    )
