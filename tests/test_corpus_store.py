"""The sharded, incremental corpus store (`jamd.training.ingest`) on small folders of real MIDI and ABC.

Re-runs parse only new or changed files; a parse killed with SIGKILL loses at
most the shard it was filling; several sources report their shares; Erk's
held-out tunes stay held out; `iter_tunes` reads shard by shard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jamd.config import CorpusConfig
from jamd.midi.midifile import write_midi
from jamd.tokens import Note
from jamd.training import corpus_encode
from jamd.training.corpus import EncodedCorpus, load_corpus
from jamd.training.ingest import shards
from jamd.training.ingest.split import split_by_name, split_with_erk

# a D major tune (the one tests/test_corpus.py uses), moved by k semitones per file
D_TUNE = [Note(0, 62, 2), Note(2, 64, 2), Note(4, 66, 2), Note(6, 67, 2), Note(8, 69, 4), Note(12, 66, 2),
          Note(14, 62, 2), Note(16, 71, 2), Note(18, 69, 2), Note(20, 67, 2), Note(22, 66, 2), Note(24, 64, 4),
          Note(28, 62, 4)]


def tune_file(path: Path, k: int, bars: int = 1) -> Path:
    """A MIDI file of D_TUNE moved up k semitones and its rhythm repeated `bars` times."""
    notes = [Note(n.start + 32 * b, n.pitch + k, n.duration) for b in range(bars) for n in D_TUNE]
    write_midi(notes, path)
    return path


def cfg_for(source, cache: Path, **kw) -> CorpusConfig:
    src = str(source) if isinstance(source, Path) else source
    return CorpusConfig(source=src, cache_dir=str(cache), workers=1, **kw)


def counting(mp: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = corpus_encode.encode_unit

    def count(job):
        calls.append(Path(job[0].path).name)
        return real(job)

    mp.setattr(corpus_encode, "encode_unit", count)
    return calls


@pytest.fixture()
def folder(tmp_path) -> Path:
    d = tmp_path / "midi"
    d.mkdir()
    for k in range(5):
        tune_file(d / f"t{k}.mid", k, bars=k + 1)
    return d


def test_a_rerun_parses_only_new_or_changed_files(folder, tmp_path, monkeypatch):
    cfg = cfg_for(folder, tmp_path / "cache", shard_tunes=2)
    calls = counting(monkeypatch)
    first = load_corpus(cfg, progress=False)
    assert sorted(calls) == [f"t{k}.mid" for k in range(5)] and first.stats["shards"] == 3
    calls.clear()
    tune_file(folder / "new.mid", 7)
    os.utime(folder / "t2.mid", ns=(0, 10**18))  # touched: another mtime, same bytes
    again = load_corpus(cfg, progress=False)
    assert sorted(calls) == ["new.mid", "t2.mid"]
    assert again.stats["parsed_files"] == 2 and again.stats["kept"] == 6
    assert [t.name for t in again.tunes] == ["new.mid", "t0.mid", "t1.mid", "t2.mid", "t3.mid", "t4.mid"]
    assert again.tunes[3].symbols == first.tunes[2].symbols
    calls.clear()
    assert load_corpus(cfg, progress=False).stats["cached"] is True and calls == []
    # the journal is the truth: t2's old shard entry is superseded, the files' lines say so
    known = shards.read_journal(Path(again.stats["cache_file"]))
    assert len(known) == 6 and known[str(folder / "t2.mid")].size == (folder / "t2.mid").stat().st_size


def test_the_sharded_corpus_answers_as_the_in_memory_one(folder, tmp_path):
    sharded = load_corpus(cfg_for(folder, tmp_path / "cache", shard_tunes=2), progress=False)
    memory = EncodedCorpus.from_tunes(list(sharded.tunes), "x", {})
    assert sharded.vocab == memory.vocab and len(sharded) == len(memory) == 5
    assert sharded.n_tokens == memory.n_tokens == 32 * (1 + 2 + 3 + 4 + 5)
    for i in range(5):
        assert np.array_equal(sharded.ids(i), memory.ids(i))
    assert np.array_equal(sharded.stream([4, 0], 8), memory.stream([4, 0], 8))
    assert sharded.split(0.4, 3) == memory.split(0.4, 3)
    assert [r.name for r in sharded.iter_tunes([3, 1])] == ["t3.mid", "t1.mid"]
    rec = next(sharded.iter_tunes([2]))
    assert (rec.bar_steps, rec.pickup_steps, rec.shift) == (16, 0, -4)  # t2: D moved up 2 is E major, -4 to C
    assert np.array_equal(rec.ids, memory.ids(2))


def test_shuffled_iteration_reads_shard_by_shard(folder, tmp_path):
    corpus = load_corpus(cfg_for(folder, tmp_path / "cache", shard_tunes=2), progress=False)
    shard_of = {corpus.names[i]: corpus.shard_of[i] for i in range(len(corpus))}
    for seed in range(6):
        order = [r.name for r in corpus.iter_tunes(range(5), seed=seed)]
        assert sorted(order) == sorted(shard_of)
        visited = [shard_of[n] for n in order]
        # each shard's tunes come together: the shard changes at most (shards - 1) times
        assert sum(a != b for a, b in zip(visited, visited[1:], strict=False)) == len(set(visited)) - 1
    assert len({tuple(r.name for r in corpus.iter_tunes(range(5), seed=s)) for s in range(6)}) > 1


CRASHER = """
import sys, time
from pathlib import Path
from jamd.config import CorpusConfig
from jamd.training import corpus_encode
from jamd.training.corpus import load_corpus
real = corpus_encode.encode_unit
def slow(job):
    time.sleep(0.4)  # slow enough for the test to kill it half way
    return real(job)
