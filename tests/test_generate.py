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


# -- seeds from MIDI files (issue 13) -----------------------------------------------

def _midi(path, events, tpb=480):
    mid = mido.MidiFile(type=0, ticks_per_beat=tpb)
    mid.tracks.append(mido.MidiTrack(events))
    mid.save(str(path))
    return path


def _time_signature(path):
    ts = [m for m in mido.MidiFile(str(path)).tracks[0] if m.type == "time_signature"]
    return ts[0].numerator, ts[0].denominator


@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\xe7\x00",
                                     b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x08"
                                     b"\x00\xff\x59\x02\x50\x00\x00\xff\x2f\x00"])
def test_unreadable_seed_midi_is_one_line_and_exit_4(tmp_path, capsys, shipped_lstm, content):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(content)
    assert main(["generate", "--seed-midi", str(bad), "--out", str(tmp_path / "o.mid")]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(bad) in err
    assert len([line for line in err.splitlines() if str(bad) in line]) == 1
    assert not (tmp_path / "o.mid").exists()


def test_huge_gap_seed_is_cut_to_its_last_bars(tmp_path, capsys, shipped_lstm):
    # 1 tick per beat, and 2^28 beats between two notes (case 11's kind)
    seed = _midi(tmp_path / "gap.mid", [mido.Message("note_on", note=62, velocity=90),
                                        mido.Message("note_off", note=62, time=1),
                                        mido.Message("note_on", note=64, velocity=90, time=2**28 - 1),
                                        mido.Message("note_off", note=64, time=1)], tpb=1)
    out = generate(tmp_path, "o.mid", "--seed-midi", str(seed))
    assert "the model uses its last 8 bars" in capsys.readouterr().err  # the CLI logs to stderr
    notes, _ = read_midi_notes(out)
    assert notes[0] == Note(0, 64, 4) and max(n.end for n in notes) <= 16 + 8 * 16


def test_three_four_seed_is_answered_in_three_four(tmp_path, shipped_lstm):
    seed = tmp_path / "waltz.mid"
    write_midi([Note(0, 67, 4), Note(4, 64, 4), Note(8, 64, 4), Note(12, 65, 4), Note(16, 62, 8)], seed,
               time_signature=(3, 4))
    out = generate(tmp_path, "o.mid", "--seed-midi", str(seed))
    assert _time_signature(out) == (3, 4)
    notes, _ = read_midi_notes(out)
    assert max(n.end for n in notes) <= 24 + 8 * 12  # two 3/4 bars of seed, then 8 bars of 12 steps
    override = generate(tmp_path, "o44.mid", "--seed-midi", str(seed), "--meter", "4/4")
    assert _time_signature(override) == (4, 4)


def test_bad_meter_option_is_a_usage_error(tmp_path, capsys, shipped_lstm):
    assert main(["generate", "--seed", SEED, "--meter", "three", "--out", str(tmp_path / "o.mid")]) == 2
    assert "--meter" in capsys.readouterr().err


def test_pickup_in_a_midi_seed_stays_a_pickup(tmp_path, shipped_lstm):
    # a written 1/4 pickup bar, then 4/4: the pickup sits on beat 4 of the bar before
    events = [mido.MetaMessage("time_signature", numerator=1, denominator=4),
              mido.Message("note_on", note=67, velocity=90), mido.Message("note_off", note=67, time=480),
              mido.MetaMessage("time_signature", numerator=4, denominator=4),
              mido.Message("note_on", note=72, velocity=90), mido.Message("note_off", note=72, time=1920)]
    seed = _midi(tmp_path / "pickup.mid", events)
    out = generate(tmp_path, "o.mid", "--seed-midi", str(seed))
    notes, _ = read_midi_notes(out)
    assert (notes[0].start, notes[1].start) == (12, 16)  # from the bar line before the pickup


def test_drums_are_not_the_seed(tmp_path, shipped_lstm):
    melody = [Note(0, 67, 2), Note(2, 67, 2), Note(4, 67, 3), Note(7, 65, 1), Note(8, 64, 8)]
    write_midi(melody, tmp_path / "m.mid")
    mid = mido.MidiFile(str(tmp_path / "m.mid"))
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=81, velocity=100, channel=9),
                                      mido.Message("note_off", note=81, channel=9, time=60)]))
    mid.save(str(tmp_path / "with_drums.mid"))
    a = generate(tmp_path, "a.mid", "--seed-midi", str(tmp_path / "m.mid")).read_bytes()
    b = generate(tmp_path, "b.mid", "--seed-midi", str(tmp_path / "with_drums.mid")).read_bytes()
    assert a == b


def test_seed_notes_beyond_the_models_range_are_folded_and_said(tmp_path, capsys, shipped_lstm):
    """A phrase at the top of the keyboard (C major: moved +0) plays in the model's range, by octaves,
    and the log says how many notes moved, so the seed bars differing from the file is no surprise."""
    seed = tmp_path / "high.mid"
    write_midi([Note(0, 120, 4), Note(4, 124, 4), Note(8, 127, 4), Note(12, 72, 4)], seed)
    out = generate(tmp_path, "o.mid", "--seed-midi", str(seed))
    err = capsys.readouterr().err
    assert "moved +0 semitones to C major" in err
    assert f"seed {seed}: 3 of its 4 notes moved by octaves into the model's range (MIDI 48-88)" in err
    notes, _ = read_midi_notes(out)
    assert [n.pitch for n in notes[:4]] == [84, 88, 79, 72]
