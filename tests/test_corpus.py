"""The corpus pipeline on a handful of real Erk tunes from music21's corpus.

Only a few tunes of `essenFolksong/erk5.abc` are parsed (the whole of Erk
takes a minute), in-process, so the module runs in a few seconds.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from music21 import converter

from jamd.config import CorpusConfig
from jamd.errors import DataError
from jamd.tokens import DELIMITER, Note, Vocabulary, symbols_to_notes
from jamd.training import corpus as corpus_mod
from jamd.training import corpus_encode
from jamd.training.corpus import ACCEPTABLE_DURATIONS, SkipTune, encode_score, load_corpus
from jamd.training.corpus_sources import music21_corpus_root, resolve

ERK5 = music21_corpus_root() / "essenFolksong" / "erk5.abc"
N_TUNES = 6


def erk5_tunes() -> list[str]:
    """The ABC text of the first N_TUNES tunes of erk5.abc, one string each."""
    chunks = re.split(r"(?m)^(?=X:)", ERK5.read_text(encoding="latin-1"))
    return [c for c in chunks if c.startswith("X:")][:N_TUNES]


def altered(tune: str, old: str, new: str) -> str:
    assert old in tune
    return tune.replace(old, new, 1)


# X:5 of erk5 ("Es fuhr sich ein Pfalzgraf", L:1/8): a triplet, and a 1/32 note (0.125 quarters)
TRIPLET = ("A2AB", "(3ABc=c")
THIRTYSECOND = ("A2AB", "A2A/4A/4A/4A/4B")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A corpus folder: real tunes, a tune with a triplet, and a file music21 cannot read."""
    d = tmp_path_factory.mktemp("tunes")
    tunes = erk5_tunes()
    (d / "erk_sample.abc").write_text("\n".join(tunes[:5]), encoding="utf-8")
    (d / "triplet.abc").write_text(altered(tunes[4], *TRIPLET), encoding="utf-8")
    (d / "broken.mid").write_bytes(b"this is not a MIDI file")
    (d / "notes.txt").write_text("not a corpus file, ignored", encoding="utf-8")
    return d


def cfg_for(source: Path | str, cache_dir: Path, **kw) -> CorpusConfig:
    return CorpusConfig(source=str(source), cache_dir=str(cache_dir), workers=1, **kw)


