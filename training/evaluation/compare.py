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
MAX_PITCH_STD_DEVIATION = 0.25  # relative to the corpus's pitch std (else the reference set's)
# Issue 5, section 2: a GAN's share of distinct bars among 1,000 at least 90% of the corpus's.
MIN_DISTINCT_RATIO = 0.9


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
    # the pitch bar's figures where measured on more than this set (`PitchCheck`)
    pitch_check: PitchCheck | None = None
    # a bar model's share of distinct bars and the corpus's (`jamd.training.gan_data`)
    distinct: dict | None = None


@dataclass(frozen=True)
class PitchCheck:
    """The pitch-std bar measured on a larger, fixed basis: the generated set's pitch std over
    `n` melodies (not only the N compared with the reference) against the corpus's (all its
    tunes, cut like the reference), which does not change with the reference draw."""

    pitch_std: float
    n: int
    reference_pitch_std: float
    reference: str


@dataclass
class Evaluation:
    reference: SetEvaluation
    sets: dict[str, SetEvaluation]
    matrices: dict[str, dict[str, np.ndarray]]  # set name -> matrix name -> average matrix
    baseline: str | None = None


MATRICES = ("pitch_class_transition_matrix", "note_length_transition_matrix")


def evaluate(reference: Sequence[Melody], reference_source: str,
             generated: Mapping[str, tuple[Sequence[Melody], str]],
             nll: Mapping[str, Nll] | None = None, baseline: str | None = None,
             pitch_checks: Mapping[str, PitchCheck] | None = None,
             distinct: Mapping[str, dict] | None = None) -> Evaluation:
    """Compare each generated set (name -> (melodies, source)) with the reference; `pitch_checks`
    and `distinct` (by set name) are the pitch and distinct-bar figures measured outside it."""
    nll = nll or {}
    pitch_checks = pitch_checks or {}
    distinct = distinct or {}
    ref = SetEvaluation("reference", reference_source, list(reference), features.pitch_stats(reference))
    ref_values = features.extract(reference)
    ref_pitches = [m.pitches for m in reference]
    matrices = {"reference": {m: features.average_matrix(reference, m) for m in MATRICES}}
    sets = {}
    for name, (melodies, source) in generated.items():
        ev = SetEvaluation(name, source, list(melodies), features.pitch_stats(melodies), nll=nll.get(name),
                           pitch_check=pitch_checks.get(name), distinct=distinct.get(name))
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
    set_ratio = ev.pitch["pitch_std"] / ref_std if ref_std else float("nan")
    pitch = {"ratio": set_ratio, "value": ev.pitch["pitch_std"], "reference": ref_std,
             "basis": f"the {len(ev.melodies)} melodies of this set against the {len(ref.melodies)} reference ones"}
    chk = ev.pitch_check
    if chk is not None:
        # judged on the larger, fixed basis; the figures against the reference draw stay beside it
        ratio = chk.pitch_std / chk.reference_pitch_std if chk.reference_pitch_std else float("nan")
        pitch = {"ratio": ratio, "value": chk.pitch_std, "reference": chk.reference_pitch_std,
                 "basis": f"{chk.n:,} melodies against {chk.reference}",
                 "ratio_reference_set": set_ratio, "value_set": ev.pitch["pitch_std"],
                 "reference_set": ref_std}
    bars["pitch_std_within_25pct"] = {"ok": bool(abs(pitch["ratio"] - 1) <= MAX_PITCH_STD_DEVIATION), **pitch}
    if ev.distinct is not None:
        d = ev.distinct
        ratio = d["distinct_share"] / d["reference"]["distinct_share"]
        bars["distinct_bars_at_least_90pct"] = {"ok": bool(ratio >= MIN_DISTINCT_RATIO), "ratio": ratio, **d}
    return bars
