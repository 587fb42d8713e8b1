"""The seed's melody encoding: one symbol per 16th note.

A melody is a list of symbols, one per 16th-note step:

* a MIDI pitch number as a string (``"60"``) starts a note,
* ``"_"`` holds whatever sounded (or rested) on the previous step,
* ``"r"`` starts a rest,
* ``"/"`` is the song delimiter between tunes (the seed pads 64 of them).

This module converts between that encoding, integer ids for the models and
`Note` lists (start and duration in steps) for MIDI, with no heavy imports, so
the daemon, the training code and the evaluation all share one definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ModelError, UsageError

DELIMITER = "/"
REST = "r"
HOLD = "_"
SPECIAL_SYMBOLS = (DELIMITER, REST, HOLD)
STEPS_PER_QUARTER = 4
STEPS_PER_BAR_4_4 = 16


@dataclass(frozen=True, order=True)
class Note:
    """A sounding note on the 16th grid: start and duration are in steps."""

    start: int
    pitch: int
    duration: int

    @property
    def end(self) -> int:
        return self.start + self.duration


def is_pitch(symbol: str) -> bool:
    return symbol.isdigit() and 0 <= int(symbol) <= 127


class Vocabulary:
    """A fixed, ordered symbol table: delimiter, rest, hold, then pitches.

    The seed builds its vocabulary from ``set()``, so the id order changes
    from run to run; here it is sorted and travels with the model.
    """

    def __init__(self, symbols: Sequence[str]):
        self.symbols: tuple[str, ...] = tuple(symbols)
        self._index = {s: i for i, s in enumerate(self.symbols)}
        if len(self._index) != len(self.symbols):
            raise ValueError("vocabulary has duplicate symbols")

    @classmethod
    def from_pitches(cls, pitches: Iterable[int]) -> Vocabulary:
        return cls(list(SPECIAL_SYMBOLS) + [str(p) for p in sorted(set(pitches))])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.symbols == self.symbols

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} symbols, pitches {self.pitch_range})"

    def id(self, symbol: str) -> int:
        return self._index[symbol]

    def encode(self, symbols: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._index[s] for s in symbols), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    @property
    def pitches(self) -> list[int]:
        return [int(s) for s in self.symbols if is_pitch(s)]

    @property
    def pitch_range(self) -> tuple[int, int]:
        p = self.pitches
        return (min(p), max(p)) if p else (0, 0)

    def pitch_ids(self) -> np.ndarray:
        """Ids of pitch symbols, in vocabulary order."""
        return np.array([i for i, s in enumerate(self.symbols) if is_pitch(s)], dtype=np.int64)


def allowed_description(vocab: Vocabulary | None) -> str:
    if vocab is None:
        return "a MIDI pitch 0-127, 'r' (rest) or '_' (hold)"
    lo, hi = vocab.pitch_range
    return f"a MIDI pitch {lo}-{hi}, 'r' (rest) or '_' (hold)"


def parse_seed(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """Parse a seed such as ``"67 _ 67 _ 65"``; one clear error per bad token."""
    symbols = text.split()
    if not symbols:
        raise UsageError(f"seed is empty: give symbols, each {allowed_description(vocab)}")
    for position, symbol in enumerate(symbols, start=1):
        ok = symbol in (REST, HOLD) or is_pitch(symbol)
        if ok and vocab is not None and symbol not in vocab:
            ok = False
        if not ok:
            raise UsageError(
                f"seed token {symbol!r} (position {position}) is not allowed: "
                f"use {allowed_description(vocab)}"
            )
    return symbols


def symbols_to_notes(symbols: Sequence[str], offset: int = 0) -> list[Note]:
    """Decode symbols to notes. A delimiter ends the melody."""
    notes: list[Note] = []
    pitch: int | None = None
    start = 0
    step = 0
    for step, symbol in enumerate(symbols):
        if symbol == HOLD:
            continue
        if pitch is not None:
            notes.append(Note(offset + start, pitch, step - start))
            pitch = None
        if symbol == DELIMITER:
            return notes
        if symbol != REST:
            pitch, start = int(symbol), step
    else:
        step = len(symbols)
    if pitch is not None:
        notes.append(Note(offset + start, pitch, step - start))
    return notes


def notes_to_symbols(notes: Iterable[Note], n_steps: int | None = None, offset: int = 0) -> list[str]:
    """Encode monophonic notes on the 16th grid; a later note cuts an earlier one."""
    notes = sorted(notes)
    if n_steps is None:
        n_steps = max((n.end - offset for n in notes), default=0)
    grid: list[str | None] = [None] * n_steps  # None: no note covers this step
    for note in notes:
        first = note.start - offset
        if 0 <= first < n_steps and note.duration > 0:
            last = min(first + note.duration, n_steps)
            # cut the earlier note that is still held here
            s = first + 1
            while s < n_steps and grid[s] == HOLD:
                grid[s] = None
                s += 1
            grid[first] = str(note.pitch)
            grid[first + 1 : last] = [HOLD] * (last - first - 1)
    out: list[str] = []
    for s, symbol in enumerate(grid):
        if symbol is None:
            # a rest starts after a note (or at the start) and is then held
            symbol = REST if s == 0 or grid[s - 1] is not None else HOLD
        out.append(symbol)
    return out


def fold_to_midi(pitch: int) -> int:
    """Move a pitch by octaves into MIDI's 0-127 (a transposed 127 or 0 can leave it)."""
    while pitch > 127:
        pitch -= 12
    while pitch < 0:
        pitch += 12
    return pitch