@pytest.fixture(scope="module")
def loaded(folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_corpus(cfg_for(folder, cache), progress=False), cache


# -- encoding -----------------------------------------------------------------

@pytest.mark.parametrize("index", range(N_TUNES))
def test_round_trip_gives_back_music21_pitches_and_durations(index):
    score = converter.parseData(erk5_tunes()[index], format="abc")
    tune = encode_score(score)
    assert -6 <= tune.shift <= 5
    expected = [
        (int(n.offset * 4), n.pitch.midi + tune.shift, int(n.quarterLength * 4))
        for n in score.parts[0].stripTies().flatten().notes
    ]
    decoded = [(n.start, n.pitch, n.duration) for n in symbols_to_notes(tune.symbols)]
    assert decoded == expected
    assert len(tune.symbols) == int(score.highestTime * 4)


def test_parser_side_encoding_matches_encode_score():
    # the parser merges ties in place and skips beaming; the result must not change
    units = [u for u in resolve("essenFolksong/erk5").units()][:N_TUNES]
    for unit in units:
        [(name, tune, reason, error)] = corpus_encode.encode_unit((unit, 0))
        reference = encode_score(converter.parseData(unit.text, format="abc"))
        assert (name, tune.symbols, tune.key, tune.meter) == (
            unit.name, reference.symbols, reference.key, reference.meter)


def test_ties_are_merged_into_one_note():
    # X:2 ends "d6-d4=c2 | B4z2-z6": the tied d is one note of 10 16ths
    tune = encode_score(converter.parseData(erk5_tunes()[1], format="abc"))
    assert 10 in [n.duration for n in symbols_to_notes(tune.symbols)]


def test_key_shift_meter_and_pickup():
    tunes = [encode_score(converter.parseData(t, format="abc")) for t in erk5_tunes()[:3]]
    assert [(t.key, t.shift, t.meter, t.pickup_steps) for t in tunes] == [
        ("G major", 5, "2/4", 0),  # G up a fourth to C (the seed would go down a fifth)
        ("A major", 3, "6/8", 0),
        ("D major", -2, "4/4", 4),  # starts with a quarter-note pickup
    ]


@pytest.mark.parametrize("change", [TRIPLET, THIRTYSECOND], ids=["triplet", "0.125"])
def test_duration_filter_drops_tune(change):
    assert 0.125 not in ACCEPTABLE_DURATIONS
    score = converter.parseData(altered(erk5_tunes()[4], *change), format="abc")
    with pytest.raises(SkipTune) as info:
        encode_score(score)
    assert info.value.reason == "durations"


def test_chords_are_dropped():
    score = converter.parseData(altered(erk5_tunes()[4], "A2AB", "[Ac]2AB"), format="abc")
    with pytest.raises(SkipTune, match="chords"):
        encode_score(score)


# -- the pipeline on a folder -----------------------------------------------------

def test_folder_keeps_good_tunes_and_counts_drops(loaded):
    corpus, _ = loaded
    s = corpus.stats
    assert s["files"] == 3  # notes.txt is not a corpus file
    assert s["kept"] == len(corpus.tunes) == 5
    assert s["dropped"] == {"durations": 1}
    assert s["parse_errors"] == ["broken.mid"]
    assert s["tunes_seen"] == s["kept"] + sum(s["dropped"].values()) + len(s["parse_errors"])
    assert corpus.vocab == Vocabulary.from_pitches(p for t in corpus.tunes for p in
                                                    (int(x) for x in t.symbols if x.isdigit()))
    assert corpus.tunes[0].name == "erk_sample.abc#1"


def test_unparsable_file_is_named_in_a_warning(folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="jamd.corpus"):
        load_corpus(cfg_for(folder, tmp_path), progress=False)
    assert any("broken.mid" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def _count_parses(mp: pytest.MonkeyPatch) -> list[str]:
    """Record the file of every unit parsed from now on (the in-process parser, workers=1)."""
    calls: list[str] = []
    real = corpus_encode.encode_unit

    def counting(job):
        calls.append(Path(job[0].path).name)
        return real(job)

    mp.setattr(corpus_encode, "encode_unit", counting)
    return calls


def test_cache_is_hit_on_second_run(folder, loaded, monkeypatch):
    first, cache = loaded
    calls = _count_parses(monkeypatch)
    second = load_corpus(cfg_for(folder, cache), progress=False)
    assert calls == [] and second.stats["cached"] is True and second.stats["parsed_files"] == 0
    assert [(t.name, t.symbols, t.key, t.shift, t.meter, t.pickup_steps) for t in second.tunes] == [
        (t.name, t.symbols, t.key, t.shift, t.meter, t.pickup_steps) for t in first.tunes
    ]
    assert second.vocab == first.vocab
    # a different melody part is a different store: every file is parsed again
    with pytest.raises(DataError, match="no usable tunes"):
        load_corpus(cfg_for(folder, cache, part=1), progress=False)
    assert sorted(set(calls)) == ["broken.mid", "erk_sample.abc", "triplet.abc"]


def test_changed_file_invalidates_the_cache(folder, tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "a.abc").write_text("\n".join(erk5_tunes()[:2]), encoding="utf-8")
    cfg = cfg_for(d, tmp_path / "cache")
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_parses(mp)
        load_corpus(cfg, progress=False)
        load_corpus(cfg, progress=False)
        assert calls == ["a.abc", "a.abc"]  # its two tunes, once
        (d / "a.abc").write_text("\n".join(erk5_tunes()[:3]), encoding="utf-8")
        assert len(load_corpus(cfg, progress=False).tunes) == 3
        assert calls == ["a.abc"] * 5


def test_split_is_deterministic_and_disjoint_by_tune(loaded):
    corpus, _ = loaded
    train, val = corpus.split(0.4, seed=7)
    assert (train, val) == corpus.split(0.4, seed=7)
    assert set(train).isdisjoint(val)
    assert sorted(train + val) == list(range(len(corpus.tunes)))
    assert len(val) == 2
    names = {corpus.tunes[i].name for i in val}
    # the same tunes stay in validation when the corpus is listed in another order
    reordered = corpus_mod.EncodedCorpus.from_tunes(corpus.tunes[::-1], "x", {})
    assert {reordered.tunes[i].name for i in reordered.split(0.4, seed=7)[1]} == names
    assert corpus.split(0.0)[1] == []


def test_ids_and_stream(loaded):
    corpus, _ = loaded
    L = 8
    stream = corpus.stream([0, 2], L)
    a, b = corpus.ids(0), corpus.ids(2)
    assert stream.tolist() == a.tolist() + [0] * L + b.tolist() + [0] * L
    assert corpus.vocab.decode(a) == corpus.tunes[0].symbols
    assert corpus.vocab.id(DELIMITER) == 0
    # another model's vocabulary: ids are remapped, missing symbols raise a DataError
    wider = Vocabulary.from_pitches(range(40, 100))
    assert wider.decode(corpus.ids(0, wider)) == corpus.tunes[0].symbols
    narrow = Vocabulary.from_pitches([60])
    with pytest.raises(DataError, match=corpus.tunes[0].name):
        corpus.ids(0, narrow)
    with pytest.raises(KeyError):
        corpus.ids(0, narrow)
    assert stream.dtype == np.int64


# -- sources and errors --------------------------------------------------------------

def test_erk_is_the_default_source():
    src = resolve(CorpusConfig().source)
    assert sorted(f.name for f in src.files) == ["erk10.abc", "erk20.abc", "erk30.abc", "erk5.abc"]
    assert len(resolve("essenFolksong/han").files) == 2


def test_unknown_source_and_empty_folder_raise_one_line(tmp_path):
    with pytest.raises(DataError, match="no-such-collection") as info:
        resolve("no-such-collection")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):
        resolve(str(tmp_path))
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    with pytest.raises(DataError, match="no usable tunes"):
        load_corpus(cfg_for(tmp_path, tmp_path / "cache"), progress=False)


def test_corpus_command_prints_the_report(folder, loaded, capsys):
    from jamd.commands import corpus as command
    from jamd.config import Config

    _, cache = loaded
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--source", str(folder), "--no-progress", "--show", "1"])
    cfg = Config().replace(**{"corpus.cache_dir": str(cache), "corpus.workers": 1})
    assert command.run(args, cfg) == 0
    out = capsys.readouterr().out
    assert "5 kept" in out and "durations" in out and "broken.mid" in out
    assert "vocabulary" in out and "erk_sample.abc#1" in out


# -- MIDI sources, limits and the cache folder (issue 13) ---------------------------

def _write_midi(path: Path, notes, key: str | None = None, drums: bool = False, channel: int = 1):
    import mido

    from jamd.midi.midifile import write_midi

    write_midi(notes, path, channel=channel)
    mid = mido.MidiFile(str(path))
    if key is not None:
        mid.tracks[0].insert(1, mido.MetaMessage("key_signature", key=key))
    if drums:
        mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=42, velocity=100, channel=9, time=i and 120)
                                          for i in range(8)]))
    mid.save(str(path))
    return path


