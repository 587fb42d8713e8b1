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
from ..tokens import DELIMITER, REST, STEPS_PER_BAR_4_4, Vocabulary, fit_symbols_to_vocab, is_pitch

log = logging.getLogger(__name__)


class BarSource(Protocol):
    vocab: Vocabulary
    name: str

    def reseed(self, symbols: Sequence[str]) -> None:
        """Forget the past and continue from `symbols` (already in C/Am, in the vocabulary;
        `LstmBars` takes an all-keys model's seed in the player's key, see there)."""

    def next_bar(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        """The next `n_steps` 16th symbols, never the song delimiter; with
        `first_note`, the first one is a pitch (an answer starts on its bar line)."""


class LstmBars:
    """A `BarSource` over an `LstmGenerator`-like object (reset/prime/next_symbol).

    The bar grid (issue 16's metric position): `align` says where the next step falls in the
    clock's bar, and a seed starts on a bar line of that meter; a generator with `align`
    (`LstmGenerator`) then reads each step's bar position, others ignore it.

    Keys: bars travel to the engine in C/Am, as every model's do, and the engine moves them to
    the player's key (`Seeding.transpose`), under which the chords are chosen in C/Am too.  A
    model trained in all 12 keys (`all_keys`) is seeded with the player's phrase in its own key
    (`reseed`'s `key_offset`: the semitones from C/Am to that key) and plays in it; its bars
    are only relabelled by that offset on the way out, so the engine's shift gives back
    exactly the pitches the model chose.
    """

    def __init__(self, generator, name: str = "lstm"):
        self.gen = generator
        self.vocab: Vocabulary = generator.vocab
        self.name = name
        self.all_keys = getattr(generator, "transpose", "c") == "all-keys"
        self.key_offset = 0  # all-keys: semitones from C/Am to the key the model plays in
        self.bar_steps = STEPS_PER_BAR_4_4
        self._aligns = hasattr(generator, "align")
        self._seed: list[str] = []

    def align(self, position: int, bar_steps: int) -> None:
        """The next step generated falls at `position` (16ths after a downbeat) of a bar of
        `bar_steps` 16ths, as the clock has it; a seed given after this starts on a bar line."""
        self.bar_steps = max(1, int(bar_steps))
        if self._aligns:
            self.gen.align(position, self.bar_steps)

    def reseed(self, symbols: Sequence[str], key_offset: int = 0, bar_steps: int | None = None) -> None:
        """Forget the past and continue from `symbols`, which start on a bar line of `bar_steps`
        16ths (None: the meter `align` last gave).

        `key_offset`: for an `all_keys` model, the seed is in the player's key, this many semitones
        from C/Am (0 otherwise: the seed is in C/Am)."""
        if bar_steps:
            self.bar_steps = int(bar_steps)
        # folded here too, so no caller's pitch outside the vocabulary can stop the model
        self._seed = fit_symbols_to_vocab(symbols, self.vocab)
        self.key_offset = key_offset if self.all_keys else 0
        self._restart()

    def _restart(self) -> None:
        if self._aligns:
            self.gen.reset(0, self.bar_steps)
        else:
            self.gen.reset()
        self.gen.prime(self._seed)

    def next_bar(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        out: list[str] = []
        repeat = getattr(self.gen, "repeat", None)
        i = 0
        while i < n_steps:
            # an earlier bar replayed at a bar line (models with bar repetition) where it fits
            # whole, except where an answer must open on a pitch
            bar = None if repeat is None or (i == 0 and first_note) or n_steps - i < repeat.bar_steps \
                else self.gen.repeated_bar(rng)
            if bar is not None:
                out.extend(bar)
                i += len(bar)
                continue
            if i == 0 and first_note and hasattr(self.gen, "next_logits"):
                s = self._draw_pitch(temperature, rng)
            else:
                s = self.gen.next_symbol(temperature, rng)
            if s == DELIMITER:
                # The model thinks the song is over. A live stream cannot end
                # mid-bar, so the step becomes a rest; and since after "/" the
                # model expects the 64-delimiter padding between training
                # songs, its state is rebuilt from the last seed, which keeps
                # the music tied to what the player played (and, with the
                # metric position, the step after this one where it falls).
                log.debug("model ended its song; re-priming from the last seed")
                here = getattr(self.gen, "position", 0)
                self._restart()
                if self._aligns:
                    self.gen.align(here, self.bar_steps)
                s = REST
            out.append(s)
            i += 1
        if self.key_offset:
            out = [str(int(s) - self.key_offset) if is_pitch(s) else s for s in out]
        return out

    def _draw_pitch(self, temperature: float, rng: np.random.Generator) -> str:
        # Sample among pitches only, then feed the choice back as next_symbol would.
        from .sampling import sample

        mask = np.zeros(len(self.vocab), bool)
        mask[self.vocab.pitch_ids()] = True
        idx = sample(self.gen.next_logits, temperature, rng, mask)
        getattr(self.gen, "play", self.gen.feed)(idx)  # a SymbolSampler remembers it for bar repetition
        return self.vocab.symbols[idx]


_bar_repeat_told = False


def tell_bar_repeat_unused(cfg: ModelConfig, name: str) -> None:
    """model.bar_repeat is set while per-bar model `name` loads (it has no bar repetition): one info
    line per process, so the setting is not a silent no-op (`jamd run`, `jamd generate`)."""
    global _bar_repeat_told
    if getattr(cfg, "bar_repeat", None) is not None and not _bar_repeat_told:
        _bar_repeat_told = True
        log.info("model.bar_repeat %g applies to LSTM models only; %s chooses its bars by its selection",
                 cfg.bar_repeat, name)


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
