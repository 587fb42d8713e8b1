"""The report's PNGs, with matplotlib's object API (no pyplot, no global state).

* transition-matrix heatmaps: the reference and every generated set side by
  side, on one colour scale, so equal colours mean equal shares;
* KDE plots of intra- and inter-set distances per feature, one PNG per
  generated set, like the seed's figures 5.10-5.13 (which drew the two
  intra-set curves; the inter-set curve is what the overlap area uses);
* a piano roll of a few melodies of each set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .compare import Evaluation, SetEvaluation
from .distances import Kde
from .features import FEATURES, LENGTH_LABELS
from .melodies import Melody

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MATRIX_TITLES = {
    "pitch_class_transition_matrix": ("Pitch class transitions", PITCH_CLASSES),
    "note_length_transition_matrix": ("Note length transitions (beats)", LENGTH_LABELS),
}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # fixed margins (subplots_adjust) rather than constrained layout, which
    # measures every tick label and triples the drawing time
    return Figure(figsize=(width, height), dpi=100)


def transition_heatmaps(ev: Evaluation, matrix: str, path: Path) -> Path:
    title, labels = MATRIX_TITLES[matrix]
    names = ["reference", *ev.sets]
    mats = [ev.matrices[n][matrix] for n in names]
    vmax = max(float(m.max()) for m in mats) or 1.0
    fig = _figure(4.2 * len(names) + 0.8, 4.0)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    image = None
    for ax, name, m in zip(axes, names, mats, strict=True):
        image = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90 if len(labels) > 8 else 0)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("next")
        ax.set_ylabel("previous")
    fig.subplots_adjust(left=0.06, right=0.9, bottom=0.12, top=0.88, wspace=0.35)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of transitions")
    fig.suptitle(f"{title}: average of each melody's normalised matrix")
    fig.savefig(path)
    return path


def kde_plots(ref: SetEvaluation, ev: SetEvaluation, path: Path) -> Path:
    names = list(FEATURES)
    cols = 3
    rows = -(-len(names) // cols)
    fig = _figure(4.2 * cols, 3.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, feat in zip(axes, names, strict=False):
        d = ev.distances[feat]
        curves = (
            (d["intra_reference"], "intra reference", "tab:blue", "-"),
            (d["intra_generated"], f"intra {ev.name}", "tab:orange", "-"),
            (d["inter"], f"inter {ev.name} / reference", "tab:green", "--"),
        )
        everything = np.concatenate([np.ravel(c[0]) for c in curves])
        span = float(everything.max() - everything.min())
        kdes = [Kde(c[0], 0.01 * span if span > 0 else 1e-3) for c in curves]
        pad = 4 * max(k.bandwidth for k in kdes)
        # distances are never negative: the curves start just below 0 (a spike at 0 shows)
        grid = np.linspace(min(everything.min(), max(everything.min() - pad, -pad / 4)),
                           everything.max() + pad, 512)
        for kde, (_, label, colour, style) in zip(kdes, curves, strict=True):
            ax.plot(grid, kde.on_grid(grid), color=colour, linestyle=style, label=label)
        fig_oa = ev.features[feat]["overlap_area"]
        ax.set_title(f"{feat}\noverlap {fig_oa:.2f}, KL {ev.features[feat]['kl_divergence']:.2f}", fontsize=9)
        ax.set_xlabel("Euclidean distance", fontsize=8)
        ax.set_ylabel("probability density", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.06, top=0.9, hspace=0.65, wspace=0.22)
    fig.suptitle(f"KDE of intra- and inter-set distances: {ev.name} against {ref.source}", fontsize=10)
    fig.savefig(path)
    return path


def piano_roll(melodies: list[Melody], title: str, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    melodies = melodies or [Melody("(none)", (), 16)]
    fig = _figure(11, 1.6 * len(melodies) + 0.6)
    axes = fig.subplots(len(melodies), 1, squeeze=False)[:, 0]
    for ax, m in zip(axes, melodies, strict=True):
        # x in beats, so bar lines (every 4 beats) line up across rows; one collection per pitch
        by_pitch: dict[int, list[tuple[float, float]]] = {}
        for n in m.notes:
            by_pitch.setdefault(n.pitch, []).append((n.start / 4, n.duration / 4))
        for pitch, spans in by_pitch.items():
            ax.broken_barh(spans, (pitch - 0.4, 0.8), color="tab:blue")
        pitches = m.pitches or [60]
        ax.set_xlim(0, max(m.n_steps, 1) / 4)
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
        for beat in range(0, m.n_steps // 4 + 1, 4):
            ax.axvline(beat, color="0.85", linewidth=0.8, zorder=0)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # MIDI pitches are whole
        ax.set_ylabel(m.name, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("beats")
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.6 / height, top=1 - 0.4 / height, hspace=0.35)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    return path
