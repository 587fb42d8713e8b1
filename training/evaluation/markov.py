"""The baseline: an order-n Markov chain over the seed's symbols.

It is trained on the same training tunes as the models, in the same form:
each tune is preceded by song delimiters (n of them: all the context an
order-n chain can see) and ended by one, so "start of a tune" and "end of a
tune" are learned exactly as the LSTM learns them from its 64 delimiters.

Counts alone give zero probability to any continuation not seen in training,
and one such symbol in a validation tune makes the NLL infinite.  The chain
therefore interpolates every order down to an add-one unigram with
Witten-Bell weights: the weight of the shorter context grows with the number
of different symbols seen after the longer one.  Every symbol of the
vocabulary gets a probability above zero, and a context always followed by
the same symbol keeps almost all the mass on it.

It offers the step interface of `jamd.inference.lstm.LstmGenerator` (`reset`,
`next_logits`, `feed`, `step_probabilities`, `next_symbol`, `generate`), so it
is generated from and scored by the same code as the models.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from jamd.inference.sampling import SymbolSampler
from jamd.tokens import DELIMITER, Vocabulary


class MarkovChain(SymbolSampler):
    def __init__(self, vocab: Vocabulary, order: int = 3):
        if order < 1:
            raise ValueError(f"`order` must be at least 1 (received {order})")
        self.vocab = vocab
        self.order = order
        self._delimiter = vocab.id(DELIMITER)
        # counts[k][context of length k] -> counts of the next symbol id
        self._counts: list[dict[tuple[int, ...], np.ndarray]] = [
            defaultdict(self._zeros) for _ in range(order + 1)
        ]
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self.skipped_tunes = 0
        self.reset()

    def _zeros(self) -> np.ndarray:
        return np.zeros(len(self.vocab), np.float64)

    # -- training -------------------------------------------------------------
    def fit(self, tunes: Iterable[Sequence[str]]) -> MarkovChain:
        """Count every order's continuations; tunes with symbols outside the vocabulary are skipped."""
        for symbols in tunes:
            if any(s not in self.vocab for s in symbols):
                self.skipped_tunes += 1
                continue
            ids = [self._delimiter] * self.order + list(self.vocab.encode(symbols)) + [self._delimiter]
            for t in range(self.order, len(ids)):
                nxt = ids[t]
                for k in range(self.order + 1):
                    self._counts[k][tuple(ids[t - k:t])][nxt] += 1
        self._cache.clear()
        self.reset()
        return self

    # -- probabilities --------------------------------------------------------
    def probabilities(self, context: Sequence[int]) -> np.ndarray:
        """P(next | the last `order` ids of context), interpolated Witten-Bell."""
        context = tuple(context[-self.order:]) if self.order else ()
        cached = self._cache.get(context)
        if cached is not None:
            return cached
        unigram = self._counts[0].get((), self._zeros())
        p = (unigram + 1.0) / (unigram.sum() + len(self.vocab))  # add-one: nothing is impossible
        for k in range(1, len(context) + 1):
            counts = self._counts[k].get(context[-k:])
            if counts is None:
                continue  # an unseen context says nothing: keep the shorter one's estimate
            total = counts.sum()
            types = np.count_nonzero(counts)
            p = (counts + types * p) / (total + types)
        self._cache[context] = p
        return p

    # -- the step interface ---------------------------------------------------
    def reset(self) -> None:
        self._context: list[int] = [self._delimiter] * self.order
        self._logits = np.log(self.probabilities(self._context))

    @property
    def next_logits(self) -> np.ndarray:
        """Log-probabilities of the next symbol (logits up to a constant)."""
        return self._logits

    def feed(self, symbol_id: int) -> np.ndarray:
        self._context = (self._context + [int(symbol_id)])[-self.order:]
        self._logits = np.log(self.probabilities(self._context))
        return self._logits

    def prime(self, symbols: Sequence[str]) -> None:
        for s in symbols:
            self.feed(self.vocab.id(s))

    def step_probabilities(self, symbol: str) -> np.ndarray:
        self.feed(self.vocab.id(symbol))
        return self.probabilities(self._context)
