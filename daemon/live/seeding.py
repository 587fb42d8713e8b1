"""The model's seed: the player's phrase moved to C/Am, and the way back to their key.

Models are trained on tunes normalised to C major / A minor (docs/MODELS.md);
a phrase in any key is moved there before it primes the model, and what the
model plays is moved back by `transpose` semitones.  A model trained in all 12
keys (metadata ``transpose: all-keys``, issue 16) is primed with the phrase as
it was played, in its own key, and plays in it (`LstmBars`); `transpose` is
still the way from C/Am to the player's key, for the chords chosen in C/Am.

A seed starts on a bar line: a phrase from the bar line before its first note
(`Phrase.bar_aligned_notes`), so a model reading the metric position hears each
step where it sat in the clock's bar (`clock.steps_per_bar`).
"""

from __future__ import annotations

import logging

from ..inference.bar_source import BarSource
from ..music import keys
from ..sync.clock import Clock
from ..tokens import Note, fit_symbols_to_vocab, notes_to_symbols, parse_seed

log = logging.getLogger(__name__)


class Seeding:
    """The seed the model was last primed with (symbols in C/Am), its key and the shift back.

    `clock` (optional) gives the meter a seed's bar lines count in.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.seed: list[str] = []  # in C/Am
        self.played: list[str] = []  # the same seed in the player's key (what an all-keys model hears)
        self.transpose = 0  # semitones from the model's C/Am back to the player's key
        self.key: keys.Key | None = None

    def prime_default(self, model: BarSource, default_seed: str) -> None:
        """Prime `model` with `live.default_seed` (already in C/Am)."""
        self.seed = parse_seed(default_seed)
        self.played = list(self.seed)
        self.transpose = 0
        self._reseed(model)

    def prime_again(self, model: BarSource, default_seed: str) -> None:
        """Prime a newly chosen model with the seed the old one had."""
        if self.seed:
            self._reseed(model)
        else:
            self.prime_default(model, default_seed)

    def follow_key(self, notes: list[Note]) -> keys.Key:
        """Detect the key of `notes` and take the shift to C/Am from it, priming no model
        (the chords of accompany follow the player's key without a melody part)."""
        key = keys.detect_key(notes)
        self.key, self.transpose = key, -key.shift_to_normal()
        return key

    def prime_from(self, model: BarSource, notes: list[Note], n_steps: int,
                   key_notes: list[Note] | None = None) -> None:
        """Detect the key of `notes` (or of `key_notes`), move them to C/Am (a pitch pushed past
        0-127 folds back by octaves), fit them to the model's vocabulary and prime it.

        An all-keys model is primed with `notes` unmoved, fitted to its vocabulary."""
        key = keys.detect_key(key_notes or notes)
        shift = key.shift_to_normal()
        self.seed = fit_symbols_to_vocab(notes_to_symbols(keys.transpose_notes(notes, shift), n_steps), model.vocab)
        self.played = notes_to_symbols(notes, n_steps)
        self.transpose = -shift
        self.key = key
        self._reseed(model)
        log.debug("seeded from %d notes in %s (%s)", len(notes), key.name,
                  "in its own key" if _all_keys(model) else f"moved {shift:+d}")

    def _reseed(self, model: BarSource) -> None:
        seed = fit_symbols_to_vocab(self.seed, model.vocab)
        if not hasattr(model, "align"):  # a GAN: bars in C/Am, no bar grid
            model.reseed(seed)
            return
        bar_steps = self.clock.steps_per_bar if self.clock is not None else None
        if _all_keys(model):
            model.reseed(fit_symbols_to_vocab(self.played, model.vocab), key_offset=self.transpose,
                         bar_steps=bar_steps)
        else:
            model.reseed(seed, bar_steps=bar_steps)


def _all_keys(model: BarSource) -> bool:
    return bool(getattr(model, "all_keys", False))
