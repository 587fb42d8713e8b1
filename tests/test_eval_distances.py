"""Intra/inter-set distances, overlap area and KL divergence on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from jamd.training.evaluation import distances
from jamd.training.evaluation.compare import evaluate
from jamd.training.evaluation.melodies import from_symbols


def test_one_repeated_melody_has_intra_set_distances_of_zero():
    values = np.tile(np.arange(12.0), (5, 1))
    intra = distances.intra_set(values)
    assert intra.shape == (5, 4) and not intra.any()


def test_intra_set_leaves_one_out():
    values = np.array([[0.0], [3.0], [4.0]])
    np.testing.assert_allclose(distances.intra_set(values), [[3, 4], [3, 1], [4, 1]])
    np.testing.assert_allclose(distances.inter_set(values[:1], values), [[0, 3, 4]])


def test_two_identical_sets_overlap_about_one():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 4))
    intra = distances.intra_set(a)
    assert distances.overlap_area(intra, intra) == pytest.approx(1, abs=1e-3)
    # Yang & Lerch's pair: the inter-set distances also hold each melody against itself
    assert distances.overlap_area(distances.intra_set(a), distances.inter_set(a, a)) > 0.97
    assert distances.kl_divergence(distances.intra_set(a), distances.inter_set(a, a)) < 0.05


def test_disjoint_distributions_overlap_little_and_diverge():
    a, b = np.zeros(50), np.full(50, 10.0)
    a = a + np.linspace(0, 1, 50)
    b = b + np.linspace(0, 1, 50)
    assert distances.overlap_area(a, b) < 0.01
    kl = distances.kl_divergence(a, b)
    assert np.isfinite(kl) and kl > 5


def test_all_zero_distances_do_not_break_the_kde():
    zeros = np.zeros(20)
    assert distances.overlap_area(zeros, zeros) == pytest.approx(1, abs=1e-3)
    assert np.isfinite(distances.kl_divergence(zeros, np.linspace(0, 3, 20)))


def test_identical_melody_sets_meet_the_overlap_bar():
    tunes = ["60 _ 62 _ 64 _ _ _", "67 _ _ _ 65 64 62 _", "60 62 64 65 67 _ _ _", "72 _ 71 _ 69 _ 67 _",
             "64 _ 64 _ 65 _ 67 _", "62 _ _ 64 60 _ _ _"]
    mel = [from_symbols(f"t{i}", t.split()) for i, t in enumerate(tunes)]
    ev = evaluate(mel, "hand-made", {"copy": (list(mel), "the same tunes")})
    copy = ev.sets["copy"]
    assert min(f["intra_overlap_area"] for f in copy.features.values()) == pytest.approx(1, abs=1e-3)
    assert copy.bars["pitch_std_within_25pct"]["ok"] and copy.manhattan["intra_generated"] == \
        copy.manhattan["intra_reference"]
