"""`jamd generate` with the shipped model writes a playable, readable MIDI file."""

from __future__ import annotations

import mido
import pytest

from jamd.cli import main
from jamd.midi.midifile import read_midi_notes, write_midi
from jamd.music.keys import detect_key
from jamd.tokens import Note, symbols_to_notes

SEED = "67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _"


def generate(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["generate", "--model", "lstm", "--bars", "8", "--temperature", "0.9",
                 "--random-seed", "1", "--out", str(out), *extra]) == 0
    return out


def test_the_issue_command_writes_a_standard_midi_file(tmp_path, shipped_lstm):
    out = generate(tmp_path, "out.mid", "--seed", SEED, "--bpm", "100")
    mid = mido.MidiFile(str(out))
    metas = {m.type: m for m in mid.tracks[0] if m.is_meta}
    assert mido.tempo2bpm(metas["set_tempo"].tempo) == pytest.approx(100)
    assert (metas["time_signature"].numerator, metas["time_signature"].denominator) == (4, 4)
    sounding: dict[int, int] = {}
    ons = 0
    for msg in mid.tracks[0]:
        if msg.type == "note_on" and msg.velocity > 0:
            assert msg.note not in sounding, "note struck twice without a note-off"
            sounding[msg.note] = 1
            ons += 1
        elif msg.type in ("note_off", "note_on"):
            assert sounding.pop(msg.note, None) == 1, "note-off without note-on"
    assert not sounding and ons >= 8
    notes, _ = read_midi_notes(out)
    # the file begins with the seed (whose last note the model may hold on), then 8 bars
    seed = symbols_to_notes(SEED.split())
    assert notes[:6] == seed[:6]
    assert (notes[6].start, notes[6].pitch) == (seed[6].start, seed[6].pitch)
    assert max(n.end for n in notes) <= 16 + 8 * 16


def test_music21_reads_it(tmp_path, shipped_lstm):
    from music21 import converter

    out = generate(tmp_path, "out.mid", "--seed", SEED)
    score = converter.parse(str(out))
    assert len(score.flatten().notes) >= 8


def test_random_seed_reproduces(tmp_path, shipped_lstm):
    a = generate(tmp_path, "a.mid", "--seed", SEED).read_bytes()
    b = generate(tmp_path, "b.mid", "--seed", SEED).read_bytes()
    assert a == b
    c = tmp_path / "c.mid"
    main(["generate", "--bars", "8", "--random-seed", "2", "--seed", SEED, "--out", str(c)])
    assert c.read_bytes() != a


def test_seed_midi_in_any_key_comes_back_in_its_key(tmp_path, shipped_lstm):
    phrase = [Note(0, 67, 2), Note(2, 67, 2), Note(4, 67, 3), Note(7, 65, 1), Note(8, 64, 2),
              Note(10, 62, 2), Note(12, 60, 4)]
    write_midi(phrase, tmp_path / "c.mid")
    write_midi([Note(n.start, n.pitch + 2, n.duration) for n in phrase], tmp_path / "d.mid")
    out_c = generate(tmp_path, "out_c.mid", "--seed-midi", str(tmp_path / "c.mid"))
    out_d = generate(tmp_path, "out_d.mid", "--seed-midi", str(tmp_path / "d.mid"))
    notes_c, _ = read_midi_notes(out_c)
    notes_d, _ = read_midi_notes(out_d)
    # the model saw the same C-major phrase both times: the D answer is the C answer up a tone
    assert [(n.start, n.pitch + 2, n.duration) for n in notes_c] == [(n.start, n.pitch, n.duration) for n in notes_d]
    assert detect_key(notes_d).tonic == (detect_key(notes_c).tonic + 2) % 12
