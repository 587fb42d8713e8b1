"""Temperature sampling edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jamd.inference.sampling import SymbolSampler, sample, softmax


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


def _numpy_reference(logits, temperature, rng, mask=None):
    """The inverse-CDF draw written with NumPy arrays (the implementation before the list loop)."""
    logits = np.asarray(logits, dtype=np.float64)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    if temperature < 1e-3:
        return int(np.argmax(logits))
    z = logits * (1.0 / temperature)
    cdf = np.cumsum(np.exp(z - z.max()))
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def test_draws_match_the_numpy_inverse_cdf():
    g = np.random.default_rng(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for trial in range(300):
            n = int(g.integers(2, 60))
            logits = (g.normal(size=n) * g.uniform(0.1, 10)).astype(np.float32 if trial % 2 else np.float64)
            if trial % 3 == 0:  # a Markov chain's log(0)
                logits[g.random(n) < 0.3] = -np.inf
                logits[0] = 0.0
            mask = None
            if trial % 4 == 0:
                mask = g.random(n) < 0.7
                mask[int(np.argmax(logits))] = True
            t = float(g.choice([0.0, 1e-4, 1e-3, 0.05, 0.9, 1.0, 5.0]))
            seed = int(g.integers(2**32))
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            assert [sample(logits, t, a, mask) for _ in range(10)] == \
                [_numpy_reference(logits, t, b, mask) for _ in range(10)]


class _Fixed(SymbolSampler):
    """A sampler whose next logits never change."""

    def __init__(self, logits):
        from jamd.tokens import DELIMITER, Vocabulary

        self.vocab = Vocabulary([DELIMITER, "r", "_", "60", "62"])
        self._delimiter = 0
        self._logits = np.asarray(logits, np.float32)
        self.fed: list[int] = []

    def feed(self, symbol_id):
        self.fed.append(symbol_id)
        return self._logits


def test_next_symbol_is_sample_with_the_delimiter_masked():
    logits = np.array([2.0, 0.5, -1.0, 1.0, 0.0])
    no_end = np.array([False, True, True, True, True])
    for t in (0.0, 0.5, 1.0, 3.0):
        for allow_end, mask in ((True, None), (False, no_end)):
            s = _Fixed(logits)
            a, b = np.random.default_rng(4), np.random.default_rng(4)
            got = [s.vocab.id(s.next_symbol(t, a, allow_end)) for _ in range(200)]
            assert got == [sample(logits, t, b, mask) for _ in range(200)] == s.fed
            if not allow_end:
                assert 0 not in got
