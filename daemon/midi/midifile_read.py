"""Reading a Standard MIDI File into a melody: the one entry point, `read_midi_file`.

Every value read from the file is checked before it is used, and every way a
file can fail ends as one `DataError` naming the file and the reason (mido
raises many exception types on bad bytes: EOFError, OSError, ValueError,
KeyError, IndexError, its own KeySignatureError...).

- Time base: ticks per beat, or SMPTE frames (converted to beats with the
  file's tempo map; Standard MIDI File spec 1.0, "Header Chunks").
- Type 2 files (independent patterns) are read pattern after pattern, never
  overlaid.
- Notes are paired by `jamd.midi.pairing` (a restrike ends the sounding note),
  per channel; only melody channels are read (`LiveConfig.is_melody_channel`:
  by default every channel but General MIDI percussion, 10).
- Notes are quantised to the 16th grid; where notes overlap, the highest wins.
- Impossible values (Set Tempo 0, a time signature of 0 beats or 2^255 as its
  unit) are ignored with a debug log line; a file too large is refused before
  mido reads it, so one file cannot exhaust memory.
"""

from __future__ import annotations

import bisect
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..tokens import STEPS_PER_QUARTER, Note
from . import smf
from .pairing import release, strike

log = logging.getLogger(__name__)

# Larger files are refused before parsing: mido holds every message as a Python
# object (a few hundred bytes each), so 4 MiB of events is already ~1 GB.  A
# melody file is a few kB; whole multitrack songs rarely pass 1 MiB.
MAX_FILE_BYTES = 4 * 1024 * 1024
DEFAULT_TEMPO = 500_000  # us per beat (120 BPM): the Standard MIDI File default
BPM_RANGE = (1.0, 1000.0)  # Set Tempo values outside this are impossible, not music
SMPTE_FPS = {24: 24.0, 25: 25.0, 29: 30000 / 1001, 30: 30.0}  # 29: 29.97 drop-frame
GM_PERCUSSION_CHANNEL = 10


class NoNotes(DataError):
    """The file is readable but holds no melody notes."""


@dataclass
class MidiRead:
    """A MIDI file's melody on the 16th grid, with its meter and tempo.

    Steps count from the file's start (tick 0).  Bar lines lie at
    `downbeat + k * bar_steps` for every integer k.
    """

    path: Path
    notes: list[Note]  # monophonic, sorted, absolute 16th steps
    bpm: float | None  # the first valid tempo, None when the file gives none
    time_signature: tuple[int, int] | None  # the meter of the first full bar, None when unwritten
    meter_changes: bool = False  # other time signatures follow
    downbeat: int = 0  # step of a bar line: after a short first bar (a written pickup) it is not 0
    key_signature: str | None = None  # as written, mido's spelling ("D", "Bm", "Eb"); often a DAW default
    polyphonic: bool = False  # notes overlapped before the highest was kept
    other_channel_notes: int = 0  # notes left out: not on a melody channel
    warnings: list[str] = field(default_factory=list)

    @property
    def bar_steps(self) -> int:
        """16th steps per bar of `time_signature` (4/4 when none is written)."""
        num, den = self.time_signature or (4, 4)
        return num * 4 * STEPS_PER_QUARTER // den

    def bar_line_before(self, step: int, bar_steps: int | None = None) -> int:
        """The last bar line at or before `step`."""
        bar = bar_steps or self.bar_steps
        return self.downbeat + (step - self.downbeat) // bar * bar

    def pickup_steps(self, bar_steps: int | None = None) -> int:
        """Steps from the first note to the next bar line (0: it starts on one)."""
        if not self.notes:
            return 0
        first = self.notes[0].start
        origin = self.bar_line_before(first, bar_steps)
        return 0 if first == origin else origin + (bar_steps or self.bar_steps) - first


def _load(path: Path, max_bytes: int):
    import mido

    try:
        if path.exists() and not path.is_file():  # a folder, a FIFO or a device would read forever
            raise DataError(f"{path}: not a regular file, so not a MIDI file")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(f"{path}: MIDI file too large ({size} bytes; at most {max_bytes} are read)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: MIDI file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the MIDI file ({exc.strerror or exc})") from None
    data, _ = smf.tidy(data, path)
    try:
        # clip=True: a data byte over 127 is clipped, not an error
        return mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception as exc:  # mido raises many types on bad bytes; none may escape as a traceback
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0][:80]}" if text else type(exc).__name__
        raise DataError(f"{path}: {_WHAT.get(type(exc).__name__, 'not a readable MIDI file')} ({detail})") from None


