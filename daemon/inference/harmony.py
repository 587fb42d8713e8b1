"""The harmony model, one beat at a time, and how a beat's chord and bass are chosen.

`HarmonyModel` runs the exported step model (kind ``harmony-step``; inputs and
outputs in `jamd.music.chords`) with its LSTM state held here.  `Harmonizer`
decides beat by beat, in C major / A minor:

* **online** (under a live player): the chord of a beat is chosen from the
  melody up to the end of the beat before and the chords so far;
* **with lookahead** (under jamd's own melody, written a bar ahead): the
  beat's own melody, and that of the whole harmonic-rhythm span it starts,
  are known too.

The choice is the model's chord distribution times how well each chord fits
the melody (a product of experts): the score of chord c is
``log p(c) + melody_fit * log(eps + share of the melody on c's tones)``, where
the melody is the span's own notes with lookahead, and online the model's
guess of the coming beat's first note (its melody head).  ``N`` (no chord) is
never chosen: an accompanist who does not know keeps playing.  The bass is the
chord tone the bass head likes best, so it is always in the chord (inversions
allowed).  Where the harmonic rhythm does not let the chord change, the chord
and bass are held, and the model still steps so its state follows the melody.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from ..music import chords
from . import model_store
from .runtime import make_session
from .sampling import log_softmax

log = logging.getLogger(__name__)

KIND = model_store.HARMONY_KIND
INPUTS = ["x", "h", "c"]
OUTPUTS = ["chord_logits", "bass_logits", "melody_logits", "h_out", "c_out"]
FIT_EPS = 0.05  # a chord with none of the melody's tones keeps log(0.05), not -inf


@dataclass(frozen=True)
class Harmony:
    """One beat's harmony, in C/Am: a chord id (`jamd.music.chords`) and the bass pitch class."""

    chord: int
    bass: int | None
    changed: bool = True  # False: held from the beat before (the harmonic rhythm)

    @property
    def name(self) -> str:
        return chords.chord_name(self.chord)


