"""The harmony data pipeline on real Bach chorales from music21's corpus.

One chorale's chords and bass are checked against a hand analysis; a few
beats' 117 input numbers are checked number by number; the split is by
chorale and fixed; a folder of three chorales goes through the whole
`load_chorales` path (parse, drop with a reason, cache) and `jamd corpus
--harmony`.  Each chorale parses in about 0.2 s, in this process.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_checks import run_cli
from music21.corpus import getWork

from jamd.config import Config, CorpusConfig, HarmonyTrainingConfig
from jamd.music import chords
from jamd.training.corpus_sources import Unit
from jamd.training.harmony_data import (
    NO_BASS,
    HarmonizedTune,
    HarmonyCorpus,
    beat_arrays,
    hide_melody,
    load_chorales,
)
from jamd.training.harmony_parse import harmonize_unit


def harmonize(name: str) -> HarmonizedTune:
    [(_, tune, reason, error)] = harmonize_unit((Unit(name, str(getWork(name))), 60.0))
    assert tune is not None, (reason, error)
    return tune


def C(name: str) -> int:
    """Chord id of a lead-sheet name ("C", "Em", "Bdim", "G7")."""
    return next(c for c in range(chords.N_CHORDS) if chords.chord_name(c) == name)


@pytest.fixture(scope="module")
def bwv269() -> HarmonizedTune:
    return harmonize("bach/bwv269")


def test_bwv269_chords_and_bass_as_analysed_by_hand(bwv269):
    # Checked by hand from the four voices music21 reads (part.flatten().stripTies(), offsets in
    # quarters), G major, 3/4, a one-beat pickup; the sounding notes at each beat's onset:
    #   0.0  S G4  A D4  T B3  B G2    -> G,      bass G
    #   1.0  S G4  A D4  T B3  B G3    -> G,      bass G
    #   2.0  S G4  A E4  T C4  B E3    -> C/E,    bass E   (soprano G4 held from 1.0)
    #   3.0  S D5  A D4  T A3  B F#3   -> D/F#,   bass F#
    #   4.0  S B4  A D4  T G3  B G3    -> G,      bass G
    #   5.0  S B4  A D4  T F#3 B D3    -> Bm/D,   bass D   (S and A held from 4.0)
    #   6.0  S G4  A B3  T G3  B E3    -> Em,     bass E
    #   7.0  S G4  A E4  T C4  B C3    -> C,      bass C
    # then moved +5 semitones (G major -> C major): G->C, C->F, D->G, Bm->Em, Em->Am.
    t = bwv269
    assert (t.key, t.shift, t.beats_per_bar, t.pickup_beats) == ("G major", 5, 3, 1)
    assert [chords.chord_name(int(c)) for c in t.chords[:8]] == ["C", "C", "F", "G", "C", "Em", "Am", "F"]
    assert t.bass[:8].tolist() == [0, 0, 9, 11, 0, 7, 9, 5]  # C C A B C G A F
    # soprano G4 G4(half) D5, moved to C5 C5 G5
    assert t.symbols[:16] == ["72", "_", "_", "_", "72", "_", "_", "_", "_", "_", "_", "_", "79", "_", "_", "_"]
    assert len(t.chords) == len(t.bass) == t.n_beats == len(t.symbols) // 4
    assert [t.beat_in_bar(b) for b in range(5)] == [2, 0, 1, 2, 0]


def test_beat_features_exact(bwv269):
    lookahead = np.array([b % 2 == 1 for b in range(bwv269.n_beats)])
    x, chord, bass, melody = beat_arrays(bwv269, lookahead)
    assert x.shape == (bwv269.n_beats, 117) and x.dtype == np.float32
    assert np.array_equal(chord, bwv269.chords) and np.array_equal(bass, bwv269.bass)
    assert melody[:4].tolist() == [0, 0, 0, 7]  # C5, C5, C5 held, G5: pitch classes at each beat's first step

    # beat 0: nothing before (N, no bass, zero melody), no lookahead, third beat of the bar
    want = np.zeros(117, np.float32)
    want[25 + 0] = 1  # previous chord N
    want[74 + 12] = 1  # previous bass: none
    want[113 + 2] = 1
    assert np.array_equal(x[0], want)

    # beat 3: the beat before held C5 all through (pitch class 0, share 1, sounding at its first
    # step), its chord F (id 1 + 4*5) over A; lookahead shows this beat's G5; third beat of the bar
    want = np.zeros(117, np.float32)
    want[0], want[12 + 0] = 1, 1
    want[25 + 1 + 4 * 5] = 1
    want[74 + 9] = 1
    want[87 + 7], want[87 + 12 + 7] = 1, 1
    want[112] = 1
    want[113 + 2] = 1
    assert np.array_equal(x[3], want)

    # beat 2 is online: no current melody and the flag 0; the rest as step_input builds it
    assert not x[2, 87:113].any()
    assert np.array_equal(x[2], chords.step_input(x[1, 87:112], int(chord[1]), int(bass[1]), None, 1))


def test_hide_melody_is_beat_arrays_with_the_same_mask(bwv269):
    full = beat_arrays(bwv269, True)[0]
    mask = np.random.default_rng(1).random(bwv269.n_beats) < 0.5
    assert np.array_equal(hide_melody(full, mask), beat_arrays(bwv269, mask)[0])
    assert np.array_equal(hide_melody(full, np.zeros(bwv269.n_beats, bool)), beat_arrays(bwv269, False)[0])


def test_a_tune_without_chords_is_fed_no_chord_and_no_bass(bwv269):
    folk = HarmonizedTune("folk", bwv269.symbols[:32], 4, 0)
    x, chord, bass, _ = beat_arrays(folk, False)
    assert (chord == chords.NO_CHORD).all() and (bass == NO_BASS).all()
    assert (x[:, 25] == 1).all() and (x[:, 74 + 12] == 1).all()


def test_split_is_by_chorale_fixed_and_independent_of_order():
    tunes = [HarmonizedTune(f"bach/bwv{i}", ["60", "_", "_", "_"] * 8, 4, 0) for i in range(40)]
    corpus = HarmonyCorpus(tunes, "test", {}, validation_fraction=0.1, split_seed=0)
    train, val = corpus.split()
    assert len(val) == 4 and sorted(train + val) == list(range(40))
    assert corpus.split() == (train, val)
    # the same chorales land on the same side whatever order they come in
    shuffled = HarmonyCorpus(tunes[::-1], "test", {}, validation_fraction=0.1, split_seed=0)
    assert {shuffled.tunes[i].name for i in shuffled.split()[1]} == {tunes[i].name for i in val}
    assert corpus.split(seed=1)[1] != val


@pytest.fixture(scope="module")
def three_chorales(tmp_path_factory):
    """bwv269 and bwv8.6 (soprano, alto, tenor, bass and a continuo: the named voices are kept) and
    bwv41.6 (trumpets, timpani, oboes...: no voice is named Soprano, so it is dropped)."""
    tmp = tmp_path_factory.mktemp("chorales")
    folder = tmp / "chorales"
    folder.mkdir()
    for name in ("bwv269", "bwv8.6", "bwv41.6"):
        shutil.copy(getWork(f"bach/{name}"), folder / f"{name}.mxl")
    cfg = Config(corpus=CorpusConfig(cache_dir=str(tmp / "cache"), workers=1),
                 harmony_training=HarmonyTrainingConfig(source=str(folder)))
    return cfg, folder


def test_load_chorales_keeps_drops_and_caches(three_chorales, bwv269):
    cfg, _ = three_chorales
    first = load_chorales(cfg, progress=False)
    s = first.stats
    assert (s["files"], s["tunes_seen"], s["kept"]) == (3, 3, 2)
    assert s["dropped"] == {"not four voices": 1} and s["parse_errors"] == []
    assert s["cached"] is False and s["beats"] == sum(t.n_beats for t in first.tunes)
    assert sum(s["chords"].values()) == s["beats"]
    kept = {t.name: t for t in first.tunes}
    assert set(kept) == {"bwv269.mxl", "bwv8.6.mxl"}
    assert np.array_equal(kept["bwv269.mxl"].chords, bwv269.chords)

    again = load_chorales(cfg, progress=False)
    assert again.stats["cached"] is True
    for a, b in zip(first.tunes, again.tunes, strict=True):
        assert (a.name, a.symbols, a.key, a.shift, a.pickup_beats) == (b.name, b.symbols, b.key, b.shift,
                                                                      b.pickup_beats)
        assert np.array_equal(a.chords, b.chords) and np.array_equal(a.bass, b.bass)


def test_corpus_harmony_reports_drops_and_chords(three_chorales, capsys, tmp_path):
    cfg, folder = three_chorales
    report = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "corpus", "--harmony", "--source", folder, "--no-progress", "--show", "1",
                             "--out", report, "--set", f"corpus.cache_dir={cfg.corpus.cache_dir}")
    assert code == 0, err
    assert "3 seen, 2 kept, 1 dropped, 0 unreadable" in out
    assert "dropped         1  not four voices" in out
    data = json.loads(report.read_text())
    top = max(data["chords"], key=data["chords"].get)
    assert f"  {top:<10}  {data['chords'][top]:6d}" in out
    assert "N (no chord)" in out and data["kept"] == 2
