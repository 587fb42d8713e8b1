"""The harmony model's contract: its chord vocabulary and the numbers it reads each beat.

Shared by the training code (labelling Bach's chorales), the export, the
evaluation and the daemon, with no heavy imports, so every side computes the
same features from the same melody.

**Chords.** 49 labels: id 0 is ``N`` (no chord), then one per root (12
pitch classes, C = 0) and quality, id ``1 + 4 * root + quality``, qualities
``maj`` (0 4 7), ``min`` (0 3 7), ``dim`` (0 3 6) and ``dom7`` (0 4 7 10).
Sevenths other than the dominant's fold into their triad (Cmaj7 -> C, Am7 ->
Am, Bm7b5 and Bdim7 -> Bdim), augmented into major (`quality_of`).

**Beats.** The model steps once per beat (a quarter note, 4 16th steps, in
training).  What it reads of the melody over one beat is `melody_features`:
25 numbers from the pitch sounding on each 16th step of the beat (MIDI pitch,
or None for a rest):

* 0-11: the share of the beat each pitch class sounds (held notes count);
* 12-23: one-hot pitch class of the note sounding at the beat's first step
  (all 0 when it is a rest);
* 24: the share of the beat that is rest.

**One step's input** (`step_input`, `STEP_FEATURES` = 117 numbers):

* 0-24: the melody of the beat before (zeros before the first beat);
* 25-73: one-hot chord of the beat before (``N`` before the first beat);
* 74-86: one-hot bass pitch class of the beat before, 12 meaning none;
* 87-111: the melody of this beat, or zeros when it is not known yet;
* 112: 1 when this beat's melody is given (lookahead), else 0;
* 113-116: one-hot position of the beat in its bar, 3 meaning 3 or later.

**The ONNX step model** (kind ``harmony-step``) takes ``x [1, 117]`` float32
and the LSTM state ``h``, ``c`` (float32, shape as the model declares) and
gives ``chord_logits [1, 49]`` (this beat's chord), ``bass_logits [1, 12]``
(its bass pitch class), ``melody_logits [1, 13]`` (the pitch class at this
beat's first step, 12 = rest: the model's guess of what the player will
play, which only matters when the beat's melody is not given) and ``h_out``,
``c_out``.  Pitches are in C major / A minor, as for the melody models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..tokens import HOLD, Note, is_pitch

QUALITIES = ("maj", "min", "dim", "dom7")
QUALITY_INTERVALS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 7, 10))
QUALITY_SUFFIX = ("", "m", "dim", "7")
ROOT_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
NO_CHORD = 0
N_CHORDS = 1 + 12 * len(QUALITIES)  # 49
N_BASS = 12
N_MELODY_CLASSES = 13  # 12 pitch classes + rest, the melody head's classes
MELODY_FEATURES = 25
POSITIONS = 4
STEP_FEATURES = 2 * MELODY_FEATURES + N_CHORDS + (N_BASS + 1) + 1 + POSITIONS  # 117
STEPS_PER_BEAT = 4  # training's beat: a quarter note of 16th steps

# offsets into the step input
PREV_MELODY = 0
PREV_CHORD = PREV_MELODY + MELODY_FEATURES
PREV_BASS = PREV_CHORD + N_CHORDS
CUR_MELODY = PREV_BASS + N_BASS + 1
LOOKAHEAD_FLAG = CUR_MELODY + MELODY_FEATURES
POSITION = LOOKAHEAD_FLAG + 1
assert POSITION + POSITIONS == STEP_FEATURES


def chord_id(root: int, quality: int) -> int:
    """The id of the chord on pitch class `root` (0-11) with `quality` (index into QUALITIES)."""
    if not 0 <= quality < len(QUALITIES):
        raise ValueError(f"quality {quality} is not one of 0-{len(QUALITIES) - 1}")
    return 1 + 4 * (root % 12) + quality


def root_of(chord: int) -> int | None:
    """Root pitch class (0-11) of chord id `chord`; None for ``N``."""
    return None if chord == NO_CHORD else (chord - 1) // 4


def quality_index(chord: int) -> int | None:
    return None if chord == NO_CHORD else (chord - 1) % 4


def chord_tones(chord: int) -> tuple[int, ...]:
    """Pitch classes of chord id `chord`, root first (``N``: none)."""
    if chord == NO_CHORD:
        return ()
    root = root_of(chord)
    return tuple((root + i) % 12 for i in QUALITY_INTERVALS[quality_index(chord)])


def chord_name(chord: int, transpose: int = 0) -> str:
    """A lead-sheet name such as ``G``, ``Am``, ``Bdim`` or ``D7``, moved by `transpose` semitones."""
    if chord == NO_CHORD:
        return "N"
    return ROOT_NAMES[(root_of(chord) + transpose) % 12] + QUALITY_SUFFIX[quality_index(chord)]


def chord_table() -> list[dict]:
    """The vocabulary as the model metadata stores it: id, name and pitch classes of each chord."""
    return [{"id": i, "name": chord_name(i), "tones": list(chord_tones(i))} for i in range(N_CHORDS)]


def transpose_chord(chord: int, semitones: int) -> int:
    if chord == NO_CHORD:
        return NO_CHORD
    return chord_id(root_of(chord) + semitones, quality_index(chord))


def quality_of(root: int, pitch_classes: Sequence[int]) -> int | None:
    """The vocabulary's quality of a sonority over `root`, from its pitch classes; None: unclassifiable.

    A major third with a minor seventh is ``dom7``; a major third otherwise
    ``maj`` (augmented too); a minor third with a diminished fifth and no
    perfect fifth ``dim``; a minor third ``min``; an open fifth (no third),
    as at the end of many chorales, ``maj``.
    """
    rel = {(p - root) % 12 for p in pitch_classes}
    if 4 in rel:
        return 3 if 10 in rel else 0
    if 3 in rel:
        return 2 if 6 in rel and 7 not in rel else 1
    if 7 in rel:
        return 0
    return None


# -- the melody, beat by beat ---------------------------------------------------
def sounding_from_symbols(symbols: Sequence[str], carry: int | None = None) -> list[int | None]:
    """The pitch sounding at each 16th step of `symbols` (None: rest); `carry` sounds before step 0.

    A hold continues whatever was before it (the carried pitch at step 0).
    """
    out: list[int | None] = []
    current = carry
    for s in symbols:
        if is_pitch(s):
            current = int(s)
        elif s != HOLD:  # a rest or the song delimiter
            current = None
        out.append(current)
    return out


def sounding_from_notes(notes: Sequence[Note], start: int, n_steps: int) -> list[int | None]:
    """The pitch sounding at each 16th step ``start .. start + n_steps - 1`` (None: rest).

    Where notes overlap (a live player's legato), the latest started wins.
    """
    out: list[int | None] = [None] * n_steps
    for n in sorted(notes):
        a, b = max(n.start, start), min(n.end, start + n_steps)
        for s in range(a, b):
            out[s - start] = n.pitch
    return out


def melody_features(sounding: Sequence[int | None]) -> np.ndarray:
    """The 25 melody features of one beat from its per-step sounding pitches (see the module doc)."""
    f = np.zeros(MELODY_FEATURES, np.float32)
    if not sounding:
        return f
    w = 1.0 / len(sounding)
    for p in sounding:
        if p is None:
            f[24] += w
        else:
            f[p % 12] += w
    if sounding[0] is not None:
        f[12 + sounding[0] % 12] = 1.0
    return f


def onset_class(sounding: Sequence[int | None]) -> int:
    """The melody head's class for a beat: pitch class at its first step, 12 for a rest."""
    return 12 if not sounding or sounding[0] is None else sounding[0] % 12


def step_input(prev_melody: np.ndarray | None, prev_chord: int, prev_bass: int | None,
               melody: np.ndarray | None, beat_in_bar: int, out: np.ndarray | None = None) -> np.ndarray:
    """One step's input vector, `STEP_FEATURES` float32 (see the module doc).

    `prev_melody` / `melody`: `melody_features` of the beat before and of this
    beat (None: not known: zeros, and the lookahead flag 0); `prev_bass`: a
    pitch class or None; `beat_in_bar`: 0 for the downbeat.
    """
    x = np.zeros(STEP_FEATURES, np.float32) if out is None else out
    x[:] = 0.0
    if prev_melody is not None:
        x[PREV_MELODY:PREV_MELODY + MELODY_FEATURES] = prev_melody
    x[PREV_CHORD + prev_chord] = 1.0
    x[PREV_BASS + (N_BASS if prev_bass is None else prev_bass % 12)] = 1.0
    if melody is not None:
        x[CUR_MELODY:CUR_MELODY + MELODY_FEATURES] = melody
        x[LOOKAHEAD_FLAG] = 1.0
    x[POSITION + min(max(beat_in_bar, 0), POSITIONS - 1)] = 1.0
    return x


def chord_tone_share(chord: int, pitch_class_weights: np.ndarray) -> float:
    """The share of `pitch_class_weights` (12 non-negative numbers) on the tones of `chord`."""
    total = float(np.sum(pitch_class_weights))
    if total <= 0 or chord == NO_CHORD:
        return 0.0
    return float(sum(pitch_class_weights[t] for t in chord_tones(chord)) / total)


def tone_matrix() -> np.ndarray:
    """`N_CHORDS` x 12 matrix of 0/1: row c marks the tones of chord c (row 0, ``N``, is empty)."""
    m = np.zeros((N_CHORDS, 12), np.float32)
    for c in range(1, N_CHORDS):
        m[c, list(chord_tones(c))] = 1.0
    return m
