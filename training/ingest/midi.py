"""A MIDI file's melody read with symusic (C++), with the semantics of jamd's own reader.

`jamd.midi.midifile_read.read_midi_file` (mido, pure Python) is the reference:
`generate --seed-midi` and, before issue 16, the corpus read MIDI files with
it.  symusic parses a file some hundred times faster but hands back notes,
not events, so this module rebuilds exactly what that reader returns:

- the file is checked and tidied by `jamd.midi.smf.tidy` first (unknown
  chunks, RIFF RMID, a track count the header gets wrong), as there;
- each track chunk is parsed on its own, so "part N" is the N-th *chunk*
  holding melody notes, as there (symusic splits a chunk per channel and
  program);
- melody channels: every channel but 10 (General MIDI drums), which is what
  symusic's `is_drum` tells apart;
- ticks become 16th steps as there (`round(tick / tpq * 4)`), then the same
  `_monophonic` and `_meter` functions turn them into one line and a meter;
- the first key signature (earliest tick, then chunk order) in mido's spelling.

Where symusic's reading could differ, `read_fast` returns None and the caller
uses jamd's reader: a melody channel set other than "all but 10" (symusic does
not report channels), SMPTE time division, format 2 files, a key signature
mido refuses, anything symusic cannot parse, and two notes of one pitch that
overlap anywhere in the file (symusic pairs note-offs first-in first-out,
track by track; jamd's reader ends a note at its restrike, per channel across
tracks).  Known differences that remain
are listed in `tests/test_ingest_midi.py`'s docstring.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from jamd.midi import smf
from jamd.midi.midifile_read import MidiRead, NoNotes, _meter, _monophonic
from jamd.tokens import STEPS_PER_QUARTER

# mido's key names by sharps (-7..7), as jamd's reader sees them (MidiRead.key_signature)
_MAJOR = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
_MINOR = ("Abm", "Ebm", "Bbm", "Fm", "Cm", "Gm", "Dm", "Am", "Em", "Bm", "F#m", "C#m", "G#m", "D#m", "A#m")


def _chunks(data: bytes) -> list[bytes]:
    """The MTrk chunks of a tidied file (`smf.tidy` keeps only those after the header)."""
    out, pos = [], 14
    while pos + 8 <= len(data):
        size = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        out.append(data[pos:pos + 8 + size])
        pos += 8 + size
    return out


def _valid_meter(num: int, den: int) -> bool:
    # jamd.midi.midifile_read._time_signature's test
    return 1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32) and (num * 4 * STEPS_PER_QUARTER) % den == 0


def read_fast(path: str | Path, track: int = 0, default_channels: bool = True) -> MidiRead | None:
    """The melody of chunk `track` (the N-th holding melody) as `read_midi_file(path, track=N)` reads it,
    or None where only jamd's reader can say (see the module docstring).

    Raises DataError for a file that is not a Standard MIDI File (`smf.tidy`'s checks) and
    NoNotes when no chunk `track` holds melody notes.  The caller checks the file size first.
    """
    if not default_channels:
        return None
    try:
        import symusic  # imported here: the workers pay for it once, `jamd` itself never
    except ImportError:  # the `train` extra brings it; without it jamd's reader reads every file
        return None

    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError:
        return None  # jamd's reader words the error
    data, fmt = smf.tidy(raw_bytes, path)
    division = struct.unpack(">H", data[12:14])[0]
    if division & 0x8000 or division == 0 or fmt == 2:
        return None
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
    signatures: list[tuple[int, int, int]] = []  # (tick, numerator, denominator) in timeline order
    keys: list[tuple[int, int, int]] = []  # (tick, sharps, minor)
    melody: list[np.ndarray] = []  # per chunk holding melody notes: (n, 3) start tick, end tick, pitch
    for chunk in _chunks(data):
        try:
            score = symusic.Score.from_midi(header + chunk)
        except Exception:  # symusic raises RuntimeError and others on bad bytes: jamd's reader decides
            return None
        signatures += [(ts.time, ts.numerator, ts.denominator) for ts in score.time_signatures]
        keys += [(k.time, k.key, k.tonality) for k in score.key_signatures]
        notes = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
        if notes:
            start = np.concatenate([n["time"] for n in notes]).astype(np.int64)
            end = start + np.concatenate([n["duration"] for n in notes]).astype(np.int64)
            pitch = np.concatenate([n["pitch"] for n in notes]).astype(np.int64)
            melody.append(np.stack([start, end, pitch], axis=1))
    if track >= len(melody):
        raise NoNotes(f"{path}: no track {track} with melody notes ({len(melody)} tracks hold melody)")
    # jamd's reader pairs notes per channel across chunks: one pitch overlapping anywhere is its to read
    if _restrikes(np.concatenate(melody)):
        return None
    raw = melody[track]
    signatures.sort(key=lambda s: s[0])  # stable: chunk order, then file order, at one tick
    keys.sort(key=lambda k: k[0])
    if keys and not (-7 <= keys[0][1] <= 7 and keys[0][2] in (0, 1)):
        return None  # mido refuses this key signature: the file is unreadable there
    key_signature = (_MINOR if keys[0][2] else _MAJOR)[keys[0][1] + 7] if keys else None
    steps = np.round(raw[:, :2] / division * STEPS_PER_QUARTER).astype(np.int64)
    notes, polyphonic = _monophonic([(int(a), int(b), int(p)) for (a, b), p in zip(steps, raw[:, 2], strict=True)])
    meters = [(round(t / division * STEPS_PER_QUARTER), (n, d)) for t, n, d in signatures if _valid_meter(n, d)]
    time_signature, downbeat, changes = _meter(meters)
    return MidiRead(path, notes, None, time_signature, changes, downbeat, key_signature, polyphonic)


def _restrikes(raw: np.ndarray) -> bool:
    """Whether two notes of one pitch overlap (where first-in first-out pairing and restrikes differ)."""
    order = np.lexsort((raw[:, 0], raw[:, 2]))
    pitch, start, end = raw[order, 2], raw[order, 0], raw[order, 1]
    same = pitch[1:] == pitch[:-1]
    return bool(np.any(same & (start[1:] < end[:-1])))
