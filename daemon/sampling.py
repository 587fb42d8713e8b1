"""Temperature sampling, as in the seed (section 3.1.3), made numerically safe.

The seed computes ``log(p) / T`` from softmax probabilities, which warns and
yields NaN when a probability underflows to 0.  The models here output
logits, so ``softmax(logits / T)`` is computed stably with the max subtracted;
``T -> 0`` is argmax.
"""

from __future__ import annotations

import numpy as np

from .tokens import DELIMITER

# Below this temperature sampling is argmax: dividing by a tiny T only
# overflows and the distribution is one-hot anyway.
ARGMAX_BELOW = 1e-3


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / max(temperature, ARGMAX_BELOW)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator,
           mask: np.ndarray | None = None) -> int:
    """Draw one index from `logits` (1-D) at `temperature`.

    `mask` (bool, same length) excludes symbols, e.g. the song delimiter in a
    live stream; at least one symbol must stay allowed.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    if temperature < ARGMAX_BELOW:
        return int(np.argmax(logits))
    # Unnormalised softmax and an inverse-CDF draw with one uniform number:
    # no division by the sum, no renormalisation warnings, and few NumPy calls
    # (this runs once per 16th note; each call costs ~1 µs).
    z = logits * (1.0 / temperature)
    cdf = np.cumsum(np.exp(z - z.max()))
    idx = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(idx, len(cdf) - 1)


class SymbolSampler:
    """Autoregressive sampling over a vocabulary, shared by every step-wise model.

    A subclass provides `vocab`, `_delimiter` (the song delimiter's id),
    `_logits` (the next symbol's logits) and `feed(id)` (advance the state).
    """

    def next_symbol(self, temperature: float, rng: np.random.Generator, allow_end: bool = True) -> str:
        """Sample the next 16th step and feed it back into the state."""
        mask = None
        if not allow_end:
            mask = np.ones(len(self.vocab), bool)
            mask[self._delimiter] = False
        idx = sample(self._logits, temperature, rng, mask)
        self.feed(idx)
        return self.vocab.symbols[idx]

    def generate(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 stop_at_end: bool = False) -> list[str]:
        """Up to `n_steps` symbols. With `stop_at_end`, stop at the song delimiter
        as the seed does; otherwise the delimiter is never drawn, so exactly
        `n_steps` come back (what a fixed number of bars needs)."""
        out: list[str] = []
        for _ in range(n_steps):
            symbol = self.next_symbol(temperature, rng, allow_end=stop_at_end)
            if symbol == DELIMITER:
                break
            out.append(symbol)
        return out
