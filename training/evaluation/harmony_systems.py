"""The systems `jamd eval --harmony` scores: the harmony model and two baselines.

Every system is free-running: beat by beat it hears its own earlier chords,
never Bach's, and it may change the chord only where the harmonic rhythm
lets it (`harmony_tunes.change_beats`); elsewhere it holds.  `run(beats,
rhythm)` gives an `Output`: one chord id per beat (in C/Am,
`jamd.music.chords`) and, for the model, the bass pitch class.

* `ModelSystem`: the shipped model through `jamd.inference.harmony.Harmonizer`,
  online (the melody up to the beat before) or with lookahead (the beat's own
  melody and that of the whole span the chord will last, as under jamd's own
  melody, which is written a bar ahead).  Online, the span's notes are
  guessed either by the harmony model's melody head (its guess of the next
  beat's first note) or, with a `SpanForecast`, by a melody LSTM
  (`jamd.inference.forecast.MelodyForecast`) fed the tune beat by beat as the
  daemon feeds it the player's notes.
* `RuleSystem`: the diatonic triad among I, V, IV, vi (major: C, G, F, Am) or
  i, V, iv, VI (minor, harmonic minor's major V: Am, E, Dm, F) that holds the
  melody note, ties broken in that order; lookahead reads the note starting
  on the beat, online the last note heard before it; with no note, or none
  that fits, it holds the chord before (the tonic at the start).  Under that
  tie order a single note never picks vi (or VI): each of its tones is also in
  I or IV (i or iv).
* `MarkovSystem`: an order-k chain over the chords Bach's training chorales
  change to at the same harmonic rhythm (``N`` dropped), backing off to
  shorter contexts where a context was never seen; its first chord comes from
  the chorales' first chords of the same mode.  It never hears the melody.
* `ReferenceSystem`: the labelled chords (Bach's), the ceiling of some measures.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from jamd.inference.forecast import MelodyForecast, window_symbols
from jamd.inference.harmony import Harmonizer
from jamd.music import chords
from jamd.tokens import symbols_to_notes

from .harmony_tunes import STEPS, Beats, change_beats, span_ends

C, G, F, AM = (chords.chord_id(0, 0), chords.chord_id(7, 0), chords.chord_id(5, 0), chords.chord_id(9, 1))
E, DM = chords.chord_id(4, 0), chords.chord_id(2, 1)
MAJOR_RULE = (C, G, F, AM)  # I, V, IV, vi: the tie order
MINOR_RULE = (AM, E, DM, F)  # i, V, iv, VI


@dataclass
class Output:
    """A system's harmony of one tune: `chords` [n] chord ids; `bass` [n] pitch classes (-1: none) or None."""

    chords: np.ndarray
    bass: np.ndarray | None = None


class SpanForecast:
    """The online spans a `MelodyForecast` guesses for a tune: before each change beat b it has heard
    the tune up to the end of beat b-1, fed beat by beat as the daemon feeds a player's notes
    (`forecast.window_symbols` of the tune's notes, one beat a call), and gives `onsets` over the
    steps of the span b starts.

    The spans of a (tune, rhythm) are drawn once, from a stream of (`seed`, rhythm, the tune's
    symbols), and shared by every system, draw and melody_fit that asks: the systems differ only in
    how they choose from the same guesses (common random numbers), and the scan runs in seconds.
    """

    def __init__(self, forecast: MelodyForecast, seed: int, name: str):
        self.forecast = forecast
        self.seed = seed
        self.name = name  # what the report calls it, e.g. "lstm, 8 rollouts"
        self._cache: dict[tuple[int, str], tuple[Beats, dict[int, np.ndarray]]] = {}

    def spans(self, beats: Beats, rhythm: str) -> dict[int, np.ndarray]:
        """Change beat -> [12] mean onset counts per pitch class of the span it starts."""
        key = (id(beats), rhythm)
        if key not in self._cache:  # the Beats is kept with its spans, so its id is not reused
            self._cache[key] = (beats, self._compute(beats, rhythm))
        return self._cache[key][1]

    def _compute(self, beats: Beats, rhythm: str) -> dict[int, np.ndarray]:
        symbols = beats.tune.symbols
        notes = symbols_to_notes(symbols[:beats.n * STEPS])
        starts = [n.start for n in notes]
        digest = hashlib.blake2b(f"{rhythm}\0{' '.join(symbols)}".encode(), digest_size=8).digest()
        f = self.forecast
        f.rng = np.random.default_rng([self.seed, int.from_bytes(digest, "little")])
        bar = beats.tune.beats_per_bar * STEPS
        f.reset(-beats.tune.pickup_beats * STEPS % bar, bar)  # step 0 lies the pickup before a downbeat
        change = change_beats(beats, rhythm)
        ends = span_ends(change)
        out: dict[int, np.ndarray] = {}
        for b in range(beats.n):
            if change[b]:
                out[b] = f.onsets(int(ends[b] - b) * STEPS, STEPS)
            if b + 1 < beats.n:
                # one voice: only the last note started before the beat can sound into it
                first = max(bisect_right(starts, b * STEPS - 1) - 1, 0)
                near = notes[first:bisect_left(starts, (b + 1) * STEPS)]
                f.hear(window_symbols(near, b * STEPS, STEPS))
        return out


