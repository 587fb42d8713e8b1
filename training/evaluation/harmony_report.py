"""The `jamd eval --harmony` report: `report.md` with the PNGs, `figures.json` with the same figures,
the goals (pass or fail, and by how much) and the recommended ``harmony.melody_fit``.

The figures dict (built by `harmony_pipeline.run`) is the single source: the
JSON is it verbatim and every Markdown table is drawn from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import harmony_plots
from .harmony_systems import Output
from .harmony_tunes import Beats

CHORD_TONE_GOAL = 0.85  # folk tunes, online
DISTINCT_GOAL = 2.0  # distinct chords per 4 bars, folk tunes, online
AGREEMENT_SLACK = 0.02  # the melody_fit recommendation's allowance on the chorales' agreement


def _goal(key: str, text: str, value: float | None, target: float | None, strict: bool = False,
          note: str = "") -> dict[str, Any]:
    ok = value is not None and target is not None and (value > target if strict else value >= target)
    short = None if ok or value is None or target is None else target - value
    return {"id": key, "text": text, "value": value, "target": target, "ok": ok, "short_by": short,
            "note": note}


def goals(fig: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals on the main rows: folk tunes at their rhythm, chorales at ``beat``."""
    folk = fig["rhythms"]["folk"][fig["sets"]["folk"]["rhythm"]]
    bach = fig["rhythms"]["chorales"][fig["sets"]["chorales"]["rhythm"]]
    model, rule = folk["model online"], folk["rule online"]
    return [
        _goal("folk_chord_tones", f"folk tunes, online: chord-tone share >= {CHORD_TONE_GOAL}",
              model["chord_tone_share"], CHORD_TONE_GOAL),
        _goal("folk_chord_tones_vs_rule", "folk tunes, online: chord-tone share >= the rule-based "
              "baseline's, online (like the model online, it hears only the notes before the beat)",
              model["chord_tone_share"], rule["chord_tone_share"],
              note=f"the rule with lookahead (the note on the beat) scores "
                   f"{_f(folk['rule lookahead']['chord_tone_share'])}, the model with lookahead "
                   f"{_f(folk['model lookahead']['chord_tone_share'])}"),
        _goal("folk_distinct", f"folk tunes, online: distinct chords per 4 bars >= {DISTINCT_GOAL:g}",
              model["distinct_per_4_bars"], DISTINCT_GOAL),
        _goal("chorales_agreement", "chorales, online: agreement with Bach above the Markov baseline's "
              "(argmax)", bach["model online"]["agreement"], bach["markov"]["agreement"], strict=True),
    ]


def recommend_melody_fit(scan: dict[str, Any]) -> dict[str, Any]:
    """The scanned value with the best folk-tune chord-tone share, the mean of online and lookahead
    (one melody_fit serves both), among those whose chorale agreement, online and with lookahead,
    stays within `AGREEMENT_SLACK` of the best scanned (fitting the melody harder than Bach did
    costs agreement).  Ties: the smaller value."""
    keys = [f"{v:g}" for v in scan["values"]]

    def get(name: str, k: str, mode: str, what: str) -> float:
        return scan[name][k][mode][what] or 0.0

    best = {mode: max(get("chorales", k, mode, "agreement") for k in keys) for mode in ("online", "lookahead")}
    fine = [k for k in keys if all(get("chorales", k, m, "agreement") >= best[m] - AGREEMENT_SLACK for m in best)]
    tones = {k: (get("folk", k, "online", "chord_tone_share") + get("folk", k, "lookahead", "chord_tone_share")) / 2
             for k in keys}
    pick = max(fine or keys, key=lambda k: (tones[k], -float(k)))
    rule = (f"best folk chord-tone share, mean of online and lookahead ({tones[pick]:.3f}), among the values "
            f"whose chorale agreement stays within {AGREEMENT_SLACK} of the best scanned (online "
            f"{best['online']:.3f}, lookahead {best['lookahead']:.3f})")
    return {"value": float(pick), "rule": rule, "kept": [float(k) for k in fine]}


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


SET_COLUMNS = {
    "chorales": [("agreement", "agreement"), ("chord_tone_share", "chord-tone share"),
                 ("in_key_share", "in-key share"), ("distinct_per_4_bars", "distinct / 4 bars"),
                 ("distinct_per_8_bars", "distinct / 8 bars")],
    "folk": [("chord_tone_share", "chord-tone share"), ("in_key_share", "in-key share"),
             ("distinct_per_4_bars", "distinct / 4 bars"), ("windows_4_with_2_chords", "4-bar windows with >= 2"),
             ("distinct_per_8_bars", "distinct / 8 bars")],
}
RHYTHM_SYSTEMS = ("model online", "model online, melody head", "model lookahead", "rule online", "rule lookahead",
                  "markov")


def set_table(fig: dict[str, Any], name: str) -> str:
    s = fig["sets"][name]
    rows = fig["rhythms"][name][s["rhythm"]]
    cols = SET_COLUMNS[name]
    return _table(["system", *(c[1] for c in cols)],
                  [[system, *(_f(r[c[0]]) for c in cols)] for system, r in rows.items()])


