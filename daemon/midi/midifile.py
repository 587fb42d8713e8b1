"""Standard MIDI files in and out, with mido.

Written files carry a tempo, a time signature and a note-off for every
note-on, so DAWs, mido and music21 all read them.  Reading lives in
`midifile_read` (re-exported here): it quantises a melody to the 16th grid,
keeping the highest note where notes overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido

from ..tokens import STEPS_PER_QUARTER, Note
from .midifile_read import MidiRead, NoNotes, read_midi_file

__all__ = ["MidiRead", "NoNotes", "Track", "read_midi_file", "read_midi_notes", "write_midi", "write_midi_tracks"]

TICKS_PER_BEAT = 480
TICKS_PER_STEP = TICKS_PER_BEAT // STEPS_PER_QUARTER


@dataclass(frozen=True)
class Track:
    """One track of a written file: its notes (16th steps) on one channel (1-16) at one velocity.

    `gate`: the share of each note's length that sounds (1: all of it; written in
    ticks, so a chord struck again on the next beat is heard as a new stroke).
    """

    name: str
    notes: Sequence[Note]
    channel: int = 1
    velocity: int = 90
    program: int | None = None
    gate: float = 1.0


def write_midi(notes: Iterable[Note], path: str | Path, bpm: float = 120.0,
               time_signature: tuple[int, int] = (4, 4), velocity: int = 90,
               channel: int = 1, program: int | None = None, name: str = "jamd") -> Path:
    """Write notes (16th-step times) as a one-track MIDI file (format 1)."""
    return write_midi_tracks([Track(name, list(notes), channel, velocity, program)], path, bpm, time_signature)


def write_midi_tracks(tracks: Sequence[Track], path: str | Path, bpm: float = 120.0,
                      time_signature: tuple[int, int] = (4, 4)) -> Path:
    """Write `tracks` as one MIDI file (format 1, `TICKS_PER_BEAT` per quarter), one MIDI track each.

    The first track also carries the tempo and the time signature.  Creates the
    parent folder; returns the path.
    """
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    for i, t in enumerate(tracks):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=t.name, time=0))
        if i == 0:
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
            track.append(mido.MetaMessage("time_signature", numerator=time_signature[0],
                                          denominator=time_signature[1], time=0))
        track.extend(_note_events(t))
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(path))
    return path


def _note_events(t: Track) -> list[mido.Message]:
    """The program change and the note-ons and -offs of track `t`, with delta times in ticks."""
    ch = t.channel - 1
    out = [] if t.program is None else [mido.Message("program_change", program=t.program, channel=ch, time=0)]
    events: list[tuple[int, int, mido.Message]] = []
    for n in t.notes:
        on = n.start * TICKS_PER_STEP
        off = on + round(n.duration * TICKS_PER_STEP * t.gate)
        # note-offs sort before note-ons at the same tick, so a repeated pitch
        # is released before it is struck again
        events.append((on, 1, mido.Message("note_on", note=n.pitch, velocity=t.velocity, channel=ch)))
        events.append((off, 0, mido.Message("note_off", note=n.pitch, velocity=0, channel=ch)))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        out.append(msg.copy(time=tick - now))
        now = tick
    return out


def read_midi_notes(path: str | Path,
                    is_melody: Callable[[int], bool] | None = None) -> tuple[list[Note], float | None]:
    """Notes of a MIDI file on the 16th grid (monophonic: highest wins), and its tempo (BPM).

    A shorthand for `read_midi_file` (see `jamd.midi.midifile_read`, the one
    entry point that reads MIDI files); raises `DataError` for any failure.
    """
    read = read_midi_file(path, is_melody)
    return read.notes, read.bpm
