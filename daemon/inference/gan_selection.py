"""Choosing among the model's own bars (`Selection`): at each bar line the
generator may draw several candidate bars in one batched call (each from its
own z, each conditioned on the same bar before) and keep the one that best
continues the bar before: the smallest leap over the bar line, the nearest
register and the smoothest line inside the bar.  Nothing is generated that
the model would not have sampled; the choice only replaces "the first
sample" with "the best-joined of k samples".  The unconditional model then
follows the bar before too, which it cannot do on its own.  The setting
travels with the model (``selection`` in its metadata), else
`gan.DEFAULT_SELECTION` for its kind; ``candidates: 1`` is the bare model.  `jamd generate`,
`jamd eval` and the daemon (`GanBars`) all go through `BarGenerator.bar_ids`,
so they choose alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from ..errors import ModelError


@dataclass(frozen=True)
class Selection:
    """How a bar is chosen among `candidates` bars the model sampled for the same bar line.

    Each candidate costs ``leap * |its first pitch - the last pitch before the
    bar line| + register * |its mean pitch - the register| + motion * the
    mean |interval| between its notes`` (semitones); the cheapest is played.
    The register is the bar before's mean pitch, or, along a chain of bars,
    a running mean: ``memory * the register before + (1 - memory) * the mean
    pitch of the bar just played`` (0: the bar before alone; near 1: the
    register the chain started in, e.g. the player's), so that a long chain
    does not drift towards the middle of the range, where most candidates lie.
    A term that cannot be measured (a bar without notes, a silent bar before,
    a one-note bar) costs the candidates' mean for that term, so it neither
    wins nor loses by it.  ``candidates: 1`` plays the model's first sample
    (the bare model).
    """

    candidates: int = 1
    leap: float = 1.0
    register: float = 1.0
    motion: float = 0.0
    memory: float = 0.0
    free: float = 0.0

    def __post_init__(self):
        c = self.candidates
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 1 <= c <= 1024:
            raise ModelError(f"selection.candidates must be an integer from 1 to 1024 (received {self.candidates})")
        for f in ("leap", "register", "motion", "memory", "free"):
            v = getattr(self, f)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ModelError(f"selection.{f} must be a number >= 0 (received {v!r})")
        if self.memory >= 1:
            raise ModelError(f"selection.memory must be below 1 (received {self.memory})")

    @classmethod
    def from_dict(cls, d: Mapping | None, base: Selection | None = None) -> Selection:
        base = base or BARE
        if not d:
            return base
        if not isinstance(d, Mapping):
            raise ModelError(f"selection must be a mapping (received {d!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"selection: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return replace(base, **dict(d))

    def to_dict(self) -> dict:
        return asdict(self)


BARE = Selection(candidates=1)


def first_last_mean(pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last struck pitch and mean pitch of each row of `pitch [..., steps]` (NaN: no note)."""
    valid = ~np.isnan(pitch)
    anyv = valid.any(axis=-1)
    first = np.take_along_axis(pitch, valid.argmax(axis=-1)[..., None], -1)[..., 0]
    last = np.take_along_axis(pitch, (valid.shape[-1] - 1 - valid[..., ::-1].argmax(axis=-1))[..., None], -1)[..., 0]
    total = np.where(valid, pitch, 0.0).sum(axis=-1)
    mean = np.divide(total, valid.sum(axis=-1), out=np.full(total.shape, np.nan), where=anyv)
    return np.where(anyv, first, np.nan), np.where(anyv, last, np.nan), mean


def _motion(pitch: np.ndarray, free: float = 0.0) -> np.ndarray:
    """Mean of (|interval| - `free`, at least 0) between consecutive notes of each row of
    `pitch [..., steps]` (NaN: fewer than 2 notes)."""
    valid = ~np.isnan(pitch)
    steps = pitch.shape[-1]
    idx = np.where(valid, np.arange(steps), -1)
    before = np.maximum.accumulate(idx, axis=-1)
    before = np.concatenate([np.full(before.shape[:-1] + (1,), -1), before[..., :-1]], axis=-1)
    has = valid & (before >= 0)
    prev_pitch = np.take_along_axis(pitch, np.maximum(before, 0), -1)
    d = np.where(has, np.maximum(np.abs(np.nan_to_num(pitch) - np.nan_to_num(prev_pitch)) - free, 0.0), 0.0)
    n = has.sum(axis=-1)
    return np.divide(d.sum(axis=-1), n, out=np.full(n.shape, np.nan), where=n > 0)


def _neutral(term: np.ndarray) -> np.ndarray:
    """`term [n, k]` with NaN replaced by the row's mean over the candidates where it is measured (else 0)."""
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(term)).sum(axis=1, keepdims=True)
        mean = np.divide(np.nansum(term, axis=1, keepdims=True), counts,
                         out=np.zeros((term.shape[0], 1)), where=counts > 0)
    return np.where(np.isnan(term), mean, term)


def register_of(pitch_table: np.ndarray, prev_ids: np.ndarray, register: np.ndarray | None) -> np.ndarray:
    """The register each of `prev_ids [n, steps]` is continued in: `register [n]` where known, else
    the bar's mean pitch (NaN: no notes)."""
    _, _, mean = first_last_mean(pitch_table[np.asarray(prev_ids)])
    if register is None:
        return mean
    register = np.asarray(register, float)
    return np.where(np.isnan(register), mean, register)


def continuation_cost(pitch_table: np.ndarray, prev_ids: np.ndarray | None, cand_ids: np.ndarray,
                      selection: Selection, register: np.ndarray | None = None) -> np.ndarray:
    """`Selection`'s cost of each candidate: `cand_ids [n, k, steps]` after `prev_ids [n, steps]` -> [n, k];
    `register [n]`: the chain's running register (None or NaN: the bar before's mean pitch)."""
    cand = pitch_table[np.asarray(cand_ids)]
    first, _, mean = first_last_mean(cand)
    cost = np.zeros(cand.shape[:2])
    if prev_ids is not None and (selection.leap or selection.register):
        _, last_before, _ = first_last_mean(pitch_table[np.asarray(prev_ids)])
        if selection.leap:
            cost += selection.leap * _neutral(np.maximum(np.abs(first - last_before[:, None]) - selection.free, 0))
        if selection.register:
            ref = register_of(pitch_table, prev_ids, register)
            cost += selection.register * _neutral(np.abs(mean - ref[:, None]))
    if selection.motion:
        cost += selection.motion * _neutral(_motion(cand, selection.free))
    return cost


# -- the ONNX generator ---------------------------------------------------------
