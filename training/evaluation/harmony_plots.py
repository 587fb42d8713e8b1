"""The PNGs of `jamd eval --harmony`, with matplotlib's object API (no pyplot, no global state).

* `transition_heatmaps`: chord changes, row-normalised (the share of changes
  from a chord that go to each other chord), for several sets side by side
  over the same chords, the ones taking part in most changes;
* `piano_roll`: one tune's melody, chords and bass, for one or more systems.

The piano roll voices chords simply, as this module's own choice and not the
daemon's voicing: each chord's tones in the octave from `lowest` up (so C is
``lowest``..``lowest+11`` in close position), the bass an octave below that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jamd.music import chords
from jamd.tokens import symbols_to_notes

from .harmony_metrics import top_chords
from .harmony_systems import Output
from .harmony_tunes import Beats


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def transition_heatmaps(matrices: dict[str, np.ndarray], path: Path, k: int = 12) -> Path:
    """One heatmap per (title, [49, 49] change counts) of `matrices`, over their `k` busiest chords."""
    keep = top_chords(list(matrices.values()), k) or [chords.chord_id(0, 0)]
    labels = [chords.chord_name(c) for c in keep]
    fig = _figure(4.6 * len(matrices) + 0.8, 4.4)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (title, m) in zip(axes, matrices.items(), strict=True):
        sub = m[np.ix_(keep, keep)].astype(np.float64)
        rows = sub.sum(axis=1, keepdims=True)
        share = np.divide(sub, rows, out=np.zeros_like(sub), where=rows > 0)
        image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\n({int(m.sum())} changes)", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("to")
        ax.set_ylabel("from")
    fig.subplots_adjust(left=0.07, right=0.88, bottom=0.15, top=0.85, wspace=0.35)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the changes from a chord")
    fig.suptitle("Chord changes (repeated chords left out), in C major / A minor", fontsize=10)
    fig.savefig(path)
    return path


def voiced(chord: int, lowest: int) -> list[int]:
    """MIDI pitches of `chord`'s tones in the octave ``lowest .. lowest + 11`` (this plot's voicing)."""
    return sorted(lowest + (t - lowest) % 12 for t in chords.chord_tones(chord))


def _spans(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(start beat, beats, value) of each run of equal values."""
    out: list[tuple[int, int, int]] = []
    for b, v in enumerate(int(x) for x in values):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], out[-1][1] + 1, v)
        else:
            out.append((b, 1, v))
    return out


def piano_roll(beats: Beats, outputs: dict[str, Output], path: Path, lowest: int = 48,
               max_bars: int = 16) -> Path:
    """Melody (blue), voiced chords (orange, named) and bass (green) of `beats`' tune under each
    system of `outputs`, one row per system, the first `max_bars` bars; x in beats."""
    tune = beats.tune
    n = min(beats.n, tune.pickup_beats + max_bars * tune.beats_per_bar)
    notes = [m for m in symbols_to_notes(tune.symbols[:n * 4]) if m.start < n * 4]
    fig = _figure(12, 3.2 * len(outputs) + 0.6)
    axes = fig.subplots(len(outputs), 1, squeeze=False)[:, 0]
    for ax, (title, out) in zip(axes, outputs.items(), strict=True):
        for m in notes:
            ax.broken_barh([(m.start / 4, m.duration / 4)], (m.pitch - 0.4, 0.8), color="tab:blue")
        pitches = [m.pitch for m in notes]
        for start, length, chord in _spans(out.chords[:n]):
            if chord == chords.NO_CHORD:
                continue
            for p in voiced(chord, lowest):
                ax.broken_barh([(start + 0.03, length - 0.06)], (p - 0.4, 0.8), color="tab:orange")
                pitches.append(p)
            # names just above the axes (x in beats, y in axes fractions), clear of the notes
            ax.text(start + 0.05, 1.01, chords.chord_name(chord), fontsize=7, va="bottom",
                    transform=ax.get_xaxis_transform())
        if out.bass is not None:
            for start, length, bass in _spans(out.bass[:n]):
                if bass >= 0:
                    p = lowest - 12 + (bass - lowest) % 12
                    ax.broken_barh([(start + 0.03, length - 0.06)], (p - 0.4, 0.8), color="tab:green")
                    pitches.append(p)
        for bar in range(tune.pickup_beats, n + 1, tune.beats_per_bar):
            ax.axvline(bar, color="0.8", linewidth=0.8, zorder=0)
        ax.set_xlim(0, n)
        ax.set_ylim(min(pitches, default=lowest - 12) - 2, max(pitches, default=lowest + 24) + 2)
        ax.set_title(title, fontsize=9, pad=14)
        ax.set_ylabel("MIDI pitch", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("beats (quarter notes); grey lines are bar lines")
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.5 / height, top=1 - 0.9 / height, hspace=0.55)
    fig.suptitle(f"{tune.name}: melody (blue), chords (orange, close position from MIDI {lowest}), "
                 f"bass (green), in C/Am", fontsize=10)
    fig.savefig(path)
    return path