class HarmonyModel:
    """The exported harmony step model with explicit LSTM state; not thread-safe.

    Raises `ModelError` (one line) for a model of another kind or with other
    inputs, outputs or shapes than the contract in `jamd.music.chords`.
    """

    def __init__(self, session, info: model_store.ModelInfo):
        self.session = session
        self.info = info
        self.units = int(info.raw["units"])
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != INPUTS or outputs != OUTPUTS:
            raise ModelError(f"{info.path}: not a harmony step model (inputs {inputs}, outputs {outputs})")
        shape = session.get_inputs()[1].shape
        self._state_shape = tuple(d if isinstance(d, int) else 1 for d in shape)
        if self._state_shape[-1] != self.units:
            raise ModelError(f"{info.path}: state shape {shape} does not match its metadata ({self.units} units)")
        self._x = np.zeros((1, chords.STEP_FEATURES), np.float32)
        self.reset()

    @classmethod
    def load(cls, name_or_path: str, model_cfg: ModelConfig | None = None) -> HarmonyModel:
        """Load a shipped name (``harmony``) or an .onnx path; `ModelError` if it is not a harmony model."""
        cfg = model_cfg or ModelConfig()
        path = model_store.resolve(name_or_path)
        info = model_store.load_info(path)
        if info.kind != KIND:
            raise ModelError(f"{path}: is a {info.kind} model, not a harmony model")
        return cls(make_session(path, cfg.providers, cfg.intra_op_threads), info)

    def reset(self) -> None:
        """Back to the start of a piece (zero state)."""
        self.h = np.zeros(self._state_shape, np.float32)
        self.c = np.zeros(self._state_shape, np.float32)

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one beat on input `x` (`STEP_FEATURES` floats); the chord (49), bass (12) and
        melody (13) logits of this beat."""
        self._x[0] = x
        chord, bass, melody, self.h, self.c = self.session.run(
            OUTPUTS, {"x": self._x, "h": self.h, "c": self.c})
        return chord.reshape(-1), bass.reshape(-1), melody.reshape(-1)


class Harmonizer:
    """Beat-by-beat chord and bass decisions over a `HarmonyModel` (see the module doc).

    `temperature` 0 takes the best score; above 0 samples from the scores
    divided by it.  `melody_fit` weighs the melody's chord tones (config
    ``harmony.melody_fit``).
    """

    def __init__(self, model: HarmonyModel, temperature: float = 0.0, melody_fit: float = 1.0,
                 rng: np.random.Generator | None = None):
        self.model = model
        self.temperature = temperature
        self.melody_fit = melody_fit
        self.rng = rng or np.random.default_rng()
        self._tones = chords.tone_matrix()  # [49, 12]
        self._x = np.zeros(chords.STEP_FEATURES, np.float32)
        self.reset()

    def reset(self) -> None:
        """A new piece: zero state, no chord before."""
        self.model.reset()
        self.current = Harmony(chords.NO_CHORD, None)

    def decide(self, prev_melody: np.ndarray | None, beat_in_bar: int, change: bool,
               melody: np.ndarray | None = None, span: np.ndarray | None = None) -> Harmony:
        """The harmony of the next beat; steps the model once.

        `prev_melody`: `melody_features` of the beat before (None: nothing before).
        `change`: whether the harmonic rhythm lets the chord change here (the first
        chord of a piece is always chosen).  `melody`: this beat's own features
        (lookahead; None online).  `span`: 12 pitch-class weights of the melody
        over the span this chord will last (lookahead; None online).
        """
        prev = self.current
        x = chords.step_input(prev_melody, prev.chord, prev.bass, melody, beat_in_bar, out=self._x)
        chord_logits, bass_logits, melody_logits = self.model.step(x)
        if not change and prev.chord != chords.NO_CHORD:
            self.current = Harmony(prev.chord, prev.bass, changed=False)
            return self.current
        chord = self._choose(chord_logits, melody_logits, span)
        self.current = Harmony(chord, self._bass(chord, bass_logits))
        return self.current

    def scores(self, chord_logits: np.ndarray, melody_logits: np.ndarray, span: np.ndarray | None) -> np.ndarray:
        """Each chord's score (see the module doc); ``N`` is -inf."""
        score = log_softmax(chord_logits.astype(np.float64))
        if self.melody_fit > 0:
            if span is not None and float(np.sum(span)) > 0:
                weights = np.asarray(span, np.float64) / float(np.sum(span))
            else:
                p = np.exp(log_softmax(melody_logits.astype(np.float64)))[:12]
                weights = p / p.sum() if p.sum() > 0 else None
            if weights is not None:
                score = score + self.melody_fit * np.log(FIT_EPS + self._tones @ weights)
        score[chords.NO_CHORD] = -np.inf
        return score

    def _choose(self, chord_logits: np.ndarray, melody_logits: np.ndarray, span: np.ndarray | None) -> int:
        score = self.scores(chord_logits, melody_logits, span)
        if self.temperature <= 0:
            return int(np.argmax(score))
        z = score / self.temperature
        p = np.exp(z - np.max(z))
        return int(self.rng.choice(len(p), p=p / p.sum()))

    def _bass(self, chord: int, bass_logits: np.ndarray) -> int | None:
        tones = chords.chord_tones(chord)
        if not tones:
            return None
        return max(tones, key=lambda t: bass_logits[t])


def beats_per_chord(rhythm: str, beats_per_bar: int) -> int:
    """Beats between possible chord changes for harmonic rhythm `rhythm` (`config.HARMONIC_RHYTHMS`).

    ``half-bar`` in a bar with an odd number of beats (3/4) is the whole bar.
    """
    if rhythm == "beat":
        return 1
    if rhythm == "half-bar" and beats_per_bar % 2 == 0:
        return beats_per_bar // 2
    return beats_per_bar


def may_change(beat_in_bar: int, rhythm: str, beats_per_bar: int) -> bool:
    """Whether the chord may change on beat `beat_in_bar` (0: the downbeat) under `rhythm`."""
    return beat_in_bar % beats_per_chord(rhythm, beats_per_bar) == 0
