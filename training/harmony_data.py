"""Harmony training data: music21's Bach chorales as (melody, chord, bass) per beat.

CONTRACT (filled in by the data pipeline; the evaluation codes against it):

`HarmonizedTune` is one chorale (or one folk tune, for evaluation, with no
chords) normalised to C major / A minor.  Beats are quarter notes
(`jamd.music.chords.STEPS_PER_BEAT` 16th steps); beat 0 starts at step 0.

`load_chorales(cfg, progress) -> HarmonyCorpus`: parsed, labelled and cached.
`HarmonyCorpus.split()` -> (training indices, validation indices), by chorale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class HarmonizedTune:
    name: str  # e.g. "bach/bwv269"
    symbols: list[str]  # the soprano (melody) in the LSTM's 16th encoding, in C/Am
    beats_per_bar: int  # from the time signature, in quarter-note beats (3/4: 3, 4/4: 4)
    pickup_beats: int  # beats before the first bar line (0: starts on a bar line)
    chords: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [n_beats] chord ids; empty: none
    bass: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [n_beats] bass pitch classes 0-11
    key: str = ""  # the original key, e.g. "G major"
    shift: int = 0  # semitones added to move it to C/Am

    @property
    def n_beats(self) -> int:
        return len(self.symbols) // 4

    def beat_in_bar(self, beat: int) -> int:
        """Position of `beat` in its bar, 0 for a downbeat."""
        return (beat - self.pickup_beats) % self.beats_per_bar