def rhythm_table(fig: dict[str, Any]) -> str:
    body = []
    for system in RHYTHM_SYSTEMS:
        for rhythm, rows in fig["rhythms"]["folk"].items():
            if system not in rows:  # the melody head row exists only beside a forecast
                continue
            c, f = fig["rhythms"]["chorales"][rhythm][system], rows[system]
            body.append([system, rhythm, _f(c["agreement"]), _f(c["chord_tone_share"]), _f(f["chord_tone_share"]),
                         _f(f["in_key_share"]), _f(f["distinct_per_4_bars"], 2)])
    return _table(["system", "rhythm", "chorales agreement", "chorales chord-tone", "folk chord-tone",
                   "folk in-key", "folk distinct / 4 bars"], body)


def scan_table(scan: dict[str, Any]) -> str:
    body = []
    for v in scan["values"]:
        k = f"{v:g}"
        c, f = scan["chorales"][k], scan["folk"][k]
        body.append([k, _f(c["online"]["agreement"]), _f(c["lookahead"]["agreement"]),
                     _f(f["online"]["chord_tone_share"]), _f(f["lookahead"]["chord_tone_share"]),
                     _f(f["online"]["in_key_share"]), _f(f["online"]["distinct_per_4_bars"], 2),
                     _f(f["lookahead"]["distinct_per_4_bars"], 2)])
    return _table(["melody_fit", "chorales agreement online", "lookahead", "folk chord-tone online", "lookahead",
                   "folk in-key online", "folk distinct / 4 bars online", "lookahead"], body)


def goal_lines(fig: dict[str, Any]) -> list[str]:
    """One line per goal: pass or FAIL, the value against its target, by how much it misses."""
    out = []
    for g in fig["goals"]:
        verdict = "pass" if g["ok"] else "FAIL"
        line = f"{verdict}: {g['text']}: {_f(g['value'])} vs {_f(g['target'])}"
        if g["short_by"] is not None:
            line += f" (short by {g['short_by']:.3f})"
        out.append(line)
    return out


def markdown(fig: dict[str, Any], images: dict[str, Path], out_dir: Path) -> str:
    st = fig["settings"]
    rec = fig["recommended_melody_fit"]
    parts = [
        "# jamd eval --harmony report",
        f"Command: `{st['command']}`  \nModel {st['model']} · temperature {st['temperature']:g} (and 0: the "
        f"`T=0` rows) · melody_fit {st['melody_fit']:g} · folk rhythm {st['rhythm']} · Markov order "
        f"{st['markov_order']} (argmax; `T={st['markov_sampled_temperature']:g}`: sampled) · random seed "
        f"{st['random_seed']} · systems that sample are run {st['draws']} times over, counts pooled  \n"
        f"Model online guesses the span's notes with {st['online_predictor']}; lookahead reads them",
        "## Sets\n" + "\n".join(
            f"- **{n}** ({s['beats']} beats, rhythm {s['rhythm']}): {s['source']}"
            + (f"; left out: {', '.join(f'{k} ({v})' for k, v in s['skipped'].items())}" if s["skipped"] else "")
            for n, s in fig["sets"].items()),
        "## Goals\n" + "\n".join(f"- {line}" for line in goal_lines(fig))
        + "".join(f"\n  - {g['note']}" for g in fig["goals"] if g["note"]),
        "## Chorales (validation split, free-running, rhythm beat)\nAgreement: share of beats whose chord "
        "equals Bach's (beats labelled N left out). `bach`: his own chords.\n\n" + set_table(fig, "chorales"),
        f"## Folk tunes (validation split, rhythm {fig['sets']['folk']['rhythm']})\nChord-tone share: melody "
        "notes starting on a beat that are tones of the chord then. In-key: chord notes in C major (major "
        "tunes) or in A natural or harmonic minor (minor tunes).\n\n" + set_table(fig, "folk"),
        "## Harmonic rhythm\n" + rhythm_table(fig),
        f"## melody_fit scan (temperature {fig['melody_fit_scan']['temperature']:g}, "
        f"{fig['melody_fit_scan']['draws']} draws pooled; online: {fig['melody_fit_scan']['online_predictor']})\n"
        + scan_table(fig["melody_fit_scan"])
        + f"\n\nRecommended: **melody_fit {rec['value']:g}** ({rec['rule']}).",
        "## Chord changes\n" + f"![transitions]({images['transitions'].relative_to(out_dir).as_posix()})",
        "## A folk tune harmonised\n" + f"![piano roll]({images['piano_roll'].relative_to(out_dir).as_posix()})",
    ]
    return "\n\n".join(parts) + "\n"


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write(fig: dict[str, Any], out_dir: Path, matrices: dict[str, np.ndarray], roll: Beats,
          roll_outputs: dict[str, Output], lowest: int) -> dict[str, Any]:
    """Write the PNGs, figures.json and report.md into `out_dir`; returns `fig`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {"transitions": harmony_plots.transition_heatmaps(matrices, out_dir / "chord_transitions.png"),
              "piano_roll": harmony_plots.piano_roll(roll, roll_outputs, out_dir / "piano_roll_folk.png", lowest)}
    fig = _plain(fig)
    (out_dir / "figures.json").write_text(json.dumps(fig, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(fig, images, out_dir), encoding="utf-8")
    return fig
