"""Reading MIDI files: the cases in shared/cases/midi and variants of each kind made here with mido.

Every file either gives notes or exactly one `DataError` (see also
test_midifile_fuzz.py); the rules are jamd's one reader's.
"""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from jamd.config import LiveConfig
from jamd.errors import DataError
from jamd.midi.midifile import read_midi_file, read_midi_notes, write_midi
from jamd.tokens import Note

CASES = Path(__file__).resolve().parents[1] / ".." / "shared" / "cases" / "midi"
CASES = CASES if CASES.is_dir() else Path("/work/shared/cases/midi")
D_MAJOR = [62, 64, 66, 67, 69, 66, 62, 71, 69, 67, 66, 64, 62]
D_MAJOR_STEPS = [(0, 2), (2, 2), (4, 2), (6, 2), (8, 4), (12, 2), (14, 2), (16, 2), (18, 2), (20, 2), (22, 2),
                 (24, 4), (28, 4)]
D_NOTES = [Note(s, p, d) for (s, d), p in zip(D_MAJOR_STEPS, D_MAJOR, strict=True)]


def case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path


def midi_file(path: Path, tracks: list[list], *, ticks_per_beat: int = 480, type: int = 1) -> Path:
    """Write tracks of (delta, message) or messages with their own .time."""
    mid = mido.MidiFile(type=type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        mid.tracks.append(mido.MidiTrack(events))
    mid.save(str(path))
    return path


def on(note, time=0, ch=0, vel=90):
    return mido.Message("note_on", note=note, velocity=vel, channel=ch, time=time)


def off(note, time=0, ch=0):
    return mido.Message("note_off", note=note, velocity=0, channel=ch, time=time)


def melody(notes: list[Note], tpb: int = 480, ch: int = 0) -> list:
    """Messages for notes (16th steps) that do not overlap."""
    out, now = [], 0
    per_step = tpb // 4
    for n in notes:
        out.append(on(n.pitch, n.start * per_step - now, ch))
        out.append(off(n.pitch, n.duration * per_step, ch))
        now = n.end * per_step
    return out


# -- the cases ----------------------------------------------------------------

def test_00_control_is_13_notes_in_d_major():
    from jamd.music.keys import detect_key

    notes, bpm = read_midi_notes(case("00_control_d_major.mid"))
    assert notes == D_NOTES and bpm == pytest.approx(120)
    assert detect_key(notes).name == "D major"


def test_03_smpte_division_reads_as_the_control():
    read = read_midi_file(case("03_smpte_division_25fps_40tpf.mid"))
    assert read.notes == D_NOTES


def test_04_set_tempo_zero_is_ignored():
    read = read_midi_file(case("04_set_tempo_zero.mid"))
    assert read.notes == D_NOTES and read.bpm is None
    assert any("Set Tempo of 0" in w for w in read.warnings)


def test_07_restrike_gives_7_notes():
    notes, _ = read_midi_notes(case("07_overlapping_same_pitch_restrike.mid"))
    assert len(notes) == 7
    assert [(n.start, n.pitch, n.duration) for n in notes[1:3]] == [(4, 69, 4), (8, 69, 2)]


def test_08_drums_on_channel_10_are_not_melody():
    path = case("08_melody_plus_gm_drums_ch10.mid")
    read = read_midi_file(path)
    assert read.notes == D_NOTES and read.other_channel_notes > 0
    drums = read_midi_file(path, LiveConfig(input_channels=(10,)).is_melody_channel)
    assert {n.pitch for n in drums.notes} <= {42, 49, 51, 81}


def test_11_huge_gap_reads_two_notes_without_a_grid():
    read = read_midi_file(case("11_huge_delta_gap_tpb1.mid"))
    assert len(read.notes) == 2 and read.notes[1].start == 2**28 * 4


# -- time base ----------------------------------------------------------------

@pytest.mark.parametrize("fps,tpf", [(24, 10), (25, 40), (30, 4), (29, 100)])
def test_smpte_frames_become_beats_with_the_tempo(tmp_path, fps, tpf):
    ticks_per_second = (30000 / 1001 if fps == 29 else fps) * tpf
    division = ((256 - fps) << 8 | tpf) - 0x10000  # mido keeps the header's signed value
    # 90 BPM: a beat is 2/3 s; an 8th note then a quarter, each followed by the other
    tempo = mido.bpm2tempo(90)

    def ticks(beats):
        return round(beats * 60 / 90 * ticks_per_second)

    events = [mido.MetaMessage("set_tempo", tempo=tempo, time=0), on(60), off(60, ticks(0.5)),
              on(62), off(62, ticks(1)), on(64), off(64, ticks(1))]
    read = read_midi_file(midi_file(tmp_path / "s.mid", [events], ticks_per_beat=division))
    assert read.notes == [Note(0, 60, 2), Note(2, 62, 4), Note(6, 64, 4)]


def test_smpte_tempo_change_moves_the_conversion(tmp_path):
    division = ((256 - 25) << 8 | 40) - 0x10000  # 1000 ticks per second
    # 120 BPM for one beat (500 ticks), then 60 BPM: a beat is 1000 ticks
    events = [mido.MetaMessage("set_tempo", tempo=500000, time=0), on(60), off(60, 500),
              mido.MetaMessage("set_tempo", tempo=1000000, time=0), on(62), off(62, 1000)]
    read = read_midi_file(midi_file(tmp_path / "s.mid", [events], ticks_per_beat=division))
    assert read.notes == [Note(0, 60, 4), Note(4, 62, 4)]


@pytest.mark.parametrize("division", [((256 - 26) << 8 | 40) - 0x10000, ((256 - 25) << 8) - 0x10000])
def test_impossible_smpte_division_is_one_data_error(tmp_path, division):
    path = midi_file(tmp_path / "s.mid", [melody(D_NOTES)], ticks_per_beat=division)
    with pytest.raises(DataError, match="SMPTE"):
        read_midi_file(path)


def test_type_2_patterns_play_one_after_the_other(tmp_path):
    a = [Note(0, 60, 4), Note(4, 62, 4)]
    b = [Note(0, 64, 4), Note(4, 65, 4)]
    path = midi_file(tmp_path / "t2.mid", [melody(a), melody(b)], type=2)
    assert read_midi_file(path).notes == a + [Note(n.start + 8, n.pitch, n.duration) for n in b]


@pytest.mark.parametrize("tempo", [0, 1, 30_000])  # 2,000 BPM and more: no music
def test_impossible_tempo_is_ignored_in_any_track(tmp_path, tempo):
    tempo_track = [mido.MetaMessage("set_tempo", tempo=tempo, time=0)]
    read = read_midi_file(midi_file(tmp_path / "t.mid", [tempo_track, melody(D_NOTES)]))
    assert read.notes == D_NOTES and read.bpm is None


def test_zero_ticks_per_beat_is_one_data_error(tmp_path):
    path = midi_file(tmp_path / "z.mid", [melody(D_NOTES)], ticks_per_beat=0)
    with pytest.raises(DataError, match="0 ticks per beat"):
        read_midi_file(path)


# -- pairing --------------------------------------------------------------------

@pytest.mark.parametrize("events,expected", [
    # on on off off: two notes, the restrike ends the first
    ([on(60), on(60, 480), off(60, 240), off(60, 240)], [Note(0, 60, 4), Note(4, 60, 2)]),
    # on on off: the second note-off never comes; the note sounds to the end of the track
    ([on(60), on(60, 480), off(60, 480), on(62, 0), off(62, 480)],
     [Note(0, 60, 4), Note(4, 60, 4), Note(8, 62, 4)]),
    # a velocity-0 note-on is a note-off; a stray note-off is ignored
    ([off(64), on(60), on(60, 480, vel=0), off(60, 240)], [Note(0, 60, 4)]),
    # a note never released sounds to the end of the file
    ([on(60), on(62, 480), off(62, 480)], [Note(0, 60, 4), Note(4, 62, 4)]),
])
def test_restrike_ends_the_sounding_note(tmp_path, events, expected):
    assert read_midi_file(midi_file(tmp_path / "r.mid", [events])).notes == expected


def test_live_capture_pairs_a_restrike_as_the_file_reader_does(tmp_path):
    from jamd.live.phrase import PhraseCapture
    from jamd.sync.clock import Clock

    clock = Clock(bpm=120)
    cap = PhraseCapture(clock, LiveConfig())
    # the same on/on/off/off as case 07, at 16th steps 4, 8, 10 and 12
    cap.note_on(69, clock.time_of(4))
    cap.note_on(69, clock.time_of(8))
    cap.note_off(69, clock.time_of(10))
    cap.note_off(69, clock.time_of(12))
    phrase = cap.poll(clock.time_of(64))
    live = [Note(n.start - 4, n.pitch, n.duration) for n in phrase.notes]
    events = [on(69), on(69, 480), off(69, 240), off(69, 240)]
    assert read_midi_file(midi_file(tmp_path / "r.mid", [events])).notes == live


# -- channels -------------------------------------------------------------------

def test_channel_10_in_one_track_with_the_melody_is_left_out(tmp_path):
    # type 0: melody and drums interleaved in one track
    events = []
    for n in D_NOTES[:4]:
        events += [on(36, 0, ch=9, vel=100), on(n.pitch), off(36, 60, ch=9), off(n.pitch, 180)]
    read = read_midi_file(midi_file(tmp_path / "t0.mid", [events], type=0))
    assert [n.pitch for n in read.notes] == D_MAJOR[:4] and read.other_channel_notes == 4


def test_input_channels_choose_the_melody(tmp_path):
    path = midi_file(tmp_path / "two.mid", [melody(D_NOTES, ch=0), melody([Note(0, 40, 16)], ch=2)])
    only_3 = read_midi_file(path, LiveConfig(input_channels=(3,)).is_melody_channel)
    assert only_3.notes == [Note(0, 40, 16)]


def test_only_drums_is_one_data_error(tmp_path):
    path = midi_file(tmp_path / "drums.mid", [melody(D_NOTES, ch=9)])
    with pytest.raises(DataError, match="no notes on its melody channels"):
        read_midi_file(path)


# -- meter, pickup, key ---------------------------------------------------------

def ts(num, den, time=0):
    return mido.MetaMessage("time_signature", numerator=num, denominator=den, time=time)


def test_time_signature_and_written_pickup(tmp_path):
    # a 1/4 bar holding the pickup, then 3/4
    events = [ts(1, 4), on(67), off(67, 480), ts(3, 4), on(72), off(72, 960), on(71), off(71, 480)]
    read = read_midi_file(midi_file(tmp_path / "p.mid", [events]))
    assert read.time_signature == (3, 4) and read.bar_steps == 12
    assert read.downbeat == 4 and read.pickup_steps() == 4 and not read.meter_changes


def test_leading_rest_makes_a_pickup(tmp_path):
    write_midi([Note(12, 67, 4), Note(16, 72, 16)], tmp_path / "p.mid")
    read = read_midi_file(tmp_path / "p.mid")
    assert read.time_signature == (4, 4) and read.pickup_steps() == 4


@pytest.mark.parametrize("num,den", [(0, 4), (3, 64), (3, 2**40)])
def test_impossible_time_signature_is_ignored(tmp_path, num, den):
    raw = mido.MetaMessage("time_signature", numerator=max(num, 1), denominator=4)
    events = [raw, *melody(D_NOTES)]
    path = midi_file(tmp_path / "t.mid", [events])
    data = bytearray(path.read_bytes())
    i = data.index(b"\xff\x58\x04")
    data[i + 3] = num
    data[i + 4] = min(den.bit_length() - 1, 255)
    path.write_bytes(bytes(data))
    read = read_midi_file(path)
    assert read.notes == D_NOTES and read.time_signature is None


def test_undecodable_key_signature_is_one_data_error(tmp_path):
    path = midi_file(tmp_path / "k.mid", [[mido.MetaMessage("key_signature", key="C"), *melody(D_NOTES)]])
    data = bytearray(path.read_bytes())
    i = data.index(b"\xff\x59\x02")
    data[i + 3] = 80  # 80 sharps
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"k\.mid.*KeySignatureError"):
        read_midi_file(path)


