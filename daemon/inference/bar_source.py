"""What the engine asks a model for: the next bar of symbols.

The engine never touches a model directly; it holds a `BarSource`, so the
per-bar GAN models plug into the same loop.  `LstmBars` drives the
step-by-step LSTM (`jamd.inference.lstm.LstmGenerator`); `jamd.inference.gan.GanBars` the GANs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from ..tokens import DELIMITER, REST, Vocabulary, fit_symbols_to_vocab

log = logging.getLogger(__name__)


class BarSource(Protocol):
    vocab: Vocabulary
    name: str

    def reseed(self, symbols: Sequence[str]) -> None:
        """Forget the past and continue from `symbols` (already in C/Am, in the vocabulary)."""

    def next_bar(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        """The next `n_steps` 16th symbols, never the song delimiter; with
        `first_note`, the first one is a pitch (an answer starts on its bar line)."""


class LstmBars:
    """A `BarSource` over an `LstmGenerator`-like object (reset/prime/next_symbol)."""

    def __init__(self, generator, name: str = "lstm"):
        self.gen = generator
        self.vocab: Vocabulary = generator.vocab
        self.name = name
        self._seed: list[str] = []

    def reseed(self, symbols: Sequence[str]) -> None:
        # folded here too, so no caller's pitch outside the vocabulary can stop the model
        self._seed = fit_symbols_to_vocab(symbols, self.vocab)
        self.gen.reset()
        self.gen.prime(self._seed)

    def next_bar(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        out: list[str] = []
        for i in range(n_steps):
            if i == 0 and first_note and hasattr(self.gen, "next_logits"):
                s = self._draw_pitch(temperature, rng)
            else:
                s = self.gen.next_symbol(temperature, rng)
            if s == DELIMITER:
                # The model thinks the song is over. A live stream cannot end
                # mid-bar, so the step becomes a rest; and since after "/" the
                # model expects the 64-delimiter padding between training
                # songs, its state is rebuilt from the last seed, which keeps
                # the music tied to what the player played.
                log.debug("model ended its song; re-priming from the last seed")
                self.gen.reset()
                self.gen.prime(self._seed)
                s = REST
            out.append(s)
        return out

    def _draw_pitch(self, temperature: float, rng: np.random.Generator) -> str:
        # Sample among pitches only, then feed the choice back as next_symbol would.
        from .sampling import sample

        mask = np.zeros(len(self.vocab), bool)
        mask[self.vocab.pitch_ids()] = True
        idx = sample(self.gen.next_logits, temperature, rng, mask)
        self.gen.feed(idx)
        return self.vocab.symbols[idx]


def open_bar_source(name: str, model_cfg: ModelConfig) -> BarSource:
    """Load model `name` (a shipped name or a path) as a bar source."""
    from . import model_store

    path = model_store.resolve(name)
    info = model_store.load_info(path)
    if info.kind == "lstm-step":
        from .lstm import LstmGenerator

        return LstmBars(LstmGenerator.load(str(path), model_cfg), name)
    if info.kind in ("gan-bar", "cgan-bar"):
        # per-bar models: one generator call per bar, the conditional one
        # continuing from the player's last bar or its own
        from .gan import BarGenerator, GanBars

        return GanBars(BarGenerator.load(str(path), model_cfg), name)
    raise ModelError(f"{path}: model kind {info.kind!r} cannot run live "
                     "(jamd run plays lstm-step, gan-bar and cgan-bar models)")
