"""The tunes `jamd eval --harmony` harmonises, beat by beat: Bach's chorales and folk tunes.

A beat is a quarter note, 4 16th steps (`jamd.music.chords.STEPS_PER_BEAT`),
as the harmony model steps.  `Beats` holds what every system and measure
reads of one `HarmonizedTune`'s melody: the 25 melody features of each beat,
the pitch of the note starting on each beat (None when the beat starts inside
a held note or a rest), the last note heard before each beat, and the pitch
class weights of each beat.

Folk tunes (`from_tune`, an `jamd.training.corpus.Tune`) get no chords:

* beats per bar are the bar's length in quarter notes: 4/4 -> 4, 3/4 -> 3,
  2/4 -> 2, 6/8 -> 3 (three quarter beats, not two dotted quarters: the model
  steps by quarter notes, so in 6/8 the ``half-bar`` rhythm is the whole bar,
  see `jamd.inference.harmony.beats_per_chord`), 6/4 and 3/2 -> 6;
* a meter whose bar is not a whole number of quarter notes (3/8, 9/8, 5/8)
  and a tune whose meter changes are left out (`SkipReason`), since the beats
  would drift off the bar lines;
* a pickup that is not a whole number of beats (an 8th note) is padded with a
  rest in front, so beats stay on the quarter-note grid of the bars, and the
  tail is padded with holds to a whole beat.

The mode (`is_minor`): a key written as minor, or a tune in C/Am whose last
note is an A (folk tunes end on their tonic; the Essen files write every key
as major, so the written mode alone would call every tune major).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from jamd.inference.harmony import may_change
from jamd.music import chords
from jamd.tokens import HOLD, REST, is_pitch

from ..harmony_data import HarmonizedTune

STEPS = chords.STEPS_PER_BEAT


class SkipReason(Exception):
    """A folk tune `from_tune` leaves out; the message is the short reason the report counts."""


def beats_per_bar_of(meter: str) -> int:
    """Quarter-note beats in a bar of `meter` ("6/8" -> 3); `SkipReason` when not a whole number."""
    try:
        num, den = (int(x) for x in meter.split("/"))
        beats = Fraction(4 * num, den)
    except (ValueError, ZeroDivisionError):
        raise SkipReason(f"meter {meter!r} unreadable") from None
    if beats.denominator != 1 or beats < 1:
        raise SkipReason(f"{meter} bars are not whole quarter notes")
    return int(beats)


def from_tune(tune) -> HarmonizedTune:
    """A corpus `Tune` as a `HarmonizedTune` with no chords (see the module doc); `SkipReason`."""
    if tune.meter_changes:
        raise SkipReason("meter changes")
    bpb = beats_per_bar_of(tune.meter)
    pad = (-tune.pickup_steps) % STEPS
    symbols = [REST] * pad + list(tune.symbols) if pad else list(tune.symbols)
    symbols += [HOLD] * ((-len(symbols)) % STEPS)
    pickup_beats = (tune.pickup_steps + pad) // STEPS
    return HarmonizedTune(name=tune.name, symbols=symbols, beats_per_bar=bpb,
                          pickup_beats=pickup_beats % bpb, key=tune.key, shift=tune.shift)


def is_minor(tune: HarmonizedTune) -> bool:
    """Whether `tune` is treated as minor (A minor once in C/Am); see the module doc."""
    if "minor" in tune.key.lower():
        return True
    last = next((int(s) for s in reversed(tune.symbols) if is_pitch(s)), None)
    return last is not None and last % 12 == 9


@dataclass
class Beats:
    """One tune's melody, per beat (n = `HarmonizedTune.n_beats`).

    `features` [n, 25] float32: `chords.melody_features` of each beat;
    `onset[b]`: MIDI pitch of the note starting at beat b's first step, or None;
    `heard[b]`: MIDI pitch of the last note that started before beat b, or None;
    `weights` [n, 12]: the share of each beat each pitch class sounds.
    """

    tune: HarmonizedTune
    features: np.ndarray
    onset: list[int | None]
    heard: list[int | None]
    minor: bool

    @property
    def n(self) -> int:
        return len(self.onset)

    @property
    def weights(self) -> np.ndarray:
        return self.features[:, :12]

    def position(self, beat: int) -> int:
        return self.tune.beat_in_bar(beat)


def beats_of(tune: HarmonizedTune) -> Beats:
    """`Beats` of `tune` (the trailing part of a beat shorter than 4 steps is dropped)."""
    n = tune.n_beats
    symbols = tune.symbols[:n * STEPS]
    sounding = chords.sounding_from_symbols(symbols)
    features = np.stack([chords.melody_features(sounding[b * STEPS:(b + 1) * STEPS]) for b in range(n)]) \
        if n else np.zeros((0, chords.MELODY_FEATURES), np.float32)
    onset: list[int | None] = []
    heard: list[int | None] = []
    last: int | None = None
    for b in range(n):
        heard.append(last)
        first = symbols[b * STEPS]
        onset.append(int(first) if is_pitch(first) else None)
        for s in symbols[b * STEPS:(b + 1) * STEPS]:
            if is_pitch(s):
                last = int(s)
    return Beats(tune, features, onset, heard, is_minor(tune))


def change_beats(beats: Beats, rhythm: str) -> np.ndarray:
    """[n] bool: the beats where the chord may change under `rhythm` (the first beat always)."""
    bpb = beats.tune.beats_per_bar
    out = np.array([may_change(beats.position(b), rhythm, bpb) for b in range(beats.n)], bool)
    if beats.n:
        out[0] = True
    return out


def span_ends(change: Sequence[bool]) -> np.ndarray:
    """[n] int: for each beat, the beat where its span ends (the next change beat, or n)."""
    n = len(change)
    out = np.empty(n, np.int64)
    end = n
    for b in range(n - 1, -1, -1):
        out[b] = end
        if change[b]:
            end = b
    return out