D_TUNE = [Note(0, 62, 2), Note(2, 64, 2), Note(4, 66, 2), Note(6, 67, 2), Note(8, 69, 4), Note(12, 66, 2),
          Note(14, 62, 2), Note(16, 71, 2), Note(18, 69, 2), Note(20, 67, 2), Note(22, 66, 2), Note(24, 64, 4),
          Note(28, 62, 4)]


@pytest.fixture()
def midi_folder(tmp_path):
    d = tmp_path / "midi"
    d.mkdir()
    _write_midi(d / "written_c.mid", D_TUNE, key="C")  # a DAW's default key, not the tune's
    _write_midi(d / "written_d.mid", D_TUNE, key="D")
    _write_midi(d / "drums.mid", D_TUNE, drums=True)
    _write_midi(d / "plain.mid", D_TUNE)
    (d / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x08"
                                   b"\x00\xff\x59\x02\x50\x00\x00\xff\x2f\x00")  # key with 80 sharps
    return d


def test_midi_sources_use_the_analysed_key_and_say_so(midi_folder, tmp_path):
    corpus = load_corpus(cfg_for(midi_folder, tmp_path / "cache"), progress=False)
    by_name = {t.name: t for t in corpus.tunes}
    assert by_name["written_c.mid"].key == by_name["written_d.mid"].key == "D major"
    assert by_name["written_c.mid"].shift == -2
    assert corpus.stats["midi_keys"] == {"analysed (none written)": 2, "analysed (written key disagrees)": 1,
                                         "written, analysis agrees": 1}
    assert by_name["drums.mid"].symbols == by_name["written_d.mid"].symbols  # channel 10 left out
    assert corpus.stats["parse_errors"] == ["broken.mid"]


