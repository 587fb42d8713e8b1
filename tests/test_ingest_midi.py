"""MIDI files read with symusic (`jamd.training.ingest.midi`) against jamd's own reader.

The symusic path must give the very tune jamd's reader gives (notes, key,
meter, pickup, drop reason), or hand the file back to jamd's reader.  The
differences that remain, each on files no DAW or music21 writes:

- a note-on and a note-off of one pitch at one tick, note-on first: jamd's
  reader follows the file's order (the note-off ends the new note, which
  then lasts one step); symusic ends the earlier note (a repeated note);
- a note whose note-on and note-off lie in different tracks on the same
  channel: jamd's reader pairs them across tracks; symusic reads each track
  alone and drops both halves;
- the wording of a file's "unreadable" reason where symusic cannot parse a
  file jamd's reader refuses as well (jamd's reader then words it: the
  symusic path hands such files back).

Random files (hypothesis) avoid the first two by construction and are
compared in full; music21-written files of real tunes are compared as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jamd.music.keys import detect_key
from jamd.tokens import Note
from jamd.training.corpus_encode import encode_midi
from jamd.training.corpus_sources import Unit, resolve
from jamd.training.ingest.midi import read_fast
from jamd.training.ingest.write_midi import write_midi

FUZZ = settings(max_examples=int(os.environ.get("JAMD_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def same(a, b) -> bool:
    """Two encode_midi results are the same tune (or the same drop)."""
    if (a[0], a[2], a[3]) != (b[0], b[2], b[3]):
        return False
    return (a[1] is None and b[1] is None) or (a[1] is not None and b[1] is not None
                                               and vars(a[1]) == vars(b[1]))


def test_key_analysis_known_values():
    # a D major scale, and no notes at all (music21's empty-stream fallback in detect_key: C major)
    d_major = [Note(0, 62, 8), Note(8, 66, 4), Note(12, 69, 4), Note(16, 74, 8), Note(24, 69, 4), Note(28, 62, 8)]
    assert (detect_key(d_major).tonic, detect_key(d_major).mode) == (2, "major")
    # a scale weighs its notes alike: Aarden-Essen's profiles then call D major's scale B minor
    scale = [Note(2 * i, p, 2) for i, p in enumerate((62, 64, 66, 67, 69, 71, 73, 74))]
    assert (detect_key(scale).tonic, detect_key(scale).mode) == (11, "minor")
    assert (detect_key([]).tonic, detect_key([]).mode) == (0, "major")


EVENT = st.tuples(
    st.integers(0, 3),  # track
    st.sampled_from([0, 1, 9]),  # channel (9: drums)
    st.integers(0, 40),  # onset, in 1/8 of the tpq (so 16ths land on the grid, and some off it)
    # length, same unit; >= 1: a zero-length note's own note-off would sort before its note-on
    st.integers(1, 24),
    st.sampled_from([57, 60, 62, 64, 65, 67, 69, 72]),
)


def _file(path: Path, events, tpq: int, meters, key: str | None, fmt: int) -> Path:
    mid = mido.MidiFile(type=fmt, ticks_per_beat=tpq)
    n_tracks = 1 if fmt == 0 else 4
    per_track: list[list[tuple[int, int, mido.Message]]] = [[] for _ in range(n_tracks)]
    for track, channel, on, length, pitch in events:
        t = per_track[track % n_tracks]
        start, end = on * tpq // 8, (on + length) * tpq // 8
        # note-off sorts before a note-on at one tick (what every writer does)
        t.append((start, 1, mido.Message("note_on", note=pitch, velocity=90, channel=channel)))
        t.append((end, 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
    for tick, (num, den) in meters:
        per_track[0].append((tick * tpq, -1, mido.MetaMessage("time_signature", numerator=num, denominator=den)))
    if key is not None:
        per_track[-1].append((0, -2, mido.MetaMessage("key_signature", key=key)))
    for msgs in per_track:
        track, last = mido.MidiTrack(), 0
        for tick, _, msg in sorted(msgs, key=lambda m: (m[0], m[1])):
            track.append(msg.copy(time=tick - last))
            last = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


@FUZZ
@given(events=st.lists(EVENT, min_size=0, max_size=24), tpq=st.sampled_from([96, 120, 480, 384]),
       meters=st.lists(st.tuples(st.integers(0, 8), st.sampled_from([(4, 4), (3, 4), (6, 8), (2, 4), (5, 8)])),
                       max_size=3),
       key=st.sampled_from([None, "C", "D", "Bb", "F#m", "Am"]), fmt=st.sampled_from([0, 1]),
       part=st.integers(0, 2))
def test_symusic_reads_random_files_as_jamds_reader(tmp_path, events, tpq, meters, key, fmt, part):
    path = _file(tmp_path / "r.mid", events, tpq, meters, key, fmt)
    unit = Unit("r.mid", str(path))
    assert same(encode_midi(unit, part), encode_midi(unit, part, reader="jamd"))


@pytest.fixture(scope="module")
def music21_midi(tmp_path_factory) -> list[Path]:
    """Real tunes (the first 30 units of Erk and 20 of Ryan's) written as MIDI files by music21."""
    out = tmp_path_factory.mktemp("m21midi")
    for source, n in (("erk", 30), ("ryan", 20)):
        write_midi(resolve(source), out, workers=1, progress=False, limit=n)
    return sorted(out.rglob("*.mid"))


def test_symusic_reads_music21_files_as_jamds_reader(music21_midi):
    assert len(music21_midi) >= 45
    results = [(encode_midi(Unit(p.name, str(p)), 0), encode_midi(Unit(p.name, str(p)), 0, reader="jamd"))
               for p in music21_midi]
    assert all(same(a, b) for a, b in results)
    assert sum(a[1] is not None for a, _ in results) >= 25  # most are kept: the comparison covers real tunes
    # symusic read every Erk file itself; a few of Ryan's reels hold overlapping notes of one
    # pitch (music21 writes a held note under a repeated one), which go to jamd's reader
    assert all(read_fast(p) is not None for p in music21_midi if "essenFolksong" in p.parts)
    assert sum(read_fast(p) is None for p in music21_midi) == 3


def test_overlapping_notes_of_one_pitch_go_to_jamds_reader(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=4)
    mid.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=90, time=0), mido.Message("note_on", note=60, velocity=90, time=2),
        mido.Message("note_off", note=60, time=2), mido.Message("note_off", note=60, time=2)]))
    mid.save(str(tmp_path / "restrike.mid"))
    assert read_fast(tmp_path / "restrike.mid") is None  # symusic pairs first-in first-out: not a restrike
    tune = encode_midi(Unit("restrike.mid", str(tmp_path / "restrike.mid")), 0)[1]
    # the restrike ends the first note (jamd's reader); moved from (analysed) G major to C: -7 + 12
    assert tune.symbols == ["55", "_", "55", "_"] and tune.shift == -5


