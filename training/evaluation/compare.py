"""Every measure of issue 3 on one reference set and any number of generated sets.

`evaluate` returns the figures (plain numbers, for the JSON and the
Markdown) and keeps the distance arrays the KDE plots need; `quality_bars`
checks the bars of issue 3 section 5 on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import distances, features, manhattan
from .melodies import Melody
from .nll import Nll

# Issue 3, section 5: the first quality bars (they will be raised).
MIN_OVERLAP_AREA = 0.7
MAX_PITCH_STD_DEVIATION = 0.25  # relative to the reference set's pitch std


@dataclass
class SetEvaluation:
    name: str
    source: str
    melodies: list[Melody]
    pitch: dict[str, float]
    features: dict[str, dict] = field(default_factory=dict)  # name -> figures
    distances: dict[str, dict] = field(default_factory=dict)  # name -> intra/inter arrays
    manhattan: dict[str, float] = field(default_factory=dict)
    nll: Nll | None = None
    bars: dict[str, dict] = field(default_factory=dict)


@dataclass
class Evaluation:
    reference: SetEvaluation
    sets: dict[str, SetEvaluation]
    matrices: dict[str, dict[str, np.ndarray]]  # set name -> matrix name -> average matrix
    baseline: str | None = None


MATRICES = ("pitch_class_transition_matrix", "note_length_transition_matrix")


def evaluate(reference: Sequence[Melody], reference_source: str,
             generated: Mapping[str, tuple[Sequence[Melody], str]],
             nll: Mapping[str, Nll] | None = None, baseline: str | None = None) -> Evaluation:
    """Compare each generated set (name -> (melodies, source)) with the reference."""
    nll = nll or {}
    ref = SetEvaluation("reference", reference_source, list(reference), features.pitch_stats(reference))
    ref_values = features.extract(reference)
    ref_pitches = [m.pitches for m in reference]
    matrices = {"reference": {m: features.average_matrix(reference, m) for m in MATRICES}}
    sets = {}
    for name, (melodies, source) in generated.items():
        ev = SetEvaluation(name, source, list(melodies), features.pitch_stats(melodies), nll=nll.get(name))
        values = features.extract(melodies)
        for feat in features.FEATURES:
            result = distances.compare_feature(values[feat], ref_values[feat])
            ev.features[feat] = result.pop("figures")
            ev.distances[feat] = result
        ev.manhattan = manhattan.compare([m.pitches for m in melodies], ref_pitches)
        matrices[name] = {m: features.average_matrix(melodies, m) for m in MATRICES}
        sets[name] = ev
    evaluation = Evaluation(ref, sets, matrices, baseline)
    for ev in sets.values():
        ev.bars = quality_bars(ev, ref, sets.get(baseline) if baseline else None)
    return evaluation


def quality_bars(ev: SetEvaluation, ref: SetEvaluation, baseline: SetEvaluation | None) -> dict[str, dict]:
    """Issue 3 section 5, each bar with the figure it was judged on."""
    bars: dict[str, dict] = {}
    if ev.nll is not None and baseline is not None and baseline is not ev and baseline.nll is not None:
        bars["nll_below_baseline"] = {
            "ok": bool(ev.nll.per_token < baseline.nll.per_token),
            "value": ev.nll.per_token,
            "baseline": baseline.nll.per_token,
        }
    oa = {f: fig["overlap_area"] for f, fig in ev.features.items()}
    short = {f: v for f, v in oa.items() if v < MIN_OVERLAP_AREA}
    bars["overlap_area_at_least_0.7"] = {
        "ok": not short,
        "lowest": min(oa.values()) if oa else float("nan"),
        "below": short,
    }
    ref_std = ref.pitch["pitch_std"]
    ratio = ev.pitch["pitch_std"] / ref_std if ref_std else float("nan")
    bars["pitch_std_within_25pct"] = {
        "ok": bool(abs(ratio - 1) <= MAX_PITCH_STD_DEVIATION),
        "ratio": ratio,
        "value": ev.pitch["pitch_std"],
        "reference": ref_std,
    }
    return bars
