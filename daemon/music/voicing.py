"""Chord voicing with smooth voice leading, and the bass note under it.

A `Voicer` turns the harmony model's chord ids (C major / A minor,
`jamd.music.chords`) into sounding MIDI pitches for one chords part:

* **Voices.** A triad sounds its three tones, a dominant seventh all four;
  nothing is doubled, so a chord has 3 or 4 notes.
* **Positions.** The candidates are the close positions (every tone once,
  all within an octave: root position and each inversion) at every octave
  that fits inside ``[lowest, highest]`` (config ``harmony.chords_lowest`` /
  ``chords_highest``) and below the melody.
* **Voice leading.** After the first chord, the candidate with the least
  total movement from the previous voicing wins (`movement`); ties go to the
  voicing whose mean pitch is nearer the middle of the range, then to the
  lower one.  The first chord after `Voicer.reset` is the close position whose
  mean pitch is nearest the middle of the range (ties: the lower).
* **The bass** is one pitch class placed in the octave below the chord's
  lowest note (`Voicer.bass`).

Pure: no model, no I/O; deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from .chords import NO_CHORD, chord_tones, root_of


def close_positions(pitch_classes: Sequence[int], lowest: int, highest: int) -> list[tuple[int, ...]]:
    """Every close position of `pitch_classes` (each once, within an octave) inside ``[lowest, highest]``.

    Ascending tuples of MIDI pitches, sorted; empty when none fits.
    """
    pcs = sorted({p % 12 for p in pitch_classes})
    out: list[tuple[int, ...]] = []
    for bottom_pc in pcs:
        above = sorted((p - bottom_pc) % 12 for p in pcs)  # 0 first: the bottom tone
        first = lowest + (bottom_pc - lowest) % 12
        for bottom in range(first, highest + 1, 12):
            voicing = tuple(bottom + i for i in above)
            if voicing[-1] <= highest:
                out.append(voicing)
    return sorted(out)


def movement(prev: Sequence[int], new: Sequence[int]) -> int:
    """Total semitones the voices move from voicing `prev` to `new` (both ascending).

    Equal sizes: voices matched in order, ``sum |new[i] - prev[i]|``.  A triad
    to a seventh chord or back: the smaller voicing is matched in order to the
    best choice of all but one note of the larger, and the note left over
    counts its distance to the nearest note of the smaller.
    """
    if len(prev) == len(new):
        return sum(abs(a - b) for a, b in zip(prev, new, strict=True))
    small, large = (prev, new) if len(prev) < len(new) else (new, prev)
    if not small:
        return 0
    if len(large) != len(small) + 1:
        raise ValueError(f"voicings of {len(prev)} and {len(new)} notes cannot be matched")
    best = None
    for k in range(len(large)):
        rest = list(large[:k]) + list(large[k + 1:])
        cost = sum(abs(a - b) for a, b in zip(small, rest, strict=True)) + min(abs(large[k] - s) for s in small)
        best = cost if best is None else min(best, cost)
    return best


class Voicer:
    """Chord voicing with smooth voice leading; one per chords part (see the module doc).

    `lowest`, `highest`: the chord notes' MIDI range, at least an octave wide
    (config ``harmony.chords_lowest`` / ``chords_highest``); `ValueError` otherwise.
    """

    def __init__(self, lowest: int, highest: int):
        if highest - lowest < 12:
            raise ValueError(f"chord range {lowest}-{highest} is narrower than an octave")
        self.lowest = lowest
        self.highest = highest
        self.middle = (lowest + highest) / 2
        self.reset()

    def reset(self) -> None:
        """Forget the previous voicing: the next chord is voiced near the middle of the range."""
        self.previous: tuple[int, ...] | None = None

    def voice(self, chord: int, transpose: int, below: int | None = None, *,
              bass_pc: int | None = None) -> tuple[list[int], int | None]:
        """The sounding pitches of `chord` and its bass: (chord pitches ascending, bass pitch).

        `chord`: an id in C/Am (`jamd.music.chords`); ``NO_CHORD`` gives ``([], None)``
        and leaves the previous voicing as it was.  `transpose`: semitones from C/Am to
        the sounding key.  `below`: the lowest melody pitch over the chord's span (None:
        unknown): every chord note is then strictly below it where a close position
        fits between `lowest` and ``below - 1``.  Where the melody is lower than
        that, the chord takes its lowest close position inside ``[lowest, highest]``
        (least top note; ties by voice leading), so it reaches up to or above the
        melody, but it is never moved below `lowest` or dropped.  `bass_pc`: the bass
        pitch class in C/Am (`Harmony.bass`); None: the chord's root.  The chord
        pitches are 3 notes for a triad, 4 for a dominant seventh (nothing doubled).
        """
        if chord == NO_CHORD:
            return [], None
        pcs = [(t + transpose) % 12 for t in chord_tones(chord)]
        top = self.highest if below is None else min(self.highest, below - 1)
        candidates = close_positions(pcs, self.lowest, top)
        if not candidates:  # the melody is too low for a full chord under it
            everything = close_positions(pcs, self.lowest, self.highest)
            least_top = min(v[-1] for v in everything)
            candidates = [v for v in everything if v[-1] == least_top]
        chosen = min(candidates, key=self._rank)
        self.previous = chosen
        pitches = list(chosen)
        root = root_of(chord) if bass_pc is None else bass_pc
        return pitches, self.bass(root + transpose, pitches)

    def bass(self, bass_pc: int | None, chord_pitches: list[int]) -> int | None:
        """Pitch class `bass_pc` (any integer, taken mod 12) in the octave below the chord's lowest note.

        ``lowest - 12 <= bass < lowest`` where ``lowest = min(chord_pitches)``;
        None when `bass_pc` is None or there are no chord pitches.
        """
        if bass_pc is None or not chord_pitches:
            return None
        low = min(chord_pitches)
        return low - 12 + (bass_pc - low) % 12

    def _rank(self, voicing: tuple[int, ...]) -> tuple:
        nearness = abs(sum(voicing) / len(voicing) - self.middle)
        moved = 0 if self.previous is None else movement(self.previous, voicing)
        return moved, nearness, voicing
