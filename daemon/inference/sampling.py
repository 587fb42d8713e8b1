"""Temperature sampling, as in the seed (section 3.1.3), made numerically safe.

The seed computes ``log(p) / T`` from softmax probabilities, which warns and
yields NaN when a probability underflows to 0.  The models here output
logits, so ``softmax(logits / T)`` is computed stably with the max subtracted;
``T -> 0`` is argmax.
"""

from __future__ import annotations

from bisect import bisect_right
from math import exp

import numpy as np

from ..tokens import DELIMITER

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
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    return _draw(np.asarray(logits).tolist(), temperature, rng)


def _draw(values: list[float], temperature: float, rng: np.random.Generator) -> int:
    """`sample` over a list of floats (excluded symbols at -inf).

    An inverse-CDF draw with one uniform number over the unnormalised softmax
    (no division by the sum, no renormalisation), in plain Python floats: for
    a vocabulary of ~40 symbols a loop over a list costs less than the 6-7
    NumPy calls it replaces (each ~1-2 µs on a small array), and ``math.exp``
    cannot warn, since every argument is <= 0 (``exp(-inf)`` is 0.0).  Draws
    are the same as NumPy's ``searchsorted(cumsum(exp(...)), u * total)``.
    """
    top = max(values)
    if temperature < ARGMAX_BELOW:
        return values.index(top)
    k = 1.0 / temperature
    total = 0.0
    cdf = []
    append = cdf.append
    for x in values:
        total += exp((x - top) * k)
        append(total)
    return min(bisect_right(cdf, rng.random() * total), len(cdf) - 1)


class SymbolSampler:
    """Autoregressive sampling over a vocabulary, shared by every step-wise model.

    A subclass provides `vocab`, `_delimiter` (the song delimiter's id),
    `_logits` (the next symbol's logits) and `feed(id)` (advance the state).
    One with a `BarRepeat` in `repeat` (and `position`, `snapshot`, `restore`)
    may replay an earlier bar at a bar line (`jamd.inference.repeat`).
    """

    repeat = None  # a jamd.inference.repeat.BarRepeat, or None: every step sampled

    def next_symbol(self, temperature: float, rng: np.random.Generator, allow_end: bool = True) -> str:
        """Sample the next 16th step and feed it back into the state.

        The same draw as ``sample(logits, temperature, rng, mask)`` with the
        delimiter masked out unless `allow_end`.
        """
        values = self._logits.tolist()
        if not allow_end:
            values[self._delimiter] = -np.inf
        idx = _draw(values, temperature, rng)
        self.play(idx)
        return self.vocab.symbols[idx]

    def play(self, idx: int) -> None:
        """Feed symbol `idx` as played (sampled, or a seed's): with bar repetition, remembered too."""
        self.feed(idx)
        if self.repeat is not None:
            self.repeat.heard(idx, self.position)

    def repeated_bar(self, rng: np.random.Generator) -> list[str] | None:
        """At a bar line, an earlier bar replayed (already fed), or None: see `jamd.inference.repeat`."""
        if self.repeat is None:
            return None
        ids = self.repeat.maybe(self, rng)
        return None if ids is None else [self.vocab.symbols[i] for i in ids]

    def generate(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 stop_at_end: bool = False) -> list[str]:
        """Up to `n_steps` symbols. With `stop_at_end`, stop at the song delimiter
        as the seed does; otherwise the delimiter is never drawn, so exactly
        `n_steps` come back (what a fixed number of bars needs).  A repeated bar
        (`repeat`) is cut at `n_steps`."""
        out: list[str] = []
        while len(out) < n_steps:
            bar = self.repeated_bar(rng)
            if bar is not None:
                out.extend(bar[: n_steps - len(out)])
                continue
            symbol = self.next_symbol(temperature, rng, allow_end=stop_at_end)
            if symbol == DELIMITER:
                break
            out.append(symbol)
        return out
