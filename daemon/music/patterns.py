"""How the chords and bass parts are played, beat by beat, and writing them as notes.

`part_actions` says which part strikes on a beat under a pattern (config
``harmony.pattern``); `PartWriter` turns one part's per-beat decisions into
`jamd.tokens.Note` (16th steps), saying for each beat what starts, what is
extended and what ended, so the live side can schedule note-ons and move
note-offs, and a MIDI file can be written from `PartWriter.notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tokens import Note

PATTERNS = ("sustained", "beats")


def part_actions(pattern: str, changed: bool, beat_in_bar: int, beats_per_bar: int) -> dict[str, bool]:
    """``{"chords": strike?, "bass": strike?}`` for one beat; False: hold what sounds.

    ``sustained``: both strike only where the chord changed (`Harmony.changed`).
    ``beats``: the chords strike on every beat; the bass on beat 0, on
    ``beats_per_bar // 2`` when `beats_per_bar` is even (beats 1 and 3 of 4/4;
    3/4: beat 1 only), and wherever the chord changed.  `ValueError` for another pattern.
    """
    if pattern == "sustained":
        return {"chords": changed, "bass": changed}
    if pattern == "beats":
        strong = beat_in_bar == 0 or (beats_per_bar % 2 == 0 and beat_in_bar == beats_per_bar // 2)
        return {"chords": True, "bass": strong or changed}
    raise ValueError(f"harmony pattern {pattern!r} is not one of {', '.join(PATTERNS)}")


@dataclass(frozen=True)
class BeatWrite:
    """What one beat did to a part (times in 16th steps).

    `started`: notes struck at this beat, lasting (provisionally) to the beat's end.
    `extended`: notes already sounding, now lasting to this beat's end (same start
    and pitch; the duration is the new one).  `ended`: notes a strike ended at this
    beat's start, with their final duration.
    """

    started: list[Note] = field(default_factory=list)
    extended: list[Note] = field(default_factory=list)
    ended: list[Note] = field(default_factory=list)


class PartWriter:
    """One part (chords or bass) written beat by beat as `jamd.tokens.Note` (16th steps).

    `notes` holds everything written (ended notes with final durations, sounding
    ones as they stand now); `sounding` the notes still held.  Notes of one part
    never overlap on the same pitch: a strike ends every sounding note first.
    """

    def __init__(self, part: str):
        self.part = part
        self._done: list[Note] = []
        self.sounding: list[Note] = []

    @property
    def notes(self) -> list[Note]:
        return sorted(self._done + self.sounding)

    def beat(self, pitches: list[int], strike: bool, start: int, length: int) -> BeatWrite:
        """Write one beat starting at step `start`, `length` steps long.

        `strike`: every sounding note ends at `start`, and `pitches` start there lasting
        `length` (no pitches: the part falls silent).  Not `strike`: the sounding notes
        are extended to ``start + length`` (`pitches` are ignored; none sounding:
        nothing happens).  `ValueError` for a `length` under 1.
        """
        if length < 1:
            raise ValueError(f"beat length {length} steps: must be at least 1")
        if not strike:
            extended = [Note(n.start, n.pitch, start + length - n.start) for n in self.sounding]
            self.sounding = extended
            return BeatWrite(extended=list(extended))
        ended = self._end(start)
        self.sounding = [Note(start, p, length) for p in sorted(set(pitches))]
        return BeatWrite(started=list(self.sounding), ended=ended)

    def stop(self, at: int | None = None) -> list[Note]:
        """End every sounding note at step `at` (None: where each ends now); returns them, final.

        A note that `at` ends before (or at) its start keeps duration 0 in the
        returned list, so a caller can cancel it, and is dropped from `notes`.
        """
        if at is None:
            ended = list(self.sounding)
            self._done.extend(ended)
            self.sounding = []
            return ended
        return self._end(at)

    def _end(self, at: int) -> list[Note]:
        ended = [Note(n.start, n.pitch, max(0, at - n.start)) for n in self.sounding]
        self._done.extend(n for n in ended if n.duration > 0)
        self.sounding = []
        return ended