# mido's exceptions, in words: the chunks are sound by now (`smf.tidy`), so these are events
_WHAT = {
    "EOFError": "a track ends in the middle of a message (a truncated or corrupt track)",
    "IndexError": "a meta or system message is shorter than its kind needs",
    "KeyError": "a message of an unknown kind",
    "KeySignatureError": "a key signature meta that names no key",
}


class _TimeBase:
    """Ticks to beats: ticks per beat, or SMPTE frames through the tempo map."""

    def __init__(self, path: Path, division: int, tempos: list[tuple[int, int]]):
        division &= 0xFFFF  # mido reads the header's division as a signed 16-bit number
        self.smpte = bool(division & 0x8000)
        if not self.smpte:
            if division == 0:
                raise DataError(f"{path}: the header gives 0 ticks per beat")
            self.tpb = division
            return
        fps_code, tpf = 256 - (division >> 8), division & 0xFF
        if fps_code not in SMPTE_FPS or tpf == 0:
            raise DataError(f"{path}: SMPTE time division of {fps_code} frames per second and "
                            f"{tpf} ticks per frame is not one the MIDI file spec allows")
        ticks_per_second = SMPTE_FPS[fps_code] * tpf
        # beats = seconds * 1e6 / tempo, piece by piece between tempo changes
        self._ticks: list[int] = [0]
        self._beats: list[float] = [0.0]
        self._rates: list[float] = [1e6 / DEFAULT_TEMPO / ticks_per_second]
        for tick, tempo in tempos:
            beat = self._beats[-1] + (tick - self._ticks[-1]) * self._rates[-1]
            if tick == self._ticks[-1]:
                self._rates[-1] = 1e6 / tempo / ticks_per_second
            else:
                self._ticks.append(tick)
                self._beats.append(beat)
                self._rates.append(1e6 / tempo / ticks_per_second)

    def beats(self, tick: int) -> float:
        if not self.smpte:
            return tick / self.tpb
        i = bisect.bisect_right(self._ticks, tick) - 1
        return self._beats[i] + (tick - self._ticks[i]) * self._rates[i]


def _timeline(mid, path: Path) -> list[tuple[int, int, object]]:
    """(absolute tick, track, message) of every message, in time order.

    Types 0 and 1 play their tracks together; type 2's tracks are independent
    patterns, laid one after the other.
    """
    events = []
    offset = 0
    for t, track in enumerate(mid.tracks):
        tick = offset
        for msg in track:
            tick += msg.time  # mido checks delta times: a variable-length quantity, 0..2^28-1
            events.append((tick, t, msg))
        if mid.type == 2:
            offset = tick
    if mid.type == 2 and len(mid.tracks) > 1:
        log.debug("%s: type 2 file, %d patterns played one after the other", path, len(mid.tracks))
    events.sort(key=lambda e: e[0])  # stable: a track's own order is kept at equal ticks
    return events


def _time_signature(msg, warnings: list[str]) -> tuple[int, int] | None:
    num, den = msg.numerator, msg.denominator
    if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32) and (num * 4 * STEPS_PER_QUARTER) % den == 0):
        warnings.append(f"time signature {num}/{str(den)[:12]} ignored: not a meter on the 16th grid")
        return None
    return num, den


def read_midi_file(path: str | Path, is_melody: Callable[[int], bool] | None = None,
                   track: int | None = None, max_bytes: int = MAX_FILE_BYTES) -> MidiRead:
    """The melody of a MIDI file on the 16th grid; `DataError` (one line) for any failure.

    is_melody(channel 1-16) says which channels hold melody (default: all but
    10).  track=N keeps only the N-th track (from 0) that holds melody notes,
    as music21 numbers a file's parts.  Raises `NoNotes` when no melody note
    is left.
    """
    path = Path(path)
    is_melody = is_melody or (lambda ch: ch != GM_PERCUSSION_CHANNEL)
    mid = _load(path, max_bytes)
    try:
        return _read(path, mid, is_melody, track)
    except DataError:
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, ZeroDivisionError) as exc:
        # a value mido passed through that the checks above did not foresee
        raise DataError(f"{path}: not a usable MIDI file ({type(exc).__name__}: {str(exc)[:80]})") from None