class ModelSystem:
    """The harmony model, online or with lookahead, decided by `harmonizer` (its temperature and
    melody_fit); online with `forecast`, the spans it guesses, else the harmony model's melody head."""

    def __init__(self, name: str, harmonizer: Harmonizer, lookahead: bool, forecast: SpanForecast | None = None):
        self.name = name
        self.harmonizer = harmonizer
        self.lookahead = lookahead
        self.forecast = None if lookahead else forecast

    def run(self, beats: Beats, rhythm: str) -> Output:
        h = self.harmonizer
        h.reset()
        change = change_beats(beats, rhythm)
        ends = span_ends(change)
        guessed = self.forecast.spans(beats, rhythm) if self.forecast else {}
        out = np.zeros(beats.n, np.int64)
        bass = np.full(beats.n, -1, np.int64)
        for b in range(beats.n):
            prev = beats.features[b - 1] if b else None
            melody = None
            span = guessed.get(b)
            if self.lookahead:
                melody = beats.features[b]
                span = beats.weights[b:ends[b]].sum(axis=0)
            r = h.decide(prev, beats.position(b), bool(change[b]), melody=melody, span=span)
            out[b] = r.chord
            bass[b] = -1 if r.bass is None else r.bass
        return Output(out, bass)


def rule_chord(pitch: int | None, minor: bool) -> int | None:
    """The rule's chord for melody note `pitch` (MIDI, C/Am), or None when no triad holds it."""
    if pitch is None:
        return None
    return next((c for c in (MINOR_RULE if minor else MAJOR_RULE) if pitch % 12 in chords.chord_tones(c)), None)


class RuleSystem:
    """The rule-based harmoniser (see the module doc)."""

    def __init__(self, name: str, lookahead: bool):
        self.name = name
        self.lookahead = lookahead

    def run(self, beats: Beats, rhythm: str) -> Output:
        change = change_beats(beats, rhythm)
        current = MINOR_RULE[0] if beats.minor else MAJOR_RULE[0]
        out = np.zeros(beats.n, np.int64)
        for b in range(beats.n):
            if change[b]:
                chord = rule_chord(beats.onset[b] if self.lookahead else beats.heard[b], beats.minor)
                current = current if chord is None else chord
            out[b] = current
        return Output(out)


class ChordChain:
    """Order-`order` chord transition counts with back-off, and per-mode first chords.

    `counts[context]` is a Counter of the chords that followed `context` (a
    tuple of 0..order chords; the empty tuple counts every chord).
    """

    def __init__(self, order: int = 1):
        if order < 1:
            raise ValueError(f"order must be at least 1 (received {order})")
        self.order = order
        self.counts: dict[tuple[int, ...], Counter] = {}
        self.starts: dict[bool, Counter] = {False: Counter(), True: Counter()}

    def fit(self, sequences: Iterable[tuple[Sequence[int], bool]]) -> ChordChain:
        """Count (chord sequence, minor) pairs; ``N`` chords are dropped first."""
        for seq, minor in sequences:
            seq = [int(c) for c in seq if c != chords.NO_CHORD]
            if not seq:
                continue
            self.starts[bool(minor)][seq[0]] += 1
            for i, c in enumerate(seq):
                for k in range(0, min(self.order, i) + 1):
                    self.counts.setdefault(tuple(seq[i - k:i]), Counter())[c] += 1
        return self

    def following(self, history: Sequence[int]) -> Counter:
        """The counts after the longest seen suffix of `history` (at most `order` chords)."""
        for k in range(min(self.order, len(history)), -1, -1):
            seen = self.counts.get(tuple(history[len(history) - k:]))
            if seen:
                return seen
        raise ValueError("the chain was fitted on no chords")

    def first(self, minor: bool) -> Counter:
        return self.starts[minor] or self.starts[not minor] or self.following(())


def pick(counts: Counter, temperature: float, rng: np.random.Generator) -> int:
    """The likeliest key of `counts` (ties: the lowest id) at temperature 0, else a draw from
    the counts raised to 1/temperature."""
    keys = sorted(counts)
    n = np.array([counts[k] for k in keys], np.float64)
    if temperature <= 0:
        return keys[int(np.argmax(n))]
    w = np.exp((np.log(n) - np.log(n.max())) / temperature)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def chain_sequences(tunes: Iterable[Beats], rhythm: str) -> list[tuple[np.ndarray, bool]]:
    """The (labelled chords at the change beats of `rhythm`, minor) of each tune, to fit a `ChordChain`."""
    out = []
    for b in tunes:
        labels = np.asarray(b.tune.chords[:b.n], np.int64)
        out.append((labels[change_beats(b, rhythm)[:len(labels)]], b.minor))
    return out


class MarkovSystem:
    """Chords from a `ChordChain` alone, at `temperature` (0: the likeliest); see the module doc."""

    def __init__(self, name: str, chains: dict[str, ChordChain], temperature: float = 0.0,
                 rng: np.random.Generator | None = None):
        self.name = name
        self.chains = chains  # one per harmonic rhythm, fitted at it
        self.temperature = temperature
        self.rng = rng or np.random.default_rng(0)

    def run(self, beats: Beats, rhythm: str) -> Output:
        chain = self.chains[rhythm]
        change = change_beats(beats, rhythm)
        history: list[int] = []
        out = np.zeros(beats.n, np.int64)
        for b in range(beats.n):
            if change[b]:
                counts = chain.following(history) if history else chain.first(beats.minor)
                history.append(pick(counts, self.temperature, self.rng))
            out[b] = history[-1]
        return Output(out)


class ReferenceSystem:
    """The tune's own labels (Bach's chords), whatever the rhythm."""

    name = "bach"

    def run(self, beats: Beats, rhythm: str) -> Output:
        return Output(np.asarray(beats.tune.chords[:beats.n], np.int64))
