"""The report: `report.md` with the PNGs embedded, and `figures.json` with the same figures.

`figures(ev, settings)` is the single source: the JSON is it verbatim and
the Markdown tables are drawn from it, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import plots
from .compare import MATRICES, MIN_DISTINCT_RATIO, MIN_OVERLAP_AREA, Evaluation
from .features import FEATURES

BAR_TITLES = {
    "nll_below_baseline": "NLL/token below baseline",
    "overlap_area_at_least_0.7": f"every overlap area >= {MIN_OVERLAP_AREA}",
    "pitch_std_within_25pct": "pitch std within 25% of the corpus's",
    "distinct_bars_at_least_90pct": f"bar models: distinct bars >= {MIN_DISTINCT_RATIO:.0%} of the corpus's share",
}


def figures(ev: Evaluation, settings: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "settings": settings,
        "reference": {"source": ev.reference.source, "n": len(ev.reference.melodies),
                      "pitch": ev.reference.pitch},
        "baseline": ev.baseline,
        "sets": {},
        "average_matrices": {name: {k: m.round(5).tolist() for k, m in mats.items()}
                             for name, mats in ev.matrices.items()},
    }
    for name, s in ev.sets.items():
        out["sets"][name] = {
            "source": s.source,
            "n": len(s.melodies),
            "pitch": s.pitch,
            "nll": s.nll.to_dict() if s.nll else None,
            "features": s.features,
            "manhattan": s.manhattan,
            "quality_bars": s.bars,
        }
    return out


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _bar_cell(bar: dict | None) -> str:
    if bar is None:
        return "–"
    mark = "pass" if bar["ok"] else "**FAIL**"
    if "ratio_reference_set" in bar:
        return f"{mark} (ratio {bar['ratio']:.2f}; {bar['ratio_reference_set']:.2f} against the reference set)"
    if "ratio" in bar:
        return f"{mark} (ratio {bar['ratio']:.2f})"
    if "lowest" in bar:
        return f"{mark} (lowest {bar['lowest']:.2f}, {len(bar['below'])} below)"
    return f"{mark} ({bar['value']:.3f} vs {bar['baseline']:.3f})"


def _n_used(fig: dict[str, Any]) -> str:
    """The N the figures rest on: the melodies actually compared, and why when fewer than asked."""
    used = fig["settings"]["n"]
    asked = fig["settings"].get("n_requested")
    text = f"**N = {used}** melodies per set"
    if asked is not None and asked != used:
        text += (f" ({asked} requested; the reference has only {used} usable tunes, so every set "
                 f"was cut to {used})" if used < asked else f" ({asked} requested)")
    return text + "."


def markdown(fig: dict[str, Any], images: dict[str, Path | list[Path]], out_dir: Path) -> str:
    st = fig["settings"]
    names = list(fig["sets"])
    parts = [
        "# jamd eval report",
        f"Command: `{st['command']}`  \nRandom seed: {st['random_seed']} · melodies of at most "
        f"{st['max_steps']} steps ({st['bars']} bars of 4/4), each generated one as long as its "
        f"reference partner · temperature {st['temperature']} · "
        f"Markov order {st['markov_order']}",
        _n_used(fig),
        "## Sets\n" + "\n".join(
            [f"- **reference** (N = {fig['reference']['n']}): {fig['reference']['source']}"]
            + [f"- **{n}** (N = {fig['sets'][n]['n']}): {fig['sets'][n]['source']}" for n in names]),
        "## Quality bars (issue 3, section 5; issue 5, section 2)\n" + _bar_notes(fig) + _table(
            ["set", *BAR_TITLES.values()],
            [[n, *(_bar_cell(fig["sets"][n]["quality_bars"].get(k)) for k in BAR_TITLES)] for n in names]),
    ]
    nll_rows = [[n, _f(s["nll"]["per_token"], 4), _f(s["nll"]["per_note"], 3),
                 _f(math.exp(s["nll"]["per_token"]), 3), _f(s["nll"]["raw_per_token"], 4),
                 _f(s["nll"]["raw_per_note"], 3), str(s["nll"]["tokens"]), str(s["nll"]["tunes"])]
                for n, s in fig["sets"].items() if s["nll"]]
    if nll_rows:
        parts.append(
            "## Held-out NLL (validation tunes, nats)\nPer token and per note of the distribution jamd "
            "samples from (song delimiter excluded, the quality bar); raw: with the delimiter allowed and "
            "each tune's closing delimiter scored.\n\n" + _table(
                ["set", "per token", "per note", "perplexity", "raw per token", "raw per note", "tokens",
                 "tunes"], nll_rows))
    pitch_rows = [["reference", *_pitch_cells(fig["reference"]["pitch"])]]
    pitch_rows += [[n, *_pitch_cells(fig["sets"][n]["pitch"])] for n in names]
    parts.append("## Pitch (seed 4.5; MIDI numbers, over all notes of a set)\n" + _table(
        ["set", "mean", "std", "std within a melody", "notes per melody", "empty melodies",
         "distinct bars within a melody"], pitch_rows))
    feat_rows = []
    for feat in FEATURES:
        row = [feat]
        for n in names:
            f = fig["sets"][n]["features"][feat]
            row.append(f"{f['overlap_area']:.2f} / {f['kl_divergence']:.2f} / {f['intra_overlap_area']:.2f}")
        feat_rows.append(row)
    parts.append(
        "## Yang & Lerch features\nEach cell: overlap area / KL divergence of the reference's intra-set "
        "distances and the inter-set distances (Yang & Lerch's measure, the quality bar), then the "
        "overlap of the two intra-set densities (diversity, as in the seed's figures 5.10–5.13).\n\n"
        + _table(["feature", *names], feat_rows))
    mean_rows = []
    for feat in FEATURES:
        first = fig["sets"][names[0]]["features"][feat] if names else None
        row = [feat, _f(first["intra_reference_mean"], 3) if first else "–"]
        for n in names:
            f = fig["sets"][n]["features"][feat]
            row += [_f(f["intra_generated_mean"], 3), _f(f["inter_mean"], 3)]
        mean_rows.append(row)
    parts.append("Mean distances (intra reference; then intra and inter for each set):\n\n" + _table(
        ["feature", "intra ref", *[f"{h} {n}" for n in names for h in ("intra", "inter")]], mean_rows))
    man_rows = [[n, _f(m["intra_generated"]), _f(m["inter"]), _f(m["seed_intra_generated"], 1),
                 _f(m["seed_inter"], 1)] for n, m in ((n, fig["sets"][n]["manhattan"]) for n in names)]
    ref_man = fig["sets"][names[0]]["manhattan"] if names else None
    if ref_man:
        man_rows.insert(0, ["reference", _f(ref_man["intra_reference"]), "–",
                            _f(ref_man["seed_intra_reference"], 1), "–"])
    parts.append(
        "## Manhattan distance of grouped adjacent pitches (seed 4.2)\nMean over pairs within a set "
        "(intra) and between the set and the reference (inter); shares of pitch groups, in [0, 2]. "
        "The seed's `zip` version, which ignores the tail of the longer melody, is given for "
        "comparison.\n\n" + _table(["set", "intra", "inter", "seed intra", "seed inter"], man_rows))
    parts.append("## Transition matrices (seed 4.3, 4.4)\n" + "\n\n".join(
        f"![{p.stem}]({_rel(p, out_dir)})" for p in images["matrices"]))
    parts.append("## KDE of intra- and inter-set distances\n" + "\n\n".join(
        f"![{p.stem}]({_rel(p, out_dir)})" for p in images["kde"]))
    parts.append("## Piano rolls\n" + "\n\n".join(
        f"![{p.stem}]({_rel(p, out_dir)})" for p in images["piano_rolls"]))
    return "\n\n".join(parts) + "\n"


def _bar_notes(fig: dict[str, Any]) -> str:
    """How the pitch and distinct-bar bars were measured (they use more than the N melodies)."""
    notes = []
    for s in fig["sets"].values():
        p = s["quality_bars"].get("pitch_std_within_25pct", {})
        if "ratio_reference_set" in p:
            notes.append(f"Pitch std: each model's {p['basis']} (pitch std {p['reference']:.2f}); the "
                         "ratio against the reference set's N melodies is given beside it.")
            break
    for s in fig["sets"].values():
        d = s["quality_bars"].get("distinct_bars_at_least_90pct")
        if d:
            r = d["reference"]
            notes.append(f"Distinct bars (bar models): the mean share of distinct bars among {d['n']:,} "
                         f"generated bars over {d['draws']} draws, each after the real bar before a random "
                         f"validation bar, against the corpus's mean share among {r['n']:,} random training "
                         f"bars over {r['draws']} draws ({r['distinct_share']:.3f}).")
            break
    return "".join(f"{n}\n\n" for n in notes)


def _pitch_cells(p: dict) -> list[str]:
    return [_f(p["pitch_mean"], 2), _f(p["pitch_std"], 2), _f(p["pitch_std_per_melody"], 2),
            _f(p["notes_per_melody"], 1), str(p["empty_melodies"]), _f(p.get("distinct_bars"), 3)]


def _rel(path: Path, out_dir: Path) -> str:
    return path.relative_to(out_dir).as_posix()


def write(ev: Evaluation, settings: dict[str, Any], out_dir: Path, piano_roll_n: int = 4) -> dict[str, Any]:
    """Write the PNGs, figures.json and report.md into `out_dir`; returns the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = figures(ev, settings)
    images: dict[str, list[Path]] = {
        "matrices": [plots.transition_heatmaps(ev, m, out_dir / f"{m}.png") for m in MATRICES],
        "kde": [plots.kde_plots(ev.reference, s, out_dir / f"kde_{_safe(n)}.png")
                for n, s in ev.sets.items()],
        "piano_rolls": [],
    }
    if piano_roll_n:
        for name, s in [("reference", ev.reference), *ev.sets.items()]:
            images["piano_rolls"].append(plots.piano_roll(
                s.melodies[:piano_roll_n], f"{name}: the first {piano_roll_n} melodies",
                out_dir / f"piano_roll_{_safe(name)}.png"))
    text = json.dumps(_plain(fig), indent=2, allow_nan=False)
    (out_dir / "figures.json").write_text(text + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(fig, images, out_dir), encoding="utf-8")
    return fig


def _plain(x: Any) -> Any:
    """NaN (a figure that does not exist, e.g. NLL of an empty set) becomes null: strict JSON."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
