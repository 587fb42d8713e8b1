"""Key detection and key normalisation.

Models are trained on tunes moved to C major or A minor (the seed's
normalisation).  A player's phrase is analysed with the key finder of
music21's `Stream.analyze('key')`: Krumhansl-Schmuckler correlation of the
phrase's duration-weighted pitch-class histogram with the Aarden-Essen key
profiles, moved to C/Am for the model, and the model's answer is moved back
by the opposite shift.

The analysis is written out here rather than called in music21: in `jamd run`
music21 costs ~1 s of import (several on a Raspberry Pi 4) and ~30 MB of
memory for a 12-bin histogram and 24 correlations.  The arithmetic follows
music21 10's `analysis.discrete.KeyWeightKeyAnalysis` term by term (same
weights, same sums in the same order, same tie-break), so the answers are the
same floats and the same keys: tests/test_footprint_keys.py checks that against
music21 itself over corpus tunes and random phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..tokens import Note, fold_to_midi

PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")

# music21.analysis.discrete.AardenEssen.getWeights: the profiles behind analyze('key'),
# index 0 the tonic, in semitones above it.
AARDEN_ESSEN_MAJOR = (17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587,
                      0.291248, 22.062, 0.145624, 8.15494, 0.232998, 4.95122)
AARDEN_ESSEN_MINOR = (18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362,
                      0.702494, 18.6161, 4.56621, 1.93186, 7.37619, 1.75623)


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0-11
    mode: str  # "major" or "minor"

    @property
    def name(self) -> str:
        return f"{PITCH_CLASS_NAMES[self.tonic]} {self.mode}"

    def shift_to_normal(self) -> int:
        """Semitones that move this key to C major / A minor, in -6..+5.

        The seed transposes by the interval from the tonic to C or A as
        written, which can move a tune by up to 11 semitones; the smallest
        shift keeps the melody in the register it was written in.
        """
        target = 0 if self.mode == "major" else 9
        shift = (target - self.tonic) % 12
        return shift - 12 if shift > 5 else shift


def key_from_music21(m21key) -> Key:
    mode = "minor" if m21key.mode == "minor" else "major"
    return Key(m21key.tonic.pitchClass, mode)


def pitch_class_histogram(notes: Sequence[Note]) -> list[float]:
    """Time spent on each pitch class 0-11, in quarter notes (a note of under one 16th counts one).

    As music21 weighs a phrase put into a stream with `quarterLength = max(duration, 1) / 4`.
    """
    hist: list[float] = [0] * 12
    for n in sorted(notes):
        hist[n.pitch % 12] += max(n.duration, 1) / 4
    return hist


def key_correlations(hist: Sequence[float], profile: Sequence[float]) -> list[float]:
    """Pearson correlation of `hist` (12 pitch classes) with `profile` rotated to each tonic 0-11.

    music21's `KeyWeightKeyAnalysis._getDifference`, the same sums in the same order (so
    the same floats); 0.0 where either side has no variance.
    """
    profile_mean = sum(profile) / len(profile)
    hist_mean = sum(hist) / len(hist)
    out = [0.0] * 12
    for i in range(12):
        top = bottom_right = bottom_left = 0.0
        for j in range(12):
            w = profile[(j - i) % 12] - profile_mean
            h = hist[j] - hist_mean
            top = top + w * h
            bottom_right = bottom_right + w ** 2
            bottom_left = bottom_left + h ** 2
        out[i] = 0.0 if bottom_right == 0 or bottom_left == 0 else float(top / ((bottom_right * bottom_left) ** 0.5))
    return out


def detect_key(notes: Sequence[Note]) -> Key:
    """The key of a phrase (`Note`s: MIDI pitch, start and duration in 16ths), as music21's
    `analyze('key')` finds it; C major for no notes.

    The best of 24 correlations (`key_correlations`, Aarden-Essen profiles); a tie goes,
    as in music21's descending sort, to the higher tonic pitch class, then to minor.
    """
    if not notes:
        return Key(0, "major")
    hist = pitch_class_histogram(notes)
    candidates = [(r, tonic, mode)
                  for mode, profile in (("major", AARDEN_ESSEN_MAJOR), ("minor", AARDEN_ESSEN_MINOR))
                  for tonic, r in enumerate(key_correlations(hist, profile))]
    _r, tonic, mode = max(candidates)
    return Key(tonic, mode)


def transpose_notes(notes: Sequence[Note], semitones: int) -> list[Note]:
    """Notes moved by `semitones`; one pushed past MIDI's 0-127 (127 moved up from A
    major to C is 130) is folded back by octaves, so its pitch class is kept."""
    return [Note(n.start, fold_to_midi(n.pitch + semitones), n.duration) for n in notes]
