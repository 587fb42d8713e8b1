"""Key detection and key normalisation, with music21.

Models are trained on tunes moved to C major or A minor (the seed's
normalisation).  A player's phrase is analysed with music21's
Krumhansl-Schmuckler key finder, moved to C/Am for the model, and the model's
answer is moved back by the opposite shift.

music21 is imported lazily: it takes most of a second to import and only the
paths that analyse a key need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..tokens import Note, fold_to_midi

PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")


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


def detect_key(notes: Sequence[Note]) -> Key:
    """Krumhansl-Schmuckler key of a phrase (music21's `analyze('key')`)."""
    if not notes:
        return Key(0, "major")
    from music21 import note as m21note
    from music21 import stream

    s = stream.Stream()
    for n in sorted(notes):
        m = m21note.Note(n.pitch)
        m.quarterLength = max(n.duration, 1) / 4
        s.insert(n.start / 4, m)
    return key_from_music21(s.analyze("key"))


def transpose_notes(notes: Sequence[Note], semitones: int) -> list[Note]:
    """Notes moved by `semitones`; one pushed past MIDI's 0-127 (127 moved up from A
    major to C is 130) is folded back by octaves, so its pitch class is kept."""
    return [Note(n.start, fold_to_midi(n.pitch + semitones), n.duration) for n in notes]
