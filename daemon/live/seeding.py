"""The model's seed: the player's phrase moved to C/Am, and the way back to their key.

Models are trained on tunes normalised to C major / A minor (docs/MODELS.md);
a phrase in any key is moved there before it primes the model, and what the
model plays is moved back by `transpose` semitones.
"""

from __future__ import annotations

import logging

from ..inference.bar_source import BarSource
from ..music import keys
from ..tokens import Note, fit_symbols_to_vocab, notes_to_symbols, parse_seed

log = logging.getLogger(__name__)


class Seeding:
    """The seed the model was last primed with (symbols in C/Am), its key and the shift back."""

    def __init__(self) -> None:
        self.seed: list[str] = []
        self.transpose = 0  # semitones from the model's C/Am back to the player's key
        self.key: keys.Key | None = None

    def prime_default(self, model: BarSource, default_seed: str) -> None:
        """Prime `model` with `live.default_seed` (already in C/Am)."""
        self.seed = parse_seed(default_seed)
        self.transpose = 0
        model.reseed(fit_symbols_to_vocab(self.seed, model.vocab))

    def prime_again(self, model: BarSource, default_seed: str) -> None:
        """Prime a newly chosen model with the seed the old one had."""
        if self.seed:
            model.reseed(fit_symbols_to_vocab(self.seed, model.vocab))
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
        0-127 folds back by octaves), fit them to the model's vocabulary and prime it."""
        key = keys.detect_key(key_notes or notes)
        shift = key.shift_to_normal()
        symbols = notes_to_symbols(keys.transpose_notes(notes, shift), n_steps)
        self.seed = fit_symbols_to_vocab(symbols, model.vocab)
        self.transpose = -shift
        self.key = key
        model.reseed(self.seed)
        log.debug("seeded from %d notes in %s (moved %+d)", len(notes), key.name, shift)
