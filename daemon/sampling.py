"""Temperature sampling, as in the seed (section 3.1.3), made numerically safe.

The seed computes ``log(p) / T`` from softmax probabilities, which warns and
yields NaN when a probability underflows to 0.  The models here output
logits, so ``softmax(logits / T)`` is computed stably with the max subtracted;
``T -> 0`` is argmax.
"""

from __future__ import annotations

import numpy as np

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