def transpose_symbols(symbols: Iterable[str], semitones: int) -> list[str]:
    """Pitches moved by `semitones`, folded by octaves into 0-127; other symbols kept."""
    return [str(fold_to_midi(int(s) + semitones)) if is_pitch(s) else s for s in symbols]


def fit_pitch_to_vocab(pitch: int, vocab: Vocabulary) -> int:
    """The vocabulary's pitch for `pitch` (any integer, e.g. a live seed moved to C/Am).

    The same pitch class in the nearest octave the model knows, so a seed keeps its
    notes; only a pitch class the model never saw becomes the nearest pitch it has.
    Raises `ModelError` for a vocabulary without pitches.
    """
    if not vocab.pitches:
        raise ModelError(f"the model's vocabulary has no pitches ({len(vocab)} symbols)")
    if str(pitch) in vocab:
        return pitch
    same_class = [p for p in vocab.pitches if (p - pitch) % 12 == 0]
    return min(same_class or vocab.pitches, key=lambda p: (abs(p - pitch), p))


def fit_symbols_to_vocab(symbols: Iterable[str], vocab: Vocabulary) -> list[str]:
    """Every pitch symbol moved into the vocabulary (`fit_pitch_to_vocab`), even one past
    0-127 such as ``"130"`` (a phrase at the top of the keyboard moved up to C/Am); other
    symbols are kept.  Whatever model kind plays it, the result encodes without a miss."""
    return [str(fit_pitch_to_vocab(int(s), vocab)) if s.lstrip("-").isdigit() else s for s in symbols]


# -- metric position (issue 16) ------------------------------------------------
# The LSTM may read, beside each token, where in the bar the step it predicts falls.
# Position 0 is the downbeat; a step k 16ths after it is k.  Bars longer than
# METRIC_POSITIONS steps (beyond 12/4) wrap, which no tune in the corpora has.
METRIC_POSITIONS = 48


def steps_per_bar(meter: str, default: int = STEPS_PER_BAR_4_4) -> int:
    """16th steps in one bar of `meter` ("6/8" -> 12, "4/4" -> 16, "3/2" -> 24).

    Unreadable or non-16th-aligned meters ("7/32", "", "x") give `default`.
    """
    num, _, den = str(meter).partition("/")
    try:
        n, d = int(num), int(den)
    except ValueError:
        return default
    if n < 1 or d < 1 or (n * 16) % d:
        return default
    return max(1, (n * 16) // d)


def bar_positions(n_steps: int, bar_steps: int, pickup_steps: int = 0, start: int = 0) -> np.ndarray:
    """Metric position (0..METRIC_POSITIONS-1) of steps start .. start+n_steps-1 of a tune.

    The tune's step 0 lies `pickup_steps` 16ths before its first downbeat (an
    anacrusis), so step s sits (s - pickup_steps) mod bar_steps after a
    downbeat.  Shape (n_steps,), int32.  A model trained with metric position
    reads, at input step t (token t), the position of step t+1: the one it predicts.
    """
    bar = max(1, int(bar_steps))
    steps = np.arange(start, start + n_steps, dtype=np.int64)
    return (((steps - pickup_steps) % bar) % METRIC_POSITIONS).astype(np.int32)
