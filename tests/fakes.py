"""Small stand-ins for the model, shared by the daemon's unit tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jamd.inference.bar_source import LstmBars
from jamd.tokens import Vocabulary

PATTERN = ("60", "_", "62", "_", "64", "_", "_", "_", "65", "_", "r", "_", "67", "_", "_", "_")


class FakeGenerator:
    """The `LstmGenerator` interface, playing a fixed pattern.

    It records what it was primed with, so tests can check the phrase reached
    the model moved to C/Am.
    """

    def __init__(self, pattern: Sequence[str] = PATTERN, pitches: range = range(55, 84)):
        self.vocab = Vocabulary.from_pitches(pitches)
        self.pattern = list(pattern)
        self.primed: list[list[str]] = []
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0

    def prime(self, symbols: Sequence[str]) -> None:
        for s in symbols:
            assert s in self.vocab, s
        self.primed.append(list(symbols))

    def next_symbol(self, temperature: float, rng: np.random.Generator) -> str:
        s = self.pattern[self.pos % len(self.pattern)]
        self.pos += 1
        return s

    def generate(self, n_steps: int, temperature: float, rng: np.random.Generator) -> list[str]:
        return [self.next_symbol(temperature, rng) for _ in range(n_steps)]


def fake_model(pattern: Sequence[str] = PATTERN):
    """An `open_model(name)` that returns fake bar sources (and keeps them)."""
    made: list[LstmBars] = []

    def open_model(name: str) -> LstmBars:
        bars = LstmBars(FakeGenerator(pattern), name)
        made.append(bars)
        return bars

    open_model.made = made  # type: ignore[attr-defined]
    return open_model
