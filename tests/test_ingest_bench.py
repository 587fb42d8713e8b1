"""`jamd bench --suite ingest`: a clear usage line without --folder, and every rate over exactly the
MIDI files it counts (as `jamd corpus` lists them, a dangling link included, unreadable in both)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from cli_checks import assert_one_line, run_cli

from jamd.bench import ingest
from jamd.config import Config
from jamd.midi.midifile import write_midi
from jamd.tokens import Note

D_TUNE = [Note(0, 62, 2), Note(2, 64, 2), Note(4, 66, 2), Note(6, 67, 2), Note(8, 69, 4), Note(12, 66, 2),
          Note(14, 62, 2), Note(16, 71, 2), Note(18, 69, 2), Note(20, 67, 2), Note(22, 66, 2), Note(24, 64, 4),
          Note(28, 62, 4)]
ABC = "X:1\nT:a\nM:4/4\nL:1/8\nK:D\nDEFG A2FD|\n\nX:2\nT:b\nM:4/4\nL:1/8\nK:D\nAGFE D2FA|\n"


def test_ingest_without_folder_is_one_usage_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were the current folder benchmarked, this one would say "no .mid files"
    code, out, err = run_cli(capsys, "bench", "--suite", "ingest")
    assert code == 2
    assert_one_line(err, "--suite ingest needs --folder DIR")
    assert out == ""


def _bench(folder: Path, cache: Path) -> dict:
    cfg = Config()
    cfg = replace(cfg, corpus=replace(cfg.corpus, workers=1, cache_dir=str(cache)))
    return ingest.run(argparse.Namespace(folder=str(folder), quick=True, m21_files=300), cfg)


def test_ingest_rates_cover_only_the_midi_files_it_counts(tmp_path, monkeypatch):
    folder = tmp_path / "mixed"
    write_midi(D_TUNE, folder / "a.mid")
    write_midi(D_TUNE, folder / "b" / "c.midi")
    (folder / "tunes.abc").write_text(ABC)  # two tunes music21 keeps: not MIDI, not counted, not timed
    os.symlink(folder / "gone.mid", folder / "x.mid")
    timed: list[str] = []
    real = ingest._rate
    monkeypatch.setattr(ingest, "_rate", lambda files, encode: timed.append(sorted(f.name for f in files))
                        or real(files, encode))
    figures = _bench(folder, tmp_path / "cache")
    assert figures["files"] == 3
    assert (figures["kept"], figures["dropped"], figures["unreadable"]) == (2, {}, 1)
    assert figures["music21_files"] == 3
    assert timed == [["a.mid", "c.midi", "x.mid"]] * 2


def test_ingest_folder_that_is_not_one(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "--suite", "ingest", "--folder", tmp_path / "missing")
    assert code == 4
    assert_one_line(err, "not a folder")
