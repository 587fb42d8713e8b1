"""What the corpus does with MIDI timing off the 16th grid (the README's "Training on your own MIDI").

jamd's MIDI reader (the reference) rounds every note to the nearest 16th, as
live input is; a note shorter than a 16th after rounding lasts one 16th.  The
corpus then drops a file only when a rounded duration is not one the seed
accepts (16th, 8th, dotted 8th, quarter, dotted quarter, half, dotted half,
whole).  The symusic path must read these files exactly as jamd's reader does.
"""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from jamd.tokens import HOLD, REST
from jamd.training.corpus_encode import encode_midi
from jamd.training.corpus_sources import Unit

TPQ = 480
C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72)


def midi_file(path: Path, notes: list[tuple[int, int, int]]) -> Path:
    """A one-track file at 480 ticks per quarter of (start tick, end tick, pitch) notes."""
    events = []
    for start, end, pitch in notes:
        events += [(start, 1, mido.Message("note_on", note=pitch, velocity=90)),
                   (end, 0 if end > start else 2, mido.Message("note_off", note=pitch, velocity=0))]
    events.sort(key=lambda e: (e[0], e[1]))  # at one tick: offs, ons, then the offs of zero-length notes
    track, now = mido.MidiTrack(), 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    mid.tracks.append(track)
    mid.save(path)
    return path


def both(path: Path):
    """(name, tune, reason, detail) from the symusic path and from jamd's reader, which must agree."""
    fast = encode_midi(Unit(path.name, str(path)), 0, reader="symusic")
    ref = encode_midi(Unit(path.name, str(path)), 0, reader="jamd")
    assert (fast[0], fast[2], fast[3]) == (ref[0], ref[2], ref[3])
    assert (fast[1] is None) == (ref[1] is None)
    if ref[1] is not None:
        assert fast[1].symbols == ref[1].symbols
    return ref


def runs(symbols: list[str]) -> list[int]:
    """The length in 16ths of each note or rest of a tune's symbols."""
    out: list[int] = []
    for s in symbols:
        if s == HOLD:
            out[-1] += 1
        else:
            out.append(1)
    return out


def test_triplet_eighths_are_rounded_to_16ths_and_kept(tmp_path):
    # 12 triplet 8ths (160 ticks) start on ticks 0, 160, 320...: steps 0, 1.33, 2.67, 4... round to 0, 1, 3, 4
    notes = [(160 * i, 160 * (i + 1), C_MAJOR[i % 8]) for i in range(12)]
    _, tune, reason, _ = both(midi_file(tmp_path / "triplets.mid", notes))
    assert reason is None
    assert runs(tune.symbols) == [1, 2, 1] * 4


def test_zero_length_notes_last_one_16th_and_are_kept(tmp_path):
    notes = [(240 * i, 240 * i, C_MAJOR[i]) for i in range(8)]  # on and off on one tick, every 8th
    _, tune, reason, _ = both(midi_file(tmp_path / "zero.mid", notes))
    assert reason is None
    assert runs(tune.symbols) == [1] * 15  # a 16th note, a 16th rest, ..., the last note
    assert [s == REST for s in tune.symbols] == [i % 2 == 1 for i in range(15)]


@pytest.mark.parametrize("ticks, steps", [(600, 5), (700, 6)])
def test_a_rounded_duration_the_seed_lacks_drops_the_file(tmp_path, ticks, steps):
    # 600 ticks = 5 16ths (no such note value in the seed): dropped; 700 ticks round to 6 (a dotted quarter)
    notes = [(0, ticks, 60), (ticks, ticks + 480, 64), (ticks + 480, ticks + 960, 67)]
    _, tune, reason, _ = both(midi_file(tmp_path / f"d{ticks}.mid", notes))
    if steps == 5:
        assert (tune, reason) == (None, "durations")
    else:
        assert reason is None and runs(tune.symbols) == [6, 4, 4]
