"""music21's key analysis (`Stream.analyze('key')`, Aarden-Essen weights) without music21 streams.

`jamd.music.keys.detect_key` builds a music21 stream and calls its analysis:
about 10 ms a tune, more than symusic takes to read the whole file.  This is
the same arithmetic in the same order (music21's `KeyWeightKeyAnalysis`:
a duration-weighted pitch-class histogram, Pearson's correlation with each
of the 24 rotated profiles, the highest wins; ties go to the higher pitch
class, then minor), so it returns the very key `detect_key` returns; a
hypothesis test holds the two together.
"""

from __future__ import annotations

from collections.abc import Sequence

from jamd.music.keys import Key
from jamd.tokens import Note

# music21.analysis.discrete.AardenEssen.getWeights (the default of analyze('key'))
_WEIGHTS = {
    "major": [17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624,
              8.15494, 0.232998, 4.95122],
    "minor": [18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621,
              1.93186, 7.37619, 1.75623],
}


def _tables(weights: list[float]) -> tuple[list[list[float]], list[float]]:
    # the profile side of music21's _getDifference, computed once: rows[i][j] and the sums of squares
    average = sum(weights) / len(weights)
    rows = [[weights[(j - i) % 12] - average for j in range(12)] for i in range(12)]
    squares = []
    for row in rows:
        right = 0.0
        for w in row:
            right = right + w**2
        squares.append(right)
    return rows, squares


_TABLES = {mode: _tables(w) for mode, w in _WEIGHTS.items()}


def _correlations(dist: list[float], mode: str) -> list[float]:
    # music21's _getDifference, sum for sum in the same order: the same floats give the same ties
    rows, squares = _TABLES[mode]
    histogram_average = sum(dist) / len(dist)
    deltas = [x - histogram_average for x in dist]
    left = 0.0
    for d in deltas:
        left = left + d**2
    out = [0.0] * 12
    for i, row in enumerate(rows):
        top = 0.0
        for w, d in zip(row, deltas, strict=True):
            top = top + w * d
        right = squares[i]
        out[i] = 0.0 if right == 0 or left == 0 else float(top / ((right * left) ** 0.5))
    return out


def analyse_key(notes: Sequence[Note]) -> Key:
    """The key music21's `analyze('key')` finds for `notes` (steps of 16ths), as `detect_key` asks it:
    each note weighs max(duration, 1) / 4 quarter lengths.  No notes: C major."""
    if not notes:
        return Key(0, "major")
    dist: list[float] = [0] * 12  # type: ignore[list-item]  # ints until a note adds, as music21's
    for n in sorted(notes):
        dist[n.pitch % 12] += max(n.duration, 1) / 4
    ranked = []
    for mode in ("major", "minor"):
        ranked += [(c, pc, mode) for pc, c in enumerate(_correlations(dist, mode))]
    ranked.sort()
    _, pc, mode = ranked[-1]
    return Key(pc, mode)