def _read(path: Path, mid, is_melody: Callable[[int], bool], track: int | None) -> MidiRead:
    warnings: list[str] = []
    events = _timeline(mid, path)
    tempos: list[tuple[int, int]] = []
    bpm = None
    for tick, _, msg in events:
        if msg.type == "set_tempo":
            if msg.tempo <= 0 or not BPM_RANGE[0] <= 60e6 / msg.tempo <= BPM_RANGE[1]:
                warnings.append(f"Set Tempo of {msg.tempo} us per beat ignored at tick {tick}")
                continue
            tempos.append((tick, msg.tempo))
            bpm = 60e6 / msg.tempo if bpm is None else bpm
    base = _TimeBase(path, mid.ticks_per_beat, tempos)
    if base.smpte:
        warnings.append("SMPTE time division: frames converted to beats with the file's tempo")

    def step(tick: int) -> int:
        return round(base.beats(tick) * STEPS_PER_QUARTER)

    signatures: list[tuple[int, tuple[int, int]]] = []
    key_signature = None
    held: dict[tuple[int, int], int] = {}  # (channel, pitch) -> onset tick
    raw: list[tuple[int, int, int, int]] = []  # (onset tick, end tick, pitch, track)
    other = 0
    last_tick = events[-1][0] if events else 0
    for tick, t, msg in events:
        kind = msg.type
        if kind == "time_signature":
            if (ts := _time_signature(msg, warnings)) is not None:
                signatures.append((step(tick), ts))
        elif kind == "key_signature" and key_signature is None:
            key_signature = msg.key
        elif kind in ("note_on", "note_off"):
            channel = msg.channel + 1
            if not is_melody(channel):
                other += kind == "note_on" and msg.velocity > 0
                continue
            key = (channel, msg.note)
            if kind == "note_on" and msg.velocity > 0:
                onset = strike(held, key, tick)
            else:
                onset = release(held, key)
            if onset is not None:
                raw.append((onset, tick, msg.note, t))
    for (_, pitch), onset in held.items():  # never released: it sounds to the end of the file
        raw.append((onset, last_tick, pitch, -1))
    if track is not None:
        tracks = sorted({t for *_, t in raw if t >= 0})
        if track >= len(tracks):
            raise NoNotes(f"{path}: no track {track} with melody notes ({len(tracks)} tracks hold melody)")
        raw = [r for r in raw if r[3] == tracks[track]]
    if not raw:
        where = f" on its melody channels ({other} on others: see live.input_channels)" if other else ""
        raise NoNotes(f"{path}: MIDI file has no notes{where}")
    notes, polyphonic = _monophonic([(step(a), step(b), p) for a, b, p, _ in raw])
    time_signature, downbeat, changes = _meter(signatures)
    for w in warnings:
        log.debug("%s: %s", path, w)
    return MidiRead(path, notes, bpm, time_signature, changes, downbeat, key_signature, polyphonic, other,
                    warnings)


def _monophonic(raw: list[tuple[int, int, int]]) -> tuple[list[Note], bool]:
    """Quantised (start, end, pitch) to one line: the highest note of a step wins, and a
    note is cut where the next one starts.  Also says whether notes overlapped."""
    by_step: dict[int, tuple[int, int]] = {}
    polyphonic = False
    for s, e, pitch in raw:
        e = max(e, s + 1)
        if s in by_step:
            polyphonic = polyphonic or pitch != by_step[s][0]
            if pitch < by_step[s][0] or (pitch == by_step[s][0] and e <= by_step[s][1]):
                continue  # the highest wins; a pitch struck twice on one step is one note, the longer
        by_step[s] = (pitch, e)
    starts = sorted(by_step)
    notes = []
    for i, s in enumerate(starts):
        pitch, e = by_step[s]
        if i + 1 < len(starts) and e > starts[i + 1]:
            polyphonic = True
            e = starts[i + 1]
        notes.append(Note(s, pitch, e - s))
    return notes, polyphonic


def _meter(signatures: list[tuple[int, tuple[int, int]]]) -> tuple[tuple[int, int] | None, int, bool]:
    """(meter, downbeat step, meter changes) from the time signatures at their steps.

    A first bar shorter than the meter that follows it is a written pickup
    (what a short first measure is in ABC or MusicXML): the bar lines then
    count from the end of that bar.
    """
    if not signatures:
        return None, 0, False
    at, first = signatures[0]
    downbeat = 0
    rest = signatures[1:]
    if rest and at == 0:
        short = first[0] * 4 * STEPS_PER_QUARTER // first[1]
        following = rest[0][1][0] * 4 * STEPS_PER_QUARTER // rest[0][1][1]
        if rest[0][0] == short < following:
            downbeat, first, rest = short, rest[0][1], rest[1:]
    changes = any(ts != first for _, ts in rest)
    return first, downbeat, changes
