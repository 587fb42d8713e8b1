"""Tune names, paths and the split of the sharded store never depend on the cache's history.

The store keys files by absolute path and is shared by every source, so a file
first parsed from a parent folder (named "sub/ok.mid" there) must still be
"ok.mid" when its own folder is the source, and the other way round; a
relative source ("." ) shares the store of its absolute folder; a dangling link
is one unreadable file with one warning line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from jamd.config import CorpusConfig
from jamd.midi.midifile import write_midi
from jamd.tokens import Note
from jamd.training import corpus_encode
from jamd.training.corpus import load_corpus
from jamd.training.corpus_sources import rebase_name, resolve
from jamd.training.ingest import shards
from jamd.training.ingest.load import store_dir

# a D major tune in 16th steps (the one tests/test_corpus_store.py uses)
D_TUNE = [Note(0, 62, 2), Note(2, 64, 2), Note(4, 66, 2), Note(6, 67, 2), Note(8, 69, 4), Note(12, 66, 2),
          Note(14, 62, 2), Note(16, 71, 2), Note(18, 69, 2), Note(20, 67, 2), Note(22, 66, 2), Note(24, 64, 4),
          Note(28, 62, 4)]
ABC = "X:1\nT:a\nM:4/4\nL:1/8\nK:D\nDEFG A2FD|\n\nX:2\nT:b\nM:4/4\nL:1/8\nK:D\nAGFE D2FA|\n"


def cfg_for(source: str, cache: Path) -> CorpusConfig:
    return CorpusConfig(source=source, cache_dir=str(cache), workers=1)


def make_tree(root: Path) -> Path:
    """root/sub/{ok.mid, text.mid (not MIDI), very_long.mid (over 1,024 bars)}; returns root/sub."""
    sub = root / "sub"
    sub.mkdir(parents=True)
    write_midi(D_TUNE, sub / "ok.mid")
    (sub / "text.mid").write_text("this is a text file, not MIDI\n")
    write_midi([Note(0, 62, 4), Note(16 * 1024 + 16, 64, 4)], sub / "very_long.mid")
    return sub


def fresh_report(source: Path, tmp_path: Path) -> dict:
    return load_corpus(cfg_for(str(source), tmp_path / "fresh"), progress=False).stats


@pytest.mark.parametrize("first", ["parent", "sub"])
def test_names_follow_the_root_being_ingested_whatever_parsed_first(tmp_path, caplog, first):
    sub = make_tree(tmp_path / "X")
    parent = sub.parent
    cache = tmp_path / "cache"
    warm, now = (parent, sub) if first == "parent" else (sub, parent)
    load_corpus(cfg_for(str(warm), cache), progress=False)
    write_midi(D_TUNE[:4], sub / "new.mid")  # something to parse, so this run logs its warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jamd.corpus"):
        corpus = load_corpus(cfg_for(str(now), cache), progress=False)
    prefix = "" if now == sub else "sub/"
    assert corpus.stats["parsed_files"] == 1
    assert corpus.names == [f"{prefix}new.mid", f"{prefix}ok.mid"]
    assert [corpus.tune(i).name for i in range(2)] == corpus.names
    assert [r.name for r in corpus.iter_tunes([0, 1])] == corpus.names
    assert corpus.stats["parse_errors"] == [f"{prefix}text.mid"]
    assert corpus.stats["skipped"] == [f"{prefix}very_long.mid: too long"]
    warned = sorted(r.getMessage().split(": ")[0].removeprefix("skipping ") for r in caplog.records)
    assert warned == [str(sub / "text.mid"), str(sub / "very_long.mid")]
    fresh = fresh_report(now, tmp_path)
    assert (corpus.stats["parse_errors"], corpus.stats["skipped"]) == (fresh["parse_errors"], fresh["skipped"])


def test_abc_tune_names_are_rebased_too(tmp_path):
    sub = tmp_path / "X" / "sub"
    sub.mkdir(parents=True)
    (sub / "t.abc").write_text(ABC)
    cache = tmp_path / "cache"
    assert load_corpus(cfg_for(str(sub.parent), cache), progress=False).names == ["sub/t.abc#1", "sub/t.abc#2"]
    corpus = load_corpus(cfg_for(str(sub), cache), progress=False)
    assert corpus.stats["parsed_files"] == 0
    assert corpus.names == ["t.abc#1", "t.abc#2"]


def test_split_does_not_depend_on_the_cache_history(tmp_path):
    sub = tmp_path / "X" / "sub"
    for k in range(12):
        write_midi([Note(n.start, n.pitch + k % 5, n.duration) for n in D_TUNE], sub / f"t{k:02d}.mid")
    fresh = load_corpus(cfg_for(str(sub), tmp_path / "fresh"), progress=False)
    cache = tmp_path / "cache"
    load_corpus(cfg_for(str(sub.parent), cache), progress=False)
    via_parent = load_corpus(cfg_for(str(sub), cache), progress=False)
    assert via_parent.stats["parsed_files"] == 0
    assert via_parent.names == fresh.names == [f"t{k:02d}.mid" for k in range(12)]
    assert via_parent.split(0.25, 3) == fresh.split(0.25, 3)
    train, val = fresh.split(0.25, 3)
    assert (len(train), len(val)) == (9, 3)


def test_rebase_name_exact():
    f = Path("/tmp/X/sub/a#b.abc")
    assert rebase_name("sub/a#b.abc#3", f, Path("/tmp/X/sub")) == "a#b.abc#3"
    assert rebase_name("a#b.abc#3", f, Path("/tmp/X")) == "sub/a#b.abc#3"
    assert rebase_name("a#b.abc", f, Path("/tmp")) == "X/sub/a#b.abc"
    assert rebase_name("X/sub/a#b.abc#1.2", f, Path("/tmp/X/sub")) == "a#b.abc#1.2"
    assert rebase_name("sub/a#b.abc", f, Path("/elsewhere")) == "a#b.abc"  # not below the root: its name


def test_relative_source_shares_the_store_of_its_absolute_folder(tmp_path, monkeypatch):
    folder = tmp_path / "midi"
    for k in range(3):
        write_midi(D_TUNE, folder / f"t{k}.mid")
    cache = tmp_path / "cache"
    first = load_corpus(cfg_for(str(folder), cache), progress=False)
    monkeypatch.chdir(folder)
    calls: list[str] = []
    real = corpus_encode.encode_unit
    monkeypatch.setattr(corpus_encode, "encode_unit", lambda job: calls.append(job[0].path) or real(job))
    again = load_corpus(cfg_for(".", cache), progress=False)
    assert calls == []
    assert again.stats["parsed_files"] == 0
    assert again.names == first.names == ["t0.mid", "t1.mid", "t2.mid"]
    assert again.source == "."  # what the user typed, in messages
    journal = shards.read_journal(store_dir(cfg_for(".", cache), ()))
    assert sorted(journal) == [str(folder / f"t{k}.mid") for k in range(3)]
    assert resolve(".").root == folder.resolve()


def test_a_dangling_link_is_one_unreadable_file_with_one_warning(tmp_path, caplog):
    folder = tmp_path / "midi"
    write_midi(D_TUNE, folder / "ok.mid")
    os.symlink(folder / "gone.mid", folder / "x.mid")
    with caplog.at_level(logging.WARNING, logger="jamd.corpus"):
        corpus = load_corpus(cfg_for(str(folder), tmp_path / "cache"), progress=False)
    assert corpus.stats["files"] == 2
    assert corpus.stats["parse_errors"] == ["x.mid"]
    assert corpus.names == ["ok.mid"]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].startswith(f"skipping {folder / 'x.mid'}: cannot read it")
    # cached: the same report, nothing parsed again; fixed: parsed again
    again = load_corpus(cfg_for(str(folder), tmp_path / "cache"), progress=False)
    assert (again.stats["parsed_files"], again.stats["parse_errors"]) == (0, ["x.mid"])
    write_midi(D_TUNE, folder / "gone.mid")
    fixed = load_corpus(cfg_for(str(folder), tmp_path / "cache"), progress=False)
    assert fixed.stats["parse_errors"] == []
    assert fixed.names == ["gone.mid", "ok.mid", "x.mid"]
