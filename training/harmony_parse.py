"""One four-part chorale -> one `HarmonizedTune`: the soprano as melody, a chord and a bass per beat.

These functions run inside the parser processes, so music21 is imported at
module level here (once per process) and only plain data goes back;
`jamd.training.harmony_data` loads a cached corpus without music21.

**Melody.** The soprano is encoded by the melody corpus's own
`corpus_encode.encode_score` (the seed's duration filter, ties merged, the
smallest shift to C major / A minor, meter and pickup); every reason it
drops a tune is kept as the drop reason here.  The same shift moves the
chords and bass.  A pickup that is not a whole number of beats (an 8th) is
padded with rest steps in front, so that beat 0 starts on a beat.

**Chord of a beat.** The sonority is every pitch sounding in the four voices
at the beat's onset (held notes included, ties merged), so passing notes
between beats are ignored and an onset's suspension counts as written.  Its
root is music21's `chord.Chord.root()` (the stacked-thirds analysis, which
reads inversions correctly: D F# B is B minor), and the quality is
`jamd.music.chords.quality_of(root, pitch classes)`, not music21's
`quality`, because the vocabulary folds sevenths and open fifths its own way
(a root with no third, fifth or seventh above it in the sonority, such as
a bare octave or unison, is ``N``).  A beat where every voice rests is ``N``
with no bass (-1).  **Bass** is the pitch class of the lowest sounding
pitch at the onset, whichever voice holds it.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction

import numpy as np
from music21 import chord, meter, note, pitch, stream
from tqdm import tqdm

from jamd.music import chords
from jamd.tokens import REST, STEPS_PER_QUARTER

from .corpus import SkipTune
from .corpus_encode import OverTime, encode_score, parse_unit, short_reason, time_limit  # the melody corpus's reader
from .corpus_sources import Unit
from .harmony_data import NO_BASS, HarmonizedTune

MIN_BEATS = 8  # shorter chorales (fragments) teach nothing about harmonic motion
VOICES = ("soprano", "alto", "tenor", "bass")
MAX_SECONDS = 60.0

# (name, tune, drop reason, error): a kept tune, or a reason, or a parse error message
Result = tuple[str, "HarmonizedTune | None", "str | None", "str | None"]


def voices(score: stream.Score) -> list[stream.Part]:
    """The four voices, soprano first: a score's parts when it has four, else the parts named
    Soprano, Alto, Tenor and Bass (chorales from cantatas add instruments); SkipTune otherwise."""
    parts = list(score.parts) if isinstance(score, stream.Score) else []
    if len(parts) == 4:
        return parts
    named = {}
    for p in parts:
        name = (p.partName or p.id or "").strip().lower()
        if name in VOICES:
            if name in named:
                raise SkipTune("not four voices")
            named[name] = p
    if len(named) != 4:
        raise SkipTune("not four voices")
    return [named[v] for v in VOICES]


class _Sounding:
    """What one voice sounds at any offset (quarter lengths from the score's start)."""

    def __init__(self, part: stream.Part):
        self.starts: list[Fraction] = []
        self.spans: list[tuple[Fraction, list[pitch.Pitch]]] = []  # (end, pitches) per note or chord
        for e in part.stripTies().flatten().notes:
            if isinstance(e, note.Note):
                pitches = [e.pitch]
            elif isinstance(e, chord.Chord):  # a divided voice: both notes sound
                pitches = list(e.pitches)
            else:
                continue
            start = Fraction(e.offset)
            self.starts.append(start)
            self.spans.append((start + Fraction(e.quarterLength), pitches))

    def at(self, offset: Fraction) -> list[pitch.Pitch]:
        i = bisect_right(self.starts, offset) - 1
        while i >= 0:
            end, pitches = self.spans[i]
            if end > offset:
                return pitches
            if self.starts[i] < offset:  # notes are in order: an earlier one ended before too
                return []
            i -= 1
        return []


def label(pitches: list[pitch.Pitch], shift: int) -> tuple[int, int]:
    """(chord id, bass pitch class) of a sonority of `pitches` (as spelled in the score), moved by
    `shift` semitones; (N, NO_BASS) for silence."""
    if not pitches:
        return chords.NO_CHORD, NO_BASS
    return _label(tuple(sorted({p.nameWithOctave for p in pitches}, key=lambda n: pitch.Pitch(n).ps)), shift)


@functools.lru_cache(maxsize=4096)
def _label(names: tuple[str, ...], shift: int) -> tuple[int, int]:
    # Spelled pitches, not MIDI numbers: music21 respells bare numbers first, a brute-force
    # search that costs 40 ms a chord; the score's own spelling is also what Bach meant.
    sonority = chord.Chord(list(names))
    bass = (round(sonority.bass().ps) + shift) % 12
    pcs = sorted({(round(p.ps) + shift) % 12 for p in sonority.pitches})
    root = (sonority.root().pitchClass + shift) % 12
    quality = chords.quality_of(root, pcs)
    return (chords.NO_CHORD if quality is None else chords.chord_id(root, quality)), bass


def harmonize_score(score: stream.Score, name: str) -> HarmonizedTune:
    """Label one chorale; SkipTune(reason) for one the corpus drops."""
    parts = voices(score)
    melody = encode_score(parts[0], part=0, in_place=True)  # the parser owns the score
    if melody.meter_changes:
        raise SkipTune("meter changes")
    bar = Fraction(meter.TimeSignature(melody.meter).barDuration.quarterLength)
    if bar.denominator != 1:
        raise SkipTune("bar not whole beats")
    pad = -melody.pickup_steps % STEPS_PER_QUARTER
    symbols = [REST] * pad + melody.symbols
    symbols += [REST] * (-len(symbols) % STEPS_PER_QUARTER)
    n_beats = len(symbols) // STEPS_PER_QUARTER
    if n_beats < MIN_BEATS:
        raise SkipTune("too short")
    sounding = [_Sounding(p) for p in parts]
    labels = []
    for b in range(n_beats):
        offset = Fraction(b * STEPS_PER_QUARTER - pad, STEPS_PER_QUARTER)
        labels.append(label([p for v in sounding for p in v.at(offset)], melody.shift))
    return HarmonizedTune(
        name=name, symbols=symbols, beats_per_bar=int(bar),
        pickup_beats=(melody.pickup_steps + pad) // STEPS_PER_QUARTER,
        chords=np.array([c for c, _ in labels], np.int64), bass=np.array([b for _, b in labels], np.int64),
        key=melody.key, shift=melody.shift)


def harmonize_unit(job: tuple[Unit, float]) -> list[Result]:
    """Parse one file (or ABC tune) and label each score in it within the time limit; never raises."""
    unit, seconds = job
    try:
        with time_limit(seconds):
            try:
                scores = parse_unit(unit)
            except Exception as exc:  # music21 raises many kinds of errors on bad files
                return [(unit.name, None, None, short_reason(exc))]
            results: list[Result] = []
            for name, score in scores:
                try:
                    results.append((name, harmonize_score(score, name), None, None))
                except SkipTune as skip:
                    results.append((name, None, skip.reason, None))
                except Exception as exc:  # a score music21 read but cannot analyse
                    results.append((name, None, None, short_reason(exc)))
            return results
    except OverTime:
        return [(unit.name, None, "over the time limit", f"not parsed in {seconds:g} s")]


def harmonize_all(units: list[Unit], workers: int, progress: bool, label: str,
                  seconds: float = MAX_SECONDS) -> list[Result]:
    """Label every unit, in `workers` processes (1: in this one), with a tqdm bar; results keep the units' order."""
    jobs = [(u, seconds) for u in units]
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=f"parsing {label}", unit="chorale", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                results += harmonize_unit(job)
                bar.update()
        else:
            with ProcessPoolExecutor(workers) as pool:
                for res in pool.map(harmonize_unit, jobs, chunksize=4):
                    results += res
                    bar.update()
    return results
