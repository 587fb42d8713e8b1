"""Generated bars of symbols as scheduled notes, across bar lines."""

from __future__ import annotations

from dataclasses import dataclass

from ..sync.scheduler import NoteHandle, Scheduler
from ..tokens import HOLD, Note
from .shaping import Shaper


@dataclass
class _Open:
    """The note being written across bar boundaries by the stream."""

    pitch: int  # sounding pitch, after transposition and shaping
    start: int
    handle: NoteHandle


class NoteStream:
    """Turns generated bars of symbols into scheduled notes.

    A held note may continue into the next bar, whose symbols do not exist
    yet; so a note is scheduled with a provisional note-off at the end of the
    bar it is known to reach, and the note-off is moved later if the next bar
    holds it on.  Every note-on therefore always has a note-off queued.
    """

    def __init__(self, scheduler: Scheduler, shaper: Shaper, tag: str):
        self.scheduler = scheduler
        self.shaper = shaper
        self.tag = tag
        self.open: _Open | None = None
        self.notes: list[Note] = []  # what was written, in sounding pitches (tests, key checks)
        self.end: int | None = None  # the step where the last bar written ends (None: nothing queued)

    def _close(self, end: int) -> None:
        o = self.open
        if o is None:
            return
        self.scheduler.move_note_off(o.handle, self.shaper.off_step(o.start, end))
        self.notes[-1] = Note(o.start, o.pitch, end - o.start)
        self.open = None

    def write_bar(self, symbols: list[str], start: int, transpose: int) -> None:
        step = start
        for step, s in enumerate(symbols, start):
            if s == HOLD:
                continue
            self._close(step)
            # a pitch; an all-keys model's bar relabelled to C/Am may leave 0-127 by a few semitones
            # (`LstmBars`), which the transposition below brings back
            if s.lstrip("-").isdigit():
                pitch = self.shaper.pitch(int(s) + transpose)
                handle = self.scheduler.schedule_note(
                    step, self.shaper.off_step(step, start + len(symbols)), pitch,
                    self.shaper.velocity, self.shaper.channel, self.tag)
                self.open = _Open(pitch, step, handle)
                self.notes.append(Note(step, pitch, start + len(symbols) - step))
        end = self.end = start + len(symbols)
        if self.open is not None and self.open.handle.off_step < self.shaper.off_step(self.open.start, end):
            self.scheduler.move_note_off(self.open.handle, self.shaper.off_step(self.open.start, end))
            o = self.open
            self.notes[-1] = Note(o.start, o.pitch, end - o.start)

    def cut(self) -> None:
        """Forget the open note and where the stream ended (after a panic, which has already
        ended the note, or before a stream starts again after a gap)."""
        self.open = None
        self.end = None