# -- files that are not MIDI ----------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"MThd", b"not a midi file at all", b"MThd\x00\x00\x00\x06\x00\x01"])
def test_not_midi_is_one_data_error(tmp_path, content):
    path = tmp_path / "x.mid"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"x\.mid"):
        read_midi_file(path)


def test_missing_folder_and_too_large_are_one_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_midi_file(tmp_path / "nope.mid")
    with pytest.raises(DataError, match="not a regular file"):
        read_midi_file(tmp_path)
    write_midi(D_NOTES, tmp_path / "d.mid")
    with pytest.raises(DataError, match="too large"):
        read_midi_file(tmp_path / "d.mid", max_bytes=10)


@pytest.mark.parametrize("special", ["fifo", "/dev/urandom", "/dev/zero"])
def test_a_fifo_or_a_device_is_refused_at_once_not_read_forever(tmp_path, special):
    """A fresh user's kind: a path that is not a regular file would be read without end."""
    import os

    path = Path(special)
    if special == "fifo":
        path = tmp_path / "pipe.mid"
        os.mkfifo(path)
    with pytest.raises(DataError, match="not a regular file"):
        read_midi_file(path)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "big") + body


def _smf(*chunks: bytes, fmt: int = 0, ntracks: int = 1) -> bytes:
    return _chunk(b"MThd", fmt.to_bytes(2, "big") + ntracks.to_bytes(2, "big") + (96).to_bytes(2, "big")) + \
        b"".join(chunks)


