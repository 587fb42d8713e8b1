"""The Markov-chain baseline and the held-out NLL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jamd.tokens import Vocabulary
from jamd.training.evaluation.markov import MarkovChain
from jamd.training.evaluation.models import StepSource
from jamd.training.evaluation.nll import held_out_nll, tune_nll

# Every context of 3 or more symbols in this tune has one continuation: deterministic for order >= 3.
TUNE = "60 _ 62 _ 64 _ _ 65 67 _ r 69 _ _ _ 67 65 _ 64 62 _ 60 _ _".split()
VOCAB = Vocabulary.from_pitches([60, 62, 64, 65, 67, 69])


@pytest.mark.parametrize("order", [3, 5])
def test_chain_on_a_deterministic_corpus_reproduces_it(order):
    contexts: dict[tuple[str, ...], str] = {}
    padded = ["/"] * order + TUNE + ["/"]
    for t in range(order, len(padded)):
        assert contexts.setdefault(tuple(padded[t - order:t]), padded[t]) == padded[t]
    chain = MarkovChain(VOCAB, order).fit([TUNE] * 20)
    rng = np.random.default_rng(0)
    chain.reset()
    assert chain.generate(200, 0.0, rng, stop_at_end=True) == TUNE
    # and sampling draws the whole tune far more often than not
    assert math.exp(-tune_nll(chain, TUNE)[1]) > 0.7


def test_probabilities_are_a_distribution_with_nothing_impossible():
    chain = MarkovChain(VOCAB, 3).fit([TUNE])
    for context in ([0, 0, 0], [VOCAB.id("69")] * 3, [VOCAB.id("60"), VOCAB.id("_"), VOCAB.id("62")]):
        p = chain.probabilities(context)
        assert p.sum() == pytest.approx(1) and (p > 0).all()


def test_nll_is_finite_on_an_unseen_tune_and_small_on_the_seen_one():
    chain = MarkovChain(VOCAB, 3).fit([TUNE] * 20)
    unseen = "69 _ 69 _ 65 r 60 _".split()
    seen, new = held_out_nll(chain, [TUNE]), held_out_nll(chain, [unseen])
    assert math.isfinite(new.per_token) and new.per_token > seen.per_token
    assert seen.per_token < 0.1
    assert seen.tokens == len(TUNE) and seen.notes == 11
    assert seen.per_note == pytest.approx(seen.per_token * seen.tokens / seen.notes)
    # masking the delimiter only moves mass onto the other symbols
    assert seen.per_token <= seen.raw_per_token * (seen.tokens + 1) / seen.tokens


def test_untrained_chain_scores_log_vocabulary_size():
    chain = MarkovChain(VOCAB, 2)  # no counts: add-one over the vocabulary is uniform
    masked, raw = tune_nll(chain, ["60", "_"])
    assert raw == pytest.approx(3 * math.log(len(VOCAB)))  # two symbols and the closing delimiter
    assert masked == pytest.approx(2 * math.log(len(VOCAB) - 1))  # the delimiter is never drawn


def test_step_source_generates_fixed_length_melodies_without_the_delimiter():
    chain = MarkovChain(VOCAB, 3).fit([TUNE] * 5)
    mel = StepSource("markov", chain).generate([64, 16, 40], 1.0, np.random.default_rng(1))
    assert [m.n_steps for m in mel] == [64, 16, 40]
    assert all(n.end <= 64 for m in mel for n in m.notes)


def test_tunes_outside_the_vocabulary_are_skipped():
    chain = MarkovChain(VOCAB, 2).fit([TUNE, ["99", "_"]])
    assert chain.skipped_tunes == 1
    assert held_out_nll(chain, [["99"]]).skipped_tunes == 1