corpus_encode.encode_unit = slow
load_corpus(CorpusConfig(source=sys.argv[1], cache_dir=sys.argv[2], workers=1, shard_tunes=2), progress=False)
"""


def test_a_killed_parse_loses_at_most_its_shard_and_the_next_run_resumes(tmp_path, monkeypatch):
    d = tmp_path / "many"
    d.mkdir()
    for k in range(10):
        tune_file(d / f"f{k}.mid", k % 12)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(d), str(cache)])
    journal = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(cache.glob("store-*/journal.jsonl"))
        if found and found[0].read_text().count("\n") >= 2:  # two shards (four files) are done
            journal = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert journal is not None, "the parser never finished two shards"
    done = shards.read_journal(journal.parent)
    assert 4 <= len(done) < 10
    calls = counting(monkeypatch)
    corpus = load_corpus(cfg_for(d, cache, shard_tunes=2), progress=False)
    assert sorted(calls) == sorted(f"f{k}.mid" for k in range(10) if str(d / f"f{k}.mid") not in done)
    clean = load_corpus(cfg_for(d, tmp_path / "clean", shard_tunes=2), progress=False)
    assert sorted((t.name, tuple(t.symbols)) for t in corpus.tunes) == sorted(
        (t.name, tuple(t.symbols)) for t in clean.tunes)
    assert corpus.stats["kept"] == 10 and not list(journal.parent.glob(".shard-*.tmp"))


def test_several_sources_report_their_shares(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    tune_file(a / "x.mid", 0)
    tune_file(a / "y.mid", 2, bars=2)
    tune_file(b / "z.mid", 4, bars=3)
    (b / "broken.mid").write_bytes(b"not MIDI")
    corpus = load_corpus(cfg_for((str(a), str(b)), tmp_path / "cache"), progress=False)
    assert corpus.source == f"{a}+{b}"
    assert corpus.stats["sources"] == {str(a): {"files": 2, "tunes": 2, "tokens": 32 + 64},
                                       str(b): {"files": 2, "tunes": 1, "tokens": 96}}
    assert corpus.stats["parse_errors"] == ["broken.mid"] and corpus.stats["kept"] == 3
    # the same file listed twice is read once
    twice = load_corpus(cfg_for((str(a), str(a / "x.mid")), tmp_path / "cache"), progress=False)
    assert twice.stats["kept"] == 2


ERK = [f"essenFolksong/erk{f}.abc#{k}" for f in (5, 10) for k in range(1, 41)]


def test_erk_tunes_keep_their_side_in_a_larger_corpus():
    erk_train, erk_val = split_by_name(ERK, 0.1, 0)
    assert len(erk_val) == 8
    others = [f"oneills1850/{k:04d}.abc#{k}" for k in range(300)] + [f"user/{k}.mid" for k in range(50)]
    names = others[:100] + ERK + others[100:]
    train, val = split_with_erk(names, 0.1, 0)
    assert {names[i] for i in val if names[i] in ERK} == {ERK[i] for i in erk_val}
    assert {names[i] for i in train if names[i] in ERK} == {ERK[i] for i in erk_train}
    rest_train, rest_val = split_by_name(others, 0.1, 0)
    assert {names[i] for i in val} - set(ERK) == {others[i] for i in rest_val}
    assert sorted(train + val) == list(range(len(names)))


def test_a_corpus_with_part_of_erk_uses_erks_own_split():
    erk_train, erk_val = split_by_name(ERK, 0.1, 0)
    part = [ERK[i] for i in erk_val[:3]] + [ERK[i] for i in erk_train[:5]] + ["other.mid"]
    train, val = split_with_erk(part, 0.1, 0, erk_names=ERK)
    assert [part[i] for i in val] == [ERK[i] for i in erk_val[:3]]
    assert [part[i] for i in train] == [ERK[i] for i in erk_train[:5]] + ["other.mid"]
    # without Erk's list, a part of Erk would be split on its own: other tunes could validate
    assert split_with_erk(part, 0.5, 0)[1] != [0, 1, 2]


def test_the_erk_corpus_split_is_unchanged():
    # the rule before issue 16 (split_by_name over the kept tunes) on the Erk corpus itself
    assert split_with_erk(ERK, 0.1, 0) == split_by_name(ERK, 0.1, 0)
    assert split_with_erk(ERK, 0.25, 7) == split_by_name(ERK, 0.25, 7)


def test_the_ingest_benchmark_runs_on_a_small_folder(folder, capsys):
    import argparse

    from jamd.bench import ingest
    from jamd.config import Config
    from jamd.errors import DataError

    args = argparse.Namespace(folder=str(folder), quick=True, m21_files=3)
    figures = ingest.run(args, Config().replace(**{"corpus.workers": 1}))
    assert (figures["files"], figures["kept"], figures["music21_files"], figures["workers"]) == (5, 5, 5, 1)
    assert figures["speedup_vs_music21"] > 0 and "| symusic" in capsys.readouterr().out
    with pytest.raises(DataError, match="not a folder"):
        ingest.run(argparse.Namespace(folder=str(folder / "t0.mid"), quick=True, m21_files=3), Config())


def test_corpus_source_takes_one_name_or_a_list():
    from jamd.config import Config
    from jamd.training.corpus_sources import resolve

    assert Config().replace(**{"corpus.source": "erk"}).corpus.source == "erk"
    assert Config().replace(**{"corpus.source": ["essen", "ryan"]}).corpus.source == ("essen", "ryan")
    folk = resolve("folk")
    assert [label for label, _, _ in folk.groups()] == ["essen", "oneill", "ryan"]
    assert (len(folk.files), len(resolve("oneill").files), len(resolve("ryan").files)) == (1129, 39, 1059)
    # erk lies inside essen: listed with it, its files are read once
    assert len(resolve(["erk", "essen"]).units()) == len(resolve("essen").units()) == 8514


def test_a_corpus_holding_part_of_erk_splits_it_as_erk_does(tmp_path, monkeypatch):
    """Erk's own kept tunes fix the sides of the Erk tunes a corpus holds, even a few of them."""
    import re as regex

    from jamd.training.corpus_sources import music21_corpus_root
    from jamd.training.ingest import load as load_mod

    erk5 = (music21_corpus_root() / "essenFolksong" / "erk5.abc").read_text(encoding="latin-1")
    tunes = [c for c in regex.split(r"(?m)^(?=X:)", erk5) if c.startswith("X:")]
    full, part = tmp_path / "full" / "essenFolksong", tmp_path / "part" / "essenFolksong"
    full.mkdir(parents=True), part.mkdir(parents=True)
    (full / "erk5.abc").write_text("".join(tunes[:20]), encoding="utf-8")  # "Erk": 20 tunes
    (part / "erk5.abc").write_text("".join(tunes[:6]), encoding="utf-8")  # a corpus with 6 of them
    tune_file(tmp_path / "part" / "mine.mid", 0)
    real = load_mod.resolve
    monkeypatch.setattr(load_mod, "resolve", lambda s: real(str(tmp_path / "full")) if s == "erk" else real(s))
    erk = load_corpus(cfg_for(tmp_path / "full", tmp_path / "cache"), progress=False)
    corpus = load_corpus(cfg_for(tmp_path / "part", tmp_path / "cache"), progress=False)
    assert corpus.erk_names == erk.names and len(erk.names) == 20
    erk_train, erk_val = erk.split(0.25, 0)
    train, val = corpus.split(0.25, 0)
    sides = {erk.names[i]: "val" for i in erk_val} | {erk.names[i]: "train" for i in erk_train}
    assert all(sides[corpus.names[i]] == "val" for i in val if corpus.names[i] in sides)
    assert all(sides[corpus.names[i]] == "train" for i in train if corpus.names[i] in sides)
    assert {corpus.names[i] for i in val} - set(sides) == set()  # mine.mid alone: too few to validate
    # not a vacuous check: these 6 tunes split on their own would put another one in validation
    assert [corpus.names[i] for i in val] == [n for n in corpus.names if sides.get(n) == "val"]
    assert len(val) >= 1 and split_by_name(corpus.names[:6], 0.25, 0)[1] != [i for i in val if i < 6]