TRACK = _chunk(b"MTrk", bytes([0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00]))


def test_the_container_is_read_as_the_spec_says(tmp_path):
    """SMF 1.0 "Chunks": unknown chunk types are skipped; a RIFF RMID file is unwrapped; a
    header that promises more tracks than there are reads those there are."""
    cases = {
        "unknown_chunk.mid": _smf(_chunk(b"XFIH", b"vendor data"), TRACK),
        "more_promised.mid": _smf(TRACK, ntracks=3, fmt=1),
    }
    inner = _smf(TRACK)
    riff_body = b"RMID" + _chunk(b"data", inner) + (b"\0" if len(inner) % 2 else b"")
    cases["song.rmi"] = b"RIFF" + len(riff_body).to_bytes(4, "little") + riff_body
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        notes = read_midi_file(tmp_path / name).notes
        assert [(n.pitch, n.start, n.duration) for n in notes] == [(60, 0, 4)], name


@pytest.mark.parametrize("data, words", [
    (b"", "the file is empty"),
    (_smf(TRACK, fmt=7), "format 7 is not a Standard MIDI File format"),
    (_smf(TRACK)[:-5], "track 1 is cut short"),
    (_smf(), "no MIDI track"),
    (_smf(_chunk(b"MTrk", bytes([0x00, 0x90, 60]))), "a track ends in the middle of a message"),
    (_smf(_chunk(b"MTrk", bytes([0x00, 0xFF, 0x59, 0x01, 0x00, 0x00, 0xFF, 0x2F, 0x00]))),
     "a meta or system message is shorter than its kind needs"),
])
def test_a_broken_container_says_what_is_wrong_in_words(tmp_path, data, words):
    path = tmp_path / "broken.mid"
    path.write_bytes(data)
    with pytest.raises(DataError, match=words):
        read_midi_file(path)
