"""Standard MIDI files in and out, with mido.

Written files carry a tempo, a time signature and a note-off for every
note-on, so DAWs, mido and music21 all read them.  Reading quantises a
melody to the 16th grid, keeping the highest note where notes overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import mido

from ..errors import DataError
from ..tokens import STEPS_PER_QUARTER, Note

TICKS_PER_BEAT = 480
TICKS_PER_STEP = TICKS_PER_BEAT // STEPS_PER_QUARTER


def write_midi(notes: Iterable[Note], path: str | Path, bpm: float = 120.0,
               time_signature: tuple[int, int] = (4, 4), velocity: int = 90,
               channel: int = 1, program: int | None = None, name: str = "jamd") -> Path:
    """Write notes (16th-step times) as a one-track MIDI file (format 1)."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=time_signature[0],
                                  denominator=time_signature[1], time=0))
    ch = channel - 1
    if program is not None:
        track.append(mido.Message("program_change", program=program, channel=ch, time=0))
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        on = n.start * TICKS_PER_STEP
        off = n.end * TICKS_PER_STEP
        # note-offs sort before note-ons at the same tick, so a repeated pitch
        # is released before it is struck again
        events.append((on, 1, mido.Message("note_on", note=n.pitch, velocity=velocity, channel=ch)))
        events.append((off, 0, mido.Message("note_off", note=n.pitch, velocity=0, channel=ch)))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    mid.tracks.append(track)
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    mid.save(str(path))
    return path


def read_midi_notes(path: str | Path) -> tuple[list[Note], float | None]:
    """Notes of a MIDI file on the 16th grid (monophonic: highest wins), and its tempo."""
    path = Path(path)
    try:
        mid = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: MIDI file not found") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: not a readable MIDI file ({exc})") from None
    tpb = mid.ticks_per_beat or TICKS_PER_BEAT
    tempo = None
    raw: list[tuple[float, int, float]] = []  # (start beat, pitch, end beat)
    for track in mid.tracks:
        tick = 0
        sounding: dict[tuple[int, int], int] = {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and tempo is None:
                tempo = mido.tempo2bpm(msg.tempo)
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault((msg.channel, msg.note), tick)
            elif msg.type in ("note_off", "note_on"):
                start = sounding.pop((msg.channel, msg.note), None)
                if start is not None:
                    raw.append((start / tpb, msg.note, tick / tpb))
    if not raw:
        raise DataError(f"{path}: MIDI file has no notes")
    by_step: dict[int, tuple[int, int]] = {}
    for start, pitch, end in raw:
        s = round(start * STEPS_PER_QUARTER)
        e = max(round(end * STEPS_PER_QUARTER), s + 1)
        if s not in by_step or pitch > by_step[s][0]:
            by_step[s] = (pitch, e)
    starts = sorted(by_step)
    notes = []
    for i, s in enumerate(starts):
        pitch, e = by_step[s]
        if i + 1 < len(starts):
            e = min(e, starts[i + 1])
        notes.append(Note(s, pitch, e - s))
    return notes, tempo