def test_a_file_over_the_size_or_time_limit_is_skipped_and_named(midi_folder, tmp_path, monkeypatch):
    import time

    big = midi_folder / "big.mid"
    _write_midi(big, D_TUNE * 1)
    big.write_bytes(big.read_bytes() + b"\0" * 5000)
    monkeypatch.setattr(corpus_encode, "MAX_UNIT_BYTES", 4000)
    monkeypatch.setattr(corpus_encode, "MAX_UNIT_SECONDS", 0.5)
    real = corpus_encode.read_fast

    def slow(path, *args, **kwargs):
        if Path(path).name == "plain.mid":
            time.sleep(5)  # a file that would hang the parser
        return real(path, *args, **kwargs)

    monkeypatch.setattr(corpus_encode, "read_fast", slow)
    t0 = time.perf_counter()
    corpus = load_corpus(cfg_for(midi_folder, tmp_path / "cache"), progress=False)
    assert time.perf_counter() - t0 < 4
    stats = corpus.stats
    assert stats["dropped"]["over the size limit"] == 1 and stats["dropped"]["over the time limit"] == 1
    assert any(s.startswith("big.mid: over the size limit (") for s in stats["skipped"])
    assert "plain.mid: over the time limit (not parsed in 0.5 s)" in stats["skipped"]
    assert len(corpus.tunes) == 3


def test_a_tune_too_long_for_the_grid_is_dropped_quickly(tmp_path):
    import mido

    d = tmp_path / "gap"
    d.mkdir()
    mid = mido.MidiFile(type=0, ticks_per_beat=1)
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=62, velocity=90),
                                      mido.Message("note_off", note=62, time=1),
                                      mido.Message("note_on", note=66, velocity=90, time=2**28 - 1),
                                      mido.Message("note_off", note=66, time=1)]))
    mid.save(str(d / "gap.mid"))
    _write_midi(d / "ok.mid", D_TUNE)
    corpus = load_corpus(cfg_for(d, tmp_path / "cache"), progress=False)
    assert corpus.stats["dropped"] == {"too long": 1} and corpus.stats["skipped"] == ["gap.mid: too long"]


def test_cache_folder_is_per_user(tmp_path, monkeypatch):
    cfg = CorpusConfig(cache_dir="")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_mod.cache_dir(cfg) == tmp_path / "xdg" / "jamd" / "corpus"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus_mod.cache_dir(cfg) == tmp_path / "home" / ".cache" / "jamd" / "corpus"
    assert corpus_mod.cache_dir(CorpusConfig(cache_dir=str(tmp_path / "mine"))) == tmp_path / "mine"
    assert CorpusConfig().cache_dir == ""  # the default is the per-user folder, not the working folder


def test_the_report_says_how_many_more_it_does_not_name(folder, tmp_path, capsys):
    """Twelve unreadable files: ten named, then "... and 2 more", and --out's JSON has all twelve
    (a fresh user's report said "12 unreadable" and named ten)."""
    import json
    import shutil

    from jamd.commands import corpus as command
    from jamd.config import Config

    d = tmp_path / "many"
    shutil.copytree(folder, d)
    for i in range(11):
        (d / f"broken{i:02d}.mid").write_bytes(b"this is not a MIDI file either")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out_json = tmp_path / "report.json"
    args = parser.parse_args(["--source", str(d), "--no-progress", "--no-cache", "--out", str(out_json)])
    cfg = Config().replace(**{"corpus.cache_dir": str(tmp_path / "cache"), "corpus.workers": 1})
    assert command.run(args, cfg) == 0
    out = capsys.readouterr().out
    assert "12 unreadable" in out
    assert sum(line.lstrip().startswith("unreadable") for line in out.splitlines()) == 11
    assert f"... and 2 more (all in {out_json})" in out
    assert len(json.loads(out_json.read_text())["parse_errors"]) == 12
