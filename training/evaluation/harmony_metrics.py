"""The measures of a harmonisation, counted per tune and pooled over a set.

For one tune's chords (one id per beat, `jamd.music.chords`), and its
reference labels where there are any (Bach's):

* **agreement**: the share of beats whose chord id equals the label, over the
  beats whose label is not ``N``;
* **chord-tone share**: the share of melody notes starting on a beat (a
  pitch at the beat's first 16th step; notes held over a beat and notes
  starting between beats do not count) whose pitch class is a tone of the
  chord sounding on that beat;
* **in-key share**: the share of chord notes (each tone of each beat's chord,
  as the chords part strikes them) in the key: C major's diatonic scale for
  major tunes; for minor tunes A natural minor and harmonic minor together
  (A B C D E F G G#), so the V chord's G# counts as in the key;
* **distinct chords per 4 and per 8 bars**: windows of 4 (8) whole bars from
  the first bar line (pickup beats left out, a last incomplete window too);
  the mean number of different chords in a window, and the share of 4-bar
  windows with at least 2.

Beats whose chord is ``N`` (only a label can be) are left out of the
chord-tone and in-key shares.  Shares are pooled: counts summed over the set's
tunes, then divided, so a long tune weighs more than a short one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from jamd.music import chords

from .harmony_tunes import Beats

MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})  # C major
MINOR_SCALE = frozenset({9, 11, 0, 2, 4, 5, 7, 8})  # A natural minor and harmonic minor (G and G#)
WINDOWS = (4, 8)  # bars


@dataclass
class Counts:
    """What the shares are made of; add two with `+`."""

    beats: int = 0
    labelled_beats: int = 0  # beats whose reference label is not N
    agreeing_beats: int = 0
    onset_notes: int = 0  # melody notes starting on a beat under a chord
    onset_chord_tones: int = 0
    chord_notes: int = 0  # chord tones struck, one set per beat
    chord_notes_in_key: int = 0
    windows_4: int = 0
    distinct_4: int = 0  # distinct chords, summed over the 4-bar windows
    windows_4_with_2: int = 0  # 4-bar windows with at least 2 distinct chords
    windows_8: int = 0
    distinct_8: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def summary(self) -> dict[str, float | int | None]:
        """The shares and means (None where nothing was counted) and the counts beside them."""
        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        return {
            "agreement": ratio(self.agreeing_beats, self.labelled_beats),
            "chord_tone_share": ratio(self.onset_chord_tones, self.onset_notes),
            "in_key_share": ratio(self.chord_notes_in_key, self.chord_notes),
            "distinct_per_4_bars": ratio(self.distinct_4, self.windows_4),
            "windows_4_with_2_chords": ratio(self.windows_4_with_2, self.windows_4),
            "distinct_per_8_bars": ratio(self.distinct_8, self.windows_8),
            "beats": self.beats, "labelled_beats": self.labelled_beats, "onset_notes": self.onset_notes,
            "chord_notes": self.chord_notes, "windows_4": self.windows_4, "windows_8": self.windows_8,
        }


def windows(beats: Beats, bars: int) -> list[range]:
    """The beat ranges of the whole `bars`-bar windows of a tune, from its first bar line."""
    size = bars * beats.tune.beats_per_bar
    start = beats.tune.pickup_beats
    return [range(a, a + size) for a in range(start, beats.n - size + 1, size)]


def score_tune(beats: Beats, chord_ids: Sequence[int], labels: Sequence[int] | None = None) -> Counts:
    """The `Counts` of one tune harmonised with `chord_ids` ([n] ids), against `labels` if given."""
    ids = [int(c) for c in chord_ids[:beats.n]]
    if len(ids) != beats.n:
        raise ValueError(f"{beats.tune.name}: {len(ids)} chords for {beats.n} beats")
    scale = MINOR_SCALE if beats.minor else MAJOR_SCALE
    c = Counts(beats=beats.n)
    for b, chord in enumerate(ids):
        if labels is not None and b < len(labels) and labels[b] != chords.NO_CHORD:
            c.labelled_beats += 1
            c.agreeing_beats += int(chord == labels[b])
        if chord == chords.NO_CHORD:
            continue
        tones = chords.chord_tones(chord)
        if beats.onset[b] is not None:
            c.onset_notes += 1
            c.onset_chord_tones += int(beats.onset[b] % 12 in tones)
        c.chord_notes += len(tones)
        c.chord_notes_in_key += sum(t in scale for t in tones)
    for w in windows(beats, 4):
        n = len({ids[b] for b in w} - {chords.NO_CHORD})
        c.windows_4 += 1
        c.distinct_4 += n
        c.windows_4_with_2 += int(n >= 2)
    for w in windows(beats, 8):
        c.windows_8 += 1
        c.distinct_8 += len({ids[b] for b in w} - {chords.NO_CHORD})
    return c


def score_set(items: Iterable[tuple[Beats, Sequence[int], Sequence[int] | None]]) -> dict:
    """The pooled `Counts.summary` over (beats, chords, labels or None) of a set's tunes."""
    total = Counts()
    for beats, ids, labels in items:
        total = total + score_tune(beats, ids, labels)
    return total.summary()


def transitions(sequences: Iterable[Sequence[int]]) -> np.ndarray:
    """[49, 49] counts of chord changes (row: from, column: to) in chord-per-beat sequences;
    repeated chords and ``N`` are skipped, so only real changes count."""
    m = np.zeros((chords.N_CHORDS, chords.N_CHORDS), np.int64)
    for seq in sequences:
        prev = None
        for c in seq:
            c = int(c)
            if c == chords.NO_CHORD or c == prev:
                continue
            if prev is not None:
                m[prev, c] += 1
            prev = c
    return m


def top_chords(matrices: Sequence[np.ndarray], k: int) -> list[int]:
    """The `k` chords taking part in most changes over all `matrices` (most first)."""
    use = Counter()
    for m in matrices:
        for c, n in enumerate(m.sum(axis=0) + m.sum(axis=1)):
            use[c] += int(n)
    return [c for c, n in use.most_common() if n > 0][:k]
