"""`jamd generate --harmony` with the shipped harmony model: one file, melody, chords and bass tracks."""

from __future__ import annotations

from collections import defaultdict

import mido
import pytest
from cli_checks import assert_one_line, run_cli

from jamd.cli import main
from jamd.config import Config
from jamd.inference.model_store import shipped_models_dir
from jamd.midi.midifile import write_midi
from jamd.music.chords import N_CHORDS, chord_tones
from jamd.music.voicing import close_positions
from jamd.tokens import Note

SEED = "67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _"
TICKS = 480  # per quarter, as jamd writes
CFG = Config()
VOCABULARY = {frozenset(chord_tones(c)) for c in range(1, N_CHORDS)}

needs_model = pytest.mark.skipif(not (shipped_models_dir() / "harmony.onnx").is_file(),
                                 reason="models/harmony.onnx is not shipped yet (trained on branch h-train)")


def generate(tmp_path, name, *extra, bars=8):
    out = tmp_path / name
    assert main(["generate", "--model", "lstm", "--bars", str(bars), "--temperature", "0.9", "--random-seed", "1",
                 "--out", str(out), *extra]) == 0
    return out


def read_tracks(path):
    """{track name: (channels, velocities, [(start tick, end tick, pitch)])} of a written file."""
    out = {}
    for track in mido.MidiFile(str(path)).tracks:
        name = next(m.name for m in track if m.type == "track_name")
        now, open_, notes, channels, velocities = 0, {}, [], set(), set()
        for m in track:
            now += m.time
            if m.type == "note_on" and m.velocity > 0:
                assert m.note not in open_, f"{name}: {m.note} struck twice without a note-off"
                open_[m.note] = now
                channels.add(m.channel)
                velocities.add(m.velocity)
            elif m.type in ("note_on", "note_off"):
                notes.append((open_.pop(m.note), now, m.note))
        assert not open_, f"{name}: notes left sounding"
        out[name] = (channels, velocities, sorted(notes))
    return out


def onsets(notes):
    groups = defaultdict(list)
    for start, end, pitch in notes:
        groups[start].append((end, pitch))
    return dict(sorted(groups.items()))


@needs_model
def test_three_tracks_on_their_channels_and_the_chords_per_bar_logged(tmp_path, capsys):
    out = generate(tmp_path, "h.mid", "--seed", SEED, "--harmony")
    tracks = read_tracks(out)
    assert list(tracks) == ["melody", "chords", "bass"]
    h = CFG.harmony
    assert tracks["melody"][:2] == ({CFG.output.channel - 1}, {CFG.output.velocity})
    assert tracks["chords"][:2] == ({h.chords_channel - 1}, {h.chords_velocity})
    assert tracks["bass"][:2] == ({h.bass_channel - 1}, {h.bass_velocity})
    assert mido.MidiFile(str(out)).type == 1
    log = [line for line in capsys.readouterr().err.splitlines() if "chords (" in line]
    assert len(log) == 1 and "bar 1: " in log[0] and "bar 9: " in log[0]


