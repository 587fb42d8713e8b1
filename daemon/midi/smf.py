"""The Standard MIDI File container, checked and tidied before mido parses the events.

Standard MIDI File spec 1.0 ("Chunks"): a file is a header chunk ``MThd``
(format, number of tracks, division) followed by chunks of four-letter type
and 32-bit length; readers must skip chunk types they do not know.  mido
refuses a file with an unknown chunk, and a header that promises more tracks
than the file holds ends in a bare ``EOFError``.  This module walks the
chunks itself and hands mido a clean file, or raises one `DataError` that
says what is wrong in words.  It also unwraps RIFF RMID files (a Standard
MIDI File inside a RIFF ``data`` chunk, as Windows wrote them).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)

FORMATS = (0, 1, 2)  # single track, simultaneous tracks, independent patterns


def _unwrap_rmid(data: bytes, path: Path) -> bytes:
    """The Standard MIDI File inside a RIFF RMID file (its ``data`` chunk)."""
    pos = 12  # "RIFF", size, "RMID"
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if kind == b"data":
            return data[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)  # RIFF chunks are padded to even sizes
    raise DataError(f"{path}: a RIFF RMID file without a MIDI 'data' chunk")


def tidy(data: bytes, path: Path) -> tuple[bytes, int]:
    """`data` as a file mido reads: the header and its ``MTrk`` chunks only; and its format.

    Raises `DataError` for a file that is not a Standard MIDI File, a format other
    than 0, 1 or 2, no track, or a track cut short (a truncated file).
    """
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        data = _unwrap_rmid(data, path)
    if data[:4] != b"MThd" or len(data) < 14:
        raise DataError(f"{path}: not a Standard MIDI File (no MThd header"
                        f"{'' if data else ': the file is empty'})")
    header_len = struct.unpack(">I", data[4:8])[0]
    if header_len < 6 or 8 + header_len > len(data):
        raise DataError(f"{path}: the MThd header is {header_len} bytes long (6 expected)")
    fmt, declared, division = struct.unpack(">HHH", data[8:14])
    if fmt not in FORMATS:
        raise DataError(f"{path}: MIDI file format {fmt} is not a Standard MIDI File format (0, 1 or 2)")
    tracks: list[bytes] = []
    pos = 8 + header_len
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if pos + 8 + size > len(data):
            if kind == b"MTrk":
                raise DataError(f"{path}: track {len(tracks) + 1} is cut short ({len(data) - pos - 8} of its "
                                f"{size} bytes are there): the file is truncated")
            break  # a cut-short chunk of another kind at the end: nothing of ours is lost
        if kind == b"MTrk":
            tracks.append(data[pos:pos + 8 + size])
        else:
            log.debug("%s: skipped a chunk of unknown type %r (%d bytes)", path, kind, size)
        pos += 8 + size
    if not tracks:
        raise DataError(f"{path}: no MIDI track (MTrk chunk) in the file")
    if len(tracks) != declared:
        log.info("%s: the header promises %d track(s), the file holds %d: reading those", path, declared,
                 len(tracks))
    header = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division)
    return header + b"".join(tracks), fmt
