"""Chords and bass under a melody that is known ahead (the lookahead path), bar by bar.

jamd writes its own melody a bar before it sounds, so the harmony of each
beat can hear the whole harmonic-rhythm span it starts.  `BarHarmonizer`
keeps the state that runs across bars (the `Harmonizer`'s model state and
last chord, the `Voicer`'s last voicing, one `PartWriter` per part, the
melody note held over the bar line), and for each bar, beat by beat:

1. the beat's melody features (`chords.melody_features` over
   `chords.sounding_from_symbols`) and, where the harmonic rhythm lets the
   chord change (`may_change`), the 12 pitch-class durations of the melody
   over the span until the next possible change (within the bar);
2. `Harmonizer.decide` (lookahead: this beat's melody and the span given);
3. where the chord changed, a new voicing below the span's lowest melody
   pitch (sounding key) and the bass under it (`Voicer.voice`);
4. which part strikes (`patterns.part_actions`) and the notes written
   (`PartWriter.beat`), returned as one `BeatWrite` per beat and part.

`harmonize` runs it over a whole melody (``jamd generate --harmony``); the
live engine calls `BarHarmonizer.bar` once per generated bar.  Everything is
in 16th steps; the melody symbols are in C major / A minor and `transpose`
moves chords and bass to the sounding key, as it moves the melody.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import HarmonyConfig
from ..music import chords
from ..music.patterns import BeatWrite, PartWriter, part_actions
from ..music.voicing import Voicer
from ..tokens import REST, Note
from .harmony import Harmonizer, Harmony, beats_per_chord, may_change

PARTS = ("chords", "bass")


class BarHarmonizer:
    """Chords and bass for a melody given bar by bar, with lookahead (see the module doc).

    `harmonizer`: a `Harmonizer` (its temperature, melody_fit and rng are used as they
    are); `voicer`: the chords part's `Voicer`; `cfg`: the ``harmony`` config (its
    ``rhythm`` and ``pattern`` are read); `beats_per_bar`, `steps_per_beat`: the meter
    (16th steps per beat: 4 for x/4, 2 for x/8).
    """

    def __init__(self, harmonizer: Harmonizer, voicer: Voicer, cfg: HarmonyConfig, beats_per_bar: int,
                 steps_per_beat: int = 4):
        if beats_per_bar < 1 or steps_per_beat < 1:
            raise ValueError(f"meter of {beats_per_bar} beats of {steps_per_beat} steps")
        self.harmonizer = harmonizer
        self.voicer = voicer
        self.cfg = cfg
        self.beats_per_bar = beats_per_bar
        self.steps_per_beat = steps_per_beat
        self.reset()

    @property
    def steps_per_bar(self) -> int:
        return self.beats_per_bar * self.steps_per_beat

    def reset(self) -> None:
        """A new piece: fresh model state, voicing and writers (call `stop` first if notes sound)."""
        self.harmonizer.reset()
        self.voicer.reset()
        self.writers = {part: PartWriter(part) for part in PARTS}
        self.chart: list[list[Harmony]] = []  # each bar's harmony per beat, in C/Am
        self._prev_melody: np.ndarray | None = None
        self._carry: int | None = None
        self._pitches: list[int] = []
        self._bass: int | None = None

    def bar(self, symbols: Sequence[str], start_step: int, transpose: int,
            first_beat: int = 0) -> dict[str, list[BeatWrite]]:
        """Harmonize one bar of melody; ``{"chords": [...], "bass": [...]}``, one `BeatWrite` per beat.

        `symbols`: the bar's melody, one per 16th step, in C/Am, starting on beat
        `first_beat` of the bar (0: the bar line; more for a pickup) at step
        `start_step`.  It may stop short of the bar's end (the last beat is then
        shorter); `ValueError` when it runs past the bar's end or is empty.
        """
        spb = self.steps_per_beat
        if not symbols or first_beat * spb + len(symbols) > self.steps_per_bar:
            raise ValueError(f"{len(symbols)} steps from beat {first_beat} do not fit a bar of "
                             f"{self.steps_per_bar} steps")
        sounding = chords.sounding_from_symbols(symbols, carry=self._carry)
        self._carry = sounding[-1]
        out: dict[str, list[BeatWrite]] = {part: [] for part in PARTS}
        harmonies: list[Harmony] = []
        n_beats = -(-len(symbols) // spb)
        for i in range(n_beats):
            beat = first_beat + i
            here = sounding[i * spb:(i + 1) * spb]
            melody = chords.melody_features(here)
            change = may_change(beat, self.cfg.rhythm, self.beats_per_bar)
            span = None
            if change or self.harmonizer.current.chord == chords.NO_CHORD:
                span_sounding = sounding[i * spb:self._span_end(beat, first_beat) * spb]
                span = pitch_class_weights(span_sounding)
            h = self.harmonizer.decide(self._prev_melody, beat, change=change, melody=melody, span=span)
            self._prev_melody = melody
            harmonies.append(h)
            if h.changed:
                heard = [p for p in span_sounding if p is not None] if span is not None else []
                below = min(heard) + transpose if heard else None
                self._pitches, self._bass = self.voicer.voice(h.chord, transpose, below, bass_pc=h.bass)
            act = part_actions(self.cfg.pattern, h.changed, beat, self.beats_per_bar)
            start, length = start_step + i * spb, len(here)
            out["chords"].append(self.writers["chords"].beat(self._pitches, act["chords"], start, length))
            bass = [] if self._bass is None else [self._bass]
            out["bass"].append(self.writers["bass"].beat(bass, act["bass"], start, length))
        self.chart.append(harmonies)
        return out

    def run(self, symbols: Sequence[str], transpose: int, start_beat_in_bar: int = 0,
            start_step: int = 0) -> dict[str, list[Note]]:
        """Harmonize a whole melody from a fresh start: ``{"chords": notes, "bass": notes}``, sounding pitches.

        `symbols` start on beat `start_beat_in_bar` at step `start_step`; a last
        partial beat is filled with rest.  The parts end with the melody's last beat.
        """
        self.reset()
        spb = self.steps_per_beat
        symbols = list(symbols) + [REST] * (-len(symbols) % spb)
        pos, beat = 0, start_beat_in_bar % self.beats_per_bar
        while pos < len(symbols):
            take = (self.beats_per_bar - beat) * spb
            self.bar(symbols[pos:pos + take], start_step + pos, transpose, first_beat=beat)
            pos, beat = pos + take, 0
        self.stop()
        return {part: w.notes for part, w in self.writers.items()}

    def stop(self, at: int | None = None) -> dict[str, list[Note]]:
        """End every sounding chord and bass note (at step `at`, else where they end now); returns them."""
        return {part: w.stop(at) for part, w in self.writers.items()}

    def lead_sheet(self, transpose: int = 0) -> str:
        """The chart so far as lead-sheet names in the sounding key, e.g. ``bar 1: G D7 | bar 2: G``."""
        return lead_sheet(self.chart, transpose)

    def _span_end(self, beat: int, first_beat: int) -> int:
        """The beat (counted from `first_beat`) where the span starting on `beat` ends: the next
        possible change, or the bar line."""
        every = beats_per_chord(self.cfg.rhythm, self.beats_per_bar)
        end = min((beat // every + 1) * every, self.beats_per_bar)
        return end - first_beat


def pitch_class_weights(sounding: Sequence[int | None]) -> np.ndarray:
    """12 numbers: the 16th steps each pitch class sounds in `sounding` (rests count nowhere)."""
    w = np.zeros(12, np.float32)
    for p in sounding:
        if p is not None:
            w[p % 12] += 1.0
    return w


def lead_sheet(chart: Sequence[Sequence[Harmony]], transpose: int = 0) -> str:
    """Chords per bar, ``bar 1: G D7 | bar 2: G``: each bar's first chord, then each change to another."""
    bars = []
    for number, beats in enumerate(chart, start=1):
        names: list[str] = []
        last = None
        for h in beats:
            if h.chord != last:
                names.append(chords.chord_name(h.chord, transpose))
                last = h.chord
        bars.append(f"bar {number}: {' '.join(names)}")
    return " | ".join(bars)


def harmonize(harmonizer: Harmonizer, symbols: list[str], transpose: int, voicer: Voicer, cfg: HarmonyConfig,
              beats_per_bar: int, steps_per_beat: int = 4, start_beat_in_bar: int = 0) -> dict[str, list[Note]]:
    """Chords and bass under a whole melody (lookahead): ``{"chords": notes, "bass": notes}``.

    `symbols`: the melody in C/Am, one per 16th step from step 0 on beat
    `start_beat_in_bar`; `transpose`: semitones to the sounding key.  Notes are
    in sounding pitches and 16th steps.  See `BarHarmonizer`.
    """
    return BarHarmonizer(harmonizer, voicer, cfg, beats_per_bar, steps_per_beat).run(
        symbols, transpose, start_beat_in_bar)
