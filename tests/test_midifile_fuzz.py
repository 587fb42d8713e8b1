"""Random bytes and mutated real files into the MIDI file reader: notes, or exactly one DataError.

`--hypothesis-seed=N` reproduces a find.  A few hundred examples each keep CI fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jamd.errors import DataError
from jamd.midi.midifile import read_midi_file, write_midi
from jamd.tokens import Note

CASES = Path("/work/shared/cases/midi")
# JAMD_FUZZ_EXAMPLES=5000 for a longer hunt
FUZZ = settings(max_examples=int(os.environ.get("JAMD_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _own_files() -> list[bytes]:
    """Real files of each kind the reader handles, written here with mido."""
    import io
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as d:
        write_midi([Note(i * 2, 60 + i, 2) for i in range(12)], Path(d) / "a.mid", time_signature=(3, 4))
        out.append((Path(d) / "a.mid").read_bytes())
    for kind, division in ((1, 480), (2, 96), (0, ((256 - 25) << 8 | 40) - 0x10000)):
        mid = mido.MidiFile(type=kind, ticks_per_beat=division)
        for ch in (0, 9):
            mid.tracks.append(mido.MidiTrack([
                mido.MetaMessage("set_tempo", tempo=400000),
                mido.MetaMessage("time_signature", numerator=6, denominator=8),
                mido.MetaMessage("key_signature", key="Bb"),
                mido.Message("note_on", note=62, velocity=90, channel=ch),
                mido.Message("note_on", note=62, velocity=90, channel=ch, time=100),
                mido.Message("note_off", note=62, channel=ch, time=50),
                mido.Message("control_change", control=64, value=127, channel=ch),
                mido.Message("pitchwheel", pitch=100, channel=ch),
                mido.Message("sysex", data=[1, 2, 3]),
                mido.Message("note_off", note=62, channel=ch, time=50),
            ]))
            if kind == 0:
                break
        buf = io.BytesIO()
        mid.save(file=buf)
        out.append(buf.getvalue())
    return out


SEEDS = _own_files() + [p.read_bytes() for p in sorted(CASES.glob("*.mid"))]


def read_or_data_error(path: Path) -> None:
    """The property: notes on the grid, or one DataError; any other exception fails the test."""
    try:
        read = read_midi_file(path)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert read.notes
    assert all(0 <= n.pitch <= 127 and n.duration > 0 for n in read.notes)
    assert all(a.end <= b.start for a, b in zip(read.notes, read.notes[1:], strict=False))


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.mid"
    path.write_bytes(data)
    read_or_data_error(path)


@FUZZ
@given(body=st.binary(min_size=0, max_size=512), ntrks=st.integers(0, 3), kind=st.integers(0, 3),
       division=st.integers(0, 0xFFFF))
def test_random_bytes_behind_a_valid_header(tmp_path, body, ntrks, kind, division):
    header = b"MThd\x00\x00\x00\x06" + bytes([0, kind, 0, ntrks, division >> 8, division & 0xFF])
    track = b"MTrk" + len(body).to_bytes(4, "big") + body
    path = tmp_path / "header.mid"
    path.write_bytes(header + track)
    read_or_data_error(path)


@FUZZ
@given(which=st.integers(0, len(SEEDS) - 1),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from("set insert delete")),
                      min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 10_000))
def test_mutated_real_files(tmp_path, which, edits, cut):
    data = bytearray(SEEDS[which])
    for pos, byte, how in edits:
        i = pos % (len(data) + 1)
        if how == "insert":
            data.insert(i, byte)
        elif i < len(data):
            if how == "set":
                data[i] = byte
            else:
                del data[i]
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "mutated.mid"
    path.write_bytes(bytes(data))
    read_or_data_error(path)


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_seed_files_read(tmp_path, index):
    path = tmp_path / "seed.mid"
    path.write_bytes(SEEDS[index])
    read_or_data_error(path)
