"""Yang & Lerch's features (mgeval's `core.metrics`), one vector per melody.

The melodies are monophonic and on the 16th grid, so the features are
computed from `Note`s directly rather than from pretty_midi objects:

* times are in beats (a quarter note is 1), never in seconds: the seed's
  note-length code quantised seconds as if they were quarter notes, which
  is only right at 60 bpm;
* note lengths fall in 8 classes, the 16th-grid subset of mgeval's 12
  (triplets cannot occur in this encoding): 1/4, 1/2, 3/4, 1, 3/2, 2, 3 and
  4 beats or more; a length in between goes to the nearest class (ties to
  the shorter, i.e. a note plus a tied 16th);
* a transition is between consecutive notes, rests in between or not (the
  seed's choice; pretty_midi counts only notes that touch);
* histograms are normalised to sum 1 and transition matrices are counts,
  as in mgeval's defaults.

A melody with no notes gets zeros (and a range, interval and IOI of 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jamd.tokens import STEPS_PER_BAR_4_4, STEPS_PER_QUARTER

from .melodies import Melody

# Note-length classes in 16th steps; the last one takes everything longer.
LENGTH_CLASSES = np.array([1, 2, 3, 4, 6, 8, 12, 16])
LENGTH_LABELS = ("1/4", "1/2", "3/4", "1", "3/2", "2", "3", "4+")  # in beats


def length_class(steps: int) -> int:
    """Index of the nearest length class; ties go to the shorter one."""
    if steps >= LENGTH_CLASSES[-1]:
        return len(LENGTH_CLASSES) - 1
    return int(np.argmin(np.abs(LENGTH_CLASSES - steps)))  # argmin takes the first (shorter) on ties


def total_used_pitch(m: Melody) -> np.ndarray:
    return np.array([len(set(m.pitches))], float)


def pitch_class_histogram(m: Melody) -> np.ndarray:
    h = np.bincount([p % 12 for p in m.pitches], minlength=12).astype(float)
    return h / h.sum() if h.sum() else h


def pitch_class_transition_matrix(m: Melody) -> np.ndarray:
    pcs = [p % 12 for p in m.pitches]
    t = np.zeros((12, 12))
    np.add.at(t, (pcs[:-1], pcs[1:]), 1)
    return t


def pitch_range(m: Melody) -> np.ndarray:
    p = m.pitches
    return np.array([max(p) - min(p) if p else 0], float)


def avg_pitch_interval(m: Melody) -> np.ndarray:
    """Mean absolute interval between consecutive notes, in semitones."""
    p = np.array(m.pitches)
    return np.array([np.abs(np.diff(p)).mean() if len(p) > 1 else 0.0])


def total_used_note(m: Melody) -> np.ndarray:
    return np.array([len(m.notes)], float)


def _length_classes(m: Melody) -> list[int]:
    return [length_class(n.duration) for n in m.notes]


def note_length_histogram(m: Melody) -> np.ndarray:
    h = np.bincount(_length_classes(m), minlength=len(LENGTH_CLASSES)).astype(float)
    return h / h.sum() if h.sum() else h


def note_length_transition_matrix(m: Melody) -> np.ndarray:
    c = _length_classes(m)
    k = len(LENGTH_CLASSES)
    t = np.zeros((k, k))
    np.add.at(t, (c[:-1], c[1:]), 1)
    return t


def avg_ioi(m: Melody) -> np.ndarray:
    """Mean inter-onset interval in beats."""
    starts = np.array([n.start for n in m.notes], float) / STEPS_PER_QUARTER
    return np.array([np.diff(starts).mean() if len(starts) > 1 else 0.0])


FEATURES: dict[str, Callable[[Melody], np.ndarray]] = {
    "total_used_pitch": total_used_pitch,
    "pitch_class_histogram": pitch_class_histogram,
    "pitch_class_transition_matrix": pitch_class_transition_matrix,
    "pitch_range": pitch_range,
    "avg_pitch_interval": avg_pitch_interval,
    "total_used_note": total_used_note,
    "note_length_histogram": note_length_histogram,
    "note_length_transition_matrix": note_length_transition_matrix,
    "avg_ioi": avg_ioi,
}


def extract(melodies: Sequence[Melody]) -> dict[str, np.ndarray]:
    """Every feature of every melody: name -> array [n_melodies, *feature shape]."""
    return {name: np.stack([f(m) for m in melodies]) for name, f in FEATURES.items()}


def pitch_stats(melodies: Sequence[Melody]) -> dict[str, float]:
    """Pitch mean and standard deviation (seed 4.5), over all notes of the set.

    Pooled over notes, so a set that sits on a few pitches has a small
    deviation however its melodies differ; the per-melody mean deviation is
    given too, which drops when each melody alone is static.
    """
    pitches = np.array([p for m in melodies for p in m.pitches], float)
    per_melody = [np.std(m.pitches) for m in melodies if m.notes]
    return {
        "pitch_mean": float(pitches.mean()) if len(pitches) else 0.0,
        "pitch_std": float(pitches.std()) if len(pitches) else 0.0,
        "pitch_std_per_melody": float(np.mean(per_melody)) if per_melody else 0.0,
        "notes_per_melody": float(len(pitches) / max(len(melodies), 1)),
        "empty_melodies": int(sum(1 for m in melodies if not m.notes)),
        "distinct_bars": distinct_bar_share(melodies),
    }


def bar_grid(m: Melody) -> list[tuple]:
    """The melody's whole 4/4 bars (16 steps each), each as its 16 steps: the pitch of a note that
    starts there, -1 where a note is held, -2 where nothing sounds.  A bar cut short is left out."""
    steps = [-2] * m.n_steps
    for n in m.notes:
        for k in range(n.start, min(n.end, m.n_steps)):
            steps[k] = n.pitch if k == n.start else -1
    return [tuple(steps[b:b + STEPS_PER_BAR_4_4])
            for b in range(0, m.n_steps - STEPS_PER_BAR_4_4 + 1, STEPS_PER_BAR_4_4)]


def distinct_bar_share(melodies: Sequence[Melody]) -> float:
    """Mean over melodies of at least two whole bars of (distinct bars / bars), bars compared
    step by step (`bar_grid`): 1.0 never repeats a bar; folk tunes repeat theirs (issue 16:
    Erk's validation tunes 0.78 over 8 bars).  0.0 when no melody has two bars."""
    shares = [len(set(bars)) / len(bars) for m in melodies if len(bars := bar_grid(m)) >= 2]
    return float(np.mean(shares)) if shares else 0.0


def average_matrix(melodies: Sequence[Melody], feature: str) -> np.ndarray:
    """The set's average transition matrix, each melody's normalised to sum 1.

    Normalising first makes it the share of each transition, so sets whose
    melodies have different numbers of notes can be compared by eye.
    """
    f = FEATURES[feature]
    mats = []
    for m in melodies:
        t = f(m)
        if t.sum():
            mats.append(t / t.sum())
    return np.mean(mats, axis=0) if mats else f(Melody("", (), 0))
