"""Temperature sampling edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jamd.sampling import sample, softmax


def test_zero_temperature_is_argmax():
    rng = np.random.default_rng(0)
    logits = np.array([0.1, 3.0, 2.9, -1.0])
    assert {sample(logits, 0.0, rng) for _ in range(50)} == {1}


def test_extreme_logits_give_no_warnings_and_no_nan():
    rng = np.random.default_rng(0)
    logits = np.array([-1e30, 0.0, -np.inf, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (1e-6, 0.01, 0.5, 1.0, 5.0):
            i = sample(logits, t, rng)
            assert i in (1, 3)
        p = softmax(logits, 0.01)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0)


def test_frequencies_follow_the_temperature():
    rng = np.random.default_rng(1)
    logits = np.log(np.array([0.7, 0.2, 0.1]))
    counts = np.bincount([sample(logits, 1.0, rng) for _ in range(20000)], minlength=3) / 20000
    assert counts == pytest.approx([0.7, 0.2, 0.1], abs=0.015)
    hot = np.bincount([sample(logits, 3.0, rng) for _ in range(20000)], minlength=3) / 20000
    assert hot[2] > counts[2] * 2  # a high temperature flattens the distribution


def test_same_seed_same_draws():
    logits = np.random.default_rng(5).normal(size=38)
    a = [sample(logits, 0.9, np.random.default_rng(7)) for _ in range(1)]
    b = [sample(logits, 0.9, np.random.default_rng(7)) for _ in range(1)]
    assert a == b


def test_mask_excludes_symbols():
    rng = np.random.default_rng(0)
    mask = np.array([False, True, True])
    logits = np.array([10.0, 0.0, 0.0])
    assert all(sample(logits, 1.0, rng, mask) != 0 for _ in range(200))
    assert sample(logits, 0.0, rng, mask) in (1, 2)