@needs_model
def test_chords_are_full_on_beats_in_range_and_the_bass_under_them(tmp_path):
    tracks = read_tracks(generate(tmp_path, "h.mid", "--seed", SEED, "--harmony"))
    h = CFG.harmony
    chords = onsets(tracks["chords"][2])
    assert len(chords) >= 8 * 4  # pattern beats: every beat of the 8 bars
    for start, notes in chords.items():
        assert start % TICKS == 0, f"a chord struck off the beat at tick {start}"
        pitches = sorted(p for _, p in notes)
        assert 3 <= len(pitches) <= 4 and len(set(p % 12 for p in pitches)) == len(pitches)
        assert frozenset(p % 12 for p in pitches) in VOCABULARY
        assert h.chords_lowest <= pitches[0] and pitches[-1] <= h.chords_highest
    bass = onsets(tracks["bass"][2])
    assert bass and set(bass) <= set(chords)
    for start, notes in bass.items():
        assert len(notes) == 1
        low = min(p for _, p in chords[start])
        assert low - 12 <= notes[0][1] < low
        # pattern beats: beats 1 and 3, and changes, which half-bar rhythm also puts on 1 and 3
        assert (start // TICKS) % 4 in (0, 2), f"bass struck on beat {(start // TICKS) % 4 + 1}"


@needs_model
def test_chords_stay_under_the_melody_where_the_range_allows(tmp_path):
    # sustained: each chord sounds over its whole span, so the melody over it is what it was voiced under
    tracks = read_tracks(generate(tmp_path, "h.mid", "--seed", SEED, "--harmony", "--set", "harmony.pattern=sustained",
                                  "--set", "harmony.gate=1.0"))
    melody = tracks["melody"][2]
    h = CFG.harmony
    checked = 0
    for start, notes in onsets(tracks["chords"][2]).items():
        end = max(e for e, _ in notes)
        over = [p for s, e, p in melody if s < end and e > start]
        if not over:
            continue
        pcs = [p % 12 for _, p in notes]
        top = max(p for _, p in notes)
        if close_positions(pcs, h.chords_lowest, min(h.chords_highest, min(over) - 1)):
            assert top < min(over), f"chord at tick {start} reaches {top}, the melody {min(over)}"
            checked += 1
    assert checked >= 8


@needs_model
def test_random_seed_reproduces_and_the_melody_is_the_same_as_without_harmony(tmp_path):
    a = generate(tmp_path, "a.mid", "--seed", SEED, "--harmony").read_bytes()
    b = generate(tmp_path, "b.mid", "--seed", SEED, "--harmony").read_bytes()
    assert a == b
    alone = read_tracks(generate(tmp_path, "m.mid", "--seed", SEED))
    with_harmony = read_tracks(tmp_path / "a.mid")
    assert alone["jamd"][2] == with_harmony["melody"][2]


@needs_model
def test_a_seed_in_d_gets_the_same_chords_a_tone_up(tmp_path):
    phrase = [Note(0, 67, 2), Note(2, 67, 2), Note(4, 67, 3), Note(7, 65, 1), Note(8, 64, 2),
              Note(10, 62, 2), Note(12, 60, 4)]
    write_midi(phrase, tmp_path / "c.mid")
    write_midi([Note(n.start, n.pitch + 2, n.duration) for n in phrase], tmp_path / "d.mid")
    in_c = onsets(read_tracks(generate(tmp_path, "oc.mid", "--seed-midi", str(tmp_path / "c.mid"), "--harmony"))
                  ["chords"][2])
    in_d = onsets(read_tracks(generate(tmp_path, "od.mid", "--seed-midi", str(tmp_path / "d.mid"), "--harmony"))
                  ["chords"][2])
    assert list(in_c) == list(in_d)
    assert [{(p + 2) % 12 for _, p in n} for n in in_c.values()] == [{p % 12 for _, p in n} for n in in_d.values()]


@needs_model
def test_three_four_bass_on_the_downbeat(tmp_path):
    tracks = read_tracks(generate(tmp_path, "w.mid", "--seed", SEED, "--meter", "3/4", "--harmony"))
    bar = 3 * TICKS
    assert all(start % TICKS == 0 for start, _, _ in tracks["chords"][2])
    assert all(start % bar == 0 for start, _, _ in tracks["bass"][2])  # half-bar in 3/4 is the bar


def test_a_missing_harmony_model_is_one_line(tmp_path, capsys, shipped_lstm):
    missing = tmp_path / "nowhere.onnx"
    code, _, err = run_cli(capsys, "generate", "--seed", SEED, "--harmony", "--harmony-model", missing,
                           "--out", tmp_path / "o.mid")
    assert code == 3
    assert_one_line(err, str(missing), "not found")
    assert not (tmp_path / "o.mid").exists()


def test_a_corrupt_or_wrong_harmony_model_is_one_line(tmp_path, capsys, shipped_lstm):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not protobuf" * 10)
    code, _, err = run_cli(capsys, "generate", "--seed", SEED, "--harmony", "--harmony-model", bad,
                           "--out", tmp_path / "o.mid")
    assert code == 3
    assert_one_line(err, str(bad))
    code, _, err = run_cli(capsys, "generate", "--seed", SEED, "--harmony", "--harmony-model", "lstm",
                           "--out", tmp_path / "o.mid")
    assert code == 3
    assert_one_line(err, "not a harmony model")
    assert not (tmp_path / "o.mid").exists()


def test_write_midi_tracks_exact_events(tmp_path):
    from jamd.midi.midifile import Track, write_midi_tracks

    path = write_midi_tracks([Track("melody", [Note(0, 72, 8)], channel=1, velocity=90),
                              Track("chords", [Note(0, 60, 4), Note(4, 60, 4)], channel=2, velocity=64, gate=0.5)],
                             tmp_path / "t.mid", bpm=100, time_signature=(3, 4))
    mid = mido.MidiFile(str(path))
    assert [[(m.type, m.time) for m in t if m.is_meta] for t in mid.tracks] == [
        [("track_name", 0), ("set_tempo", 0), ("time_signature", 0), ("end_of_track", 0)],
        [("track_name", 0), ("end_of_track", 0)]]
    # the chord track's notes sound half their length: 240 of 480 ticks, then struck again at 480
    assert [(m.type, m.note, m.velocity, m.channel, m.time) for m in mid.tracks[1] if not m.is_meta] == [
        ("note_on", 60, 64, 1, 0), ("note_off", 60, 0, 1, 240), ("note_on", 60, 64, 1, 240),
        ("note_off", 60, 0, 1, 240)]
    assert read_tracks(path)["melody"] == ({0}, {90}, [(0, 960, 72)])
