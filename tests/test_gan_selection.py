"""Choosing each bar among the model's own samples (`jamd.inference.gan_selection.Selection`),
and the seed's plain GAN shipped.

The choice must only pick among bars the model sampled, be the bare model
with one candidate, and be the same in `jamd generate`, `jamd eval`
(`BarGenerator.melodies`) and the daemon (`GanBars`, `BarGenerator.next_bar`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from jamd.cli import main
from jamd.errors import ModelError
from jamd.inference.gan import DEFAULT_SELECTION, GAN_KIND, BarGenerator, GanBars, continue_melody
from jamd.inference.gan_selection import BARE, Selection, continuation_cost
from jamd.inference.model_store import load_info, resolve, shipped_model_names, shipped_models_dir
from jamd.midi.midifile import read_midi_notes
from jamd.tokens import Vocabulary, is_pitch

VOCAB = Vocabulary.from_pitches(range(55, 80))
PITCH = np.array([float(s) if is_pitch(s) else np.nan for s in VOCAB.symbols])
LOW = ["60", "_", "_", "_", "62", "_", "_", "_", "64", "_", "_", "_", "62", "_", "_", "_"]


def ids(*bars: str) -> np.ndarray:
    return np.stack([VOCAB.encode(b.split()) for b in bars])


# -- the seed's plain GAN is shipped ---------------------------------------------------

def test_the_seeds_plain_gan_is_shipped_with_its_metadata():
    assert {"gan", "cgan", "gan_seed"} <= set(shipped_model_names())
    path = resolve("gan_seed")
    assert path.parent == shipped_models_dir() and path.with_suffix(".json").is_file()
    info = load_info(path)
    assert info.kind == GAN_KIND and info.raw["variant"] == "gan"
    assert info.raw["export"]["parity_max_abs_diff"] <= 1e-4
    assert info.raw["training"]["figures"]["variant"] == "gan"


def test_generate_plays_the_seeds_plain_gan(tmp_path):
    out = tmp_path / "gan_seed.mid"
    args = ["generate", "--model", "gan_seed", "--bars", "8", "--random-seed", "1", "--out", str(out)]
    assert main(args) == 0
    notes, _ = read_midi_notes(out)
    assert len(notes) >= 8 and max(n.end for n in notes) <= 16 + 8 * 16
    again = tmp_path / "again.mid"
    assert main([*args[:-1], str(again)]) == 0 and again.read_bytes() == out.read_bytes()


# -- the cost ---------------------------------------------------------------------------

def test_cost_prefers_the_nearest_register_and_the_smallest_leap():
    prev = ids(" ".join(LOW))
    cand = ids("64 _ _ _ 62 _ _ _ 60 _ _ _ 62 _ _ _",   # same register, leap 2
               "74 _ _ _ 76 _ _ _ 77 _ _ _ 76 _ _ _",   # an octave up
               "r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _")[None]  # no notes: neutral
    cost = continuation_cost(PITCH, prev, cand, Selection(3, leap=1, register=1))
    assert cost.shape == (1, 3) and cost[0].argmin() == 0
    # the silent candidate costs the mean of the measured ones: neither best nor worst
    assert cost[0, 0] < cost[0, 2] < cost[0, 1]
    assert cost[0, 2] == pytest.approx((cost[0, 0] + cost[0, 1]) / 2)


def test_cost_of_motion_and_its_free_zone():
    cand = ids("60 _ 72 _ 60 _ 72 _ 60 _ _ _ _ _ _ _",
               "60 _ 62 _ 64 _ 65 _ 67 _ _ _ _ _ _ _")[None]
    cost = continuation_cost(PITCH, None, cand, Selection(2, motion=1))
    assert cost[0].tolist() == pytest.approx([12.0, 1.75])
    free = continuation_cost(PITCH, None, cand, Selection(2, motion=1, free=2))
    assert free[0].tolist() == pytest.approx([10.0, 0.0])


def test_a_running_register_replaces_the_bar_before():
    prev = ids(" ".join(LOW))
    cand = ids("64 _ _ _ 62 _ _ _ 60 _ _ _ 62 _ _ _", "74 _ _ _ 76 _ _ _ 77 _ _ _ 76 _ _ _")[None]
    sel = Selection(2, leap=0, register=1)
    assert continuation_cost(PITCH, prev, cand, sel)[0].argmin() == 0
    # a chain that started an octave up keeps to it
    assert continuation_cost(PITCH, prev, cand, sel, register=np.array([75.0]))[0].argmin() == 1


def test_bad_selections_fail_in_one_line():
    with pytest.raises(ModelError, match="candidates"):
        Selection(0)
    with pytest.raises(ModelError, match="memory"):
        Selection(4, memory=1.0)
    with pytest.raises(ModelError, match="unknown key 'k'"):
        Selection.from_dict({"k": 3})
    assert Selection.from_dict({"candidates": 3}, BARE) == Selection(3)


# -- the generator ----------------------------------------------------------------------

@pytest.fixture(params=["gan", "cgan"])
def model(request) -> str:
    return request.param


def test_one_candidate_is_the_bare_model(model):
    gen = BarGenerator.load(model, selection={"candidates": 1})
    prev = gen.encode_bar(LOW)[None].repeat(6, 0)
    got = gen.continue_ids(prev, 1.0, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    z = rng.standard_normal((6, gen.latent_dim)).astype(np.float32)
    mask = np.broadcast_to(gen._mask, (16, len(gen.vocab)))
    want = gen.draw(z, prev if gen.conditional else None, 1.0, rng, mask)
    assert np.array_equal(got, want)


def test_the_chosen_bar_is_the_cheapest_of_the_models_own_samples(model):
    gen = BarGenerator.load(model, selection=Selection(8, leap=1, register=1, motion=0.5))
    prev = gen.encode_bar(LOW)[None].repeat(3, 0)
    got = gen.continue_ids(prev, 1.0, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    z = rng.standard_normal((24, gen.latent_dim)).astype(np.float32)
    mask = np.broadcast_to(gen._mask, (16, len(gen.vocab)))
    cand = gen.draw(z, np.repeat(prev, 8, 0) if gen.conditional else None, 1.0, rng, mask)
    cand = cand.reshape(3, 8, 16)
    cost = continuation_cost(gen._pitch, prev, cand, gen.selection)
    assert np.array_equal(got, cand[np.arange(3), cost.argmin(1)])


def test_choosing_brings_the_unconditional_bars_near_the_bar_before():
    rng = np.random.default_rng(0)
    leaps = {}
    for k in (1, 16):
        gen = BarGenerator.load("gan", selection={"candidates": k})
        bars = gen.continue_ids(gen.encode_bar(LOW)[None].repeat(100, 0), 1.0, rng)
        first = [next(float(s) for s in gen.vocab.decode(b) if is_pitch(s)) for b in bars]
        leaps[k] = np.mean(np.abs(np.array(first) - 62))
    assert leaps[16] < leaps[1] / 2


def test_the_shipped_models_choose_by_default():
    # the autoregressive models carry their own number of candidates (docs/MODELS.md), the
    # other weights are their kind's; the seed's flat GAN plays its kind's defaults
    own = {"gan": 8, "cgan": 2, "gan_seed": None}
    for name, k in own.items():
        gen = BarGenerator.load(name)
        default = DEFAULT_SELECTION[gen.kind]
        assert gen.selection == (replace(default, candidates=k) if k else default)
        assert gen.selection.candidates > 1


def test_the_models_metadata_can_set_its_selection(tmp_path):
    for suffix in (".onnx", ".json"):
        shutil.copy(resolve("gan").with_suffix(suffix), tmp_path / f"gan{suffix}")
    meta = json.loads((tmp_path / "gan.json").read_text())
    meta["selection"] = {"candidates": 3, "motion": 0}
    (tmp_path / "gan.json").write_text(json.dumps(meta))
    gen = BarGenerator.load(str(tmp_path / "gan.onnx"))
    # the fields it names replace those of its kind's default
    assert gen.selection == replace(DEFAULT_SELECTION[GAN_KIND], candidates=3, motion=0.0)
    meta["selection"] = {"candidates": "many"}
    (tmp_path / "gan.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="bad selection in model metadata"):
        BarGenerator.load(str(tmp_path / "gan.onnx"))


def test_the_daemon_generate_and_next_bar_choose_alike(model):
    """GanBars (the daemon), continue_melody (jamd generate) and a chain of next_bar calls
    (what the JACK test replays) give the same bars for the same random stream."""
    seed = LOW * 2
    rng = np.random.default_rng(3)
    source = GanBars(BarGenerator.load(model))
    source.reseed(seed)
    daemon = [s for _ in range(4) for s in source.next_bar(16, 1.0, rng)]
    generated = continue_melody(BarGenerator.load(model), seed, 4, 16, 1.0, np.random.default_rng(3))
    assert generated == daemon
    gen = BarGenerator.load(model)
    rng = np.random.default_rng(3)
    bar, chained = LOW, []
    for _ in range(4):
        bar = gen.next_bar(bar, 1.0, rng)
        chained += bar
    assert chained == daemon


def test_melodies_keep_a_running_register(model):
    gen = BarGenerator.load(model)
    rows = gen.melodies(4, 64, 1.0, np.random.default_rng(0))
    assert [len(r) for r in rows] == [64] * 4 and all("/" not in r for r in rows)
    again = BarGenerator.load(model).melodies(4, 64, 1.0, np.random.default_rng(0))
    assert rows == again


def test_model_gan_candidates_in_config_overrides_the_models_own_choice():
    from jamd.config import Config
    from jamd.inference.gan import BarGenerator

    cfg = Config().replace(**{"model.gan_candidates": 1})
    assert BarGenerator.load("gan", cfg.model).selection.candidates == 1
    assert BarGenerator.load("gan", Config().model).selection.candidates == 8