def test_custom_melody_channels_and_smpte_go_to_jamds_reader(tmp_path):
    path = _file(tmp_path / "a.mid", [(0, 0, 0, 4, 60), (0, 0, 4, 4, 62)], 96, [], None, 0)
    assert read_fast(path, 0, default_channels=False) is None
    assert read_fast(path).notes == [Note(0, 60, 2), Note(2, 62, 2)]
    mid = mido.MidiFile(str(path))
    mid.ticks_per_beat = ((256 - 25) << 8 | 40) - 0x10000  # 25 fps, 40 ticks per frame
    mid.save(str(tmp_path / "smpte.mid"))
    assert read_fast(tmp_path / "smpte.mid") is None


def test_without_symusic_jamds_reader_reads_every_file(tmp_path, monkeypatch):
    import sys

    path = _file(tmp_path / "a.mid", [(0, 0, 0, 4, 60), (0, 0, 4, 4, 62), (0, 0, 8, 8, 64)], 96, [], "C", 0)
    unit = Unit("a.mid", str(path))
    with_symusic = encode_midi(unit, 0)
    monkeypatch.setitem(sys.modules, "symusic", None)  # `import symusic` now raises ImportError
    assert read_fast(path) is None
    assert same(encode_midi(unit, 0), with_symusic) and with_symusic[1].symbols == ["60", "_", "62", "_", "64", "_",
                                                                                      "_", "_"]


_CASES = Path(__file__).resolve().parents[1] / ".." / "shared" / "cases" / "midi"
CASES = _CASES if _CASES.is_dir() else Path("/work/shared/cases/midi")


@pytest.mark.skipif(not CASES.is_dir(), reason="shared/cases/midi is not beside the checkout")
def test_the_shared_cases_encode_through_symusic_as_through_jamds_reader():
    """The MIDI files that once broke jamd (shared/cases/midi: SMPTE division, tempo 0, restrikes,
    drums on channel 10, a huge delta): the corpus's symusic path keeps or drops each as jamd's own
    reader does, never an unreadable file."""
    files = sorted(CASES.glob("*.mid"))
    assert files
    for f in files:
        unit = Unit(f.name, str(f))
        fast, slow = encode_midi(unit, 0, (), "symusic"), encode_midi(unit, 0, (), "jamd")
        assert same(fast, slow), f.name
        assert fast[1] is not None or fast[2] is not None, f"{f.name}: unreadable ({fast[3]})"
