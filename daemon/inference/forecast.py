"""The player's coming notes, guessed by a melody LSTM, for choosing chords online.

Online (under a live player) the chord of a beat must be chosen before its
notes are played.  `MelodyForecast` keeps a melody step model
(`jamd.inference.lstm.LstmGenerator`, config ``harmony.forecast_model``) fed
with what the player has played, in C/Am, one 16th step per symbol; at a
chord decision, `onsets` samples ``harmony.forecast_rollouts`` continuations
of the chord's span (at `FORECAST_TEMPERATURE`) and counts the pitch classes of the
notes starting on each of its beats.  Those 12 numbers are the ``span`` that
`jamd.inference.harmony.Harmonizer.decide` weighs the chords by.  On the Erk
validation tunes at half-bar this raises the online chord-tone share from
0.539 (the harmony model's own guess of the next beat's first note) to 0.608
at melody_fit 1 and 0.632 at 4 (docs/HARMONY_EVAL.md).

Only the steps up to the span's last beat start are sampled, and only those
before it are fed back, so a half-bar span (8 steps, beats at 0 and 4) costs
per rollout 4 model steps and 5 draws.  The state after `hear` is snapshotted
and restored around the rollouts, with the bar grid (`LstmGenerator.align`): a
model reading the metric position hears the clock's bar position of each step
from `reset` on (the live harmony part gives it the clock's).

`window_symbols` turns a live player's notes (grid steps) into the 16th
symbols `hear` takes.  A melody model trained in all 12 keys hears them in C/Am
too: C is one of its keys, and the chords are chosen in C/Am.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import ModelConfig
from ..tokens import DELIMITER, HOLD, REST, Note, fit_symbols_to_vocab, is_pitch
from .lstm import LstmGenerator
from .sampling import sample

# Below 1 the rollouts keep to the model's likelier continuations: on the Erk
# validation tunes (half-bar, 8 rollouts) 0.3-0.7 give the chords 0.013 more of
# the melody's notes than 1 (0.633 against 0.620, two seeds; 32 rollouts at 1
# give 0.633 too, at 4 times the cost); 0 (one greedy guess) gives 0.616.
FORECAST_TEMPERATURE = 0.5


class MelodyForecast:
    """The player's coming notes guessed by a melody LSTM step model, for online chords.

    Not thread-safe (one generator state).  `rng` draws the rollouts; a seeded
    one makes `onsets` repeat exactly.  `temperature` is the rollouts'
    (`FORECAST_TEMPERATURE`; 0 is one greedy continuation).
    """

    def __init__(self, generator: LstmGenerator, rollouts: int = 8, rng: np.random.Generator | None = None,
                 temperature: float = FORECAST_TEMPERATURE):
        if rollouts < 1:
            raise ValueError(f"rollouts must be at least 1 (received {rollouts})")
        if temperature < 0:
            raise ValueError(f"temperature must be at least 0 (received {temperature})")
        self.generator = generator
        self.rollouts = rollouts
        self.temperature = temperature
        self.rng = rng or np.random.default_rng()
        vocab = generator.vocab
        self._ids = {s: vocab.id(s) for s in vocab.symbols}
        # pitch class of each symbol id (-1: not a pitch), read per sampled beat start
        self._pitch_class = np.array([int(s) % 12 if is_pitch(s) else -1 for s in vocab.symbols], np.int64)
        self._mask = np.array([s != DELIMITER for s in vocab.symbols], bool)  # a live stream never ends
        self._started = False
        self.reset()

    @classmethod
    def load(cls, name_or_path: str, model_cfg: ModelConfig | None, rollouts: int,
             rng: np.random.Generator | None) -> MelodyForecast:
        """A forecast over the shipped melody model `name_or_path` (``lstm``) or an .onnx path.

        Raises `ModelError` (one line) when it is not an LSTM step model (a GAN, a harmony model).
        """
        return cls(LstmGenerator.load(name_or_path, model_cfg), rollouts, rng)

    def reset(self, position: int = 0, bar_steps: int | None = None) -> None:
        """A new phrase: the generator's start state (after the song delimiters), the first step
        heard falling at `position` (16ths after a downbeat) of a bar of `bar_steps` 16ths
        (None: the grid as it was; a model reading the metric position hears each step's)."""
        self.generator.reset(position, bar_steps)
        self._started = False

    def hear(self, symbols: Sequence[str]) -> None:
        """Feed the player's next 16th steps (symbols in C/Am, e.g. from `window_symbols`).

        Pitches are folded into the model's range (`tokens.fit_symbols_to_vocab`).
        The song delimiter is never fed: it counts as a rest, as does a hold
        right after `reset` (nothing sounds before it).
        """
        feed = self.generator.feed
        for s in fit_symbols_to_vocab(symbols, self.generator.vocab):
            if s == DELIMITER or (s == HOLD and not self._started):
                s = REST
            self._started = True
            feed(self._ids[s])

    def onsets(self, n_steps: int, steps_per_beat: int = 4) -> np.ndarray:
        """[12] float: the mean count per pitch class, over `rollouts` sampled continuations
        (at `temperature`, the delimiter never drawn) of the next `n_steps` 16th steps, of the
        notes starting on a beat's first step (steps 0, `steps_per_beat`, ... below `n_steps`).

        The sum is at most the number of beats, ``ceil(n_steps / steps_per_beat)`` (less where
        a beat starts with a hold or a rest).  The state after `hear` is unchanged.
        """
        out = np.zeros(12, np.float64)
        if n_steps <= 0:
            return out
        if steps_per_beat < 1:
            raise ValueError(f"steps_per_beat must be at least 1 (received {steps_per_beat})")
        gen, rng, mask, pc = self.generator, self.rng, self._mask, self._pitch_class
        last = (n_steps - 1) // steps_per_beat * steps_per_beat  # the last beat start in the span
        start = gen.snapshot()
        for k in range(self.rollouts):
            if k:
                gen.restore(start)
            for step in range(last + 1):
                token = sample(gen.next_logits, self.temperature, rng, mask)
                if step % steps_per_beat == 0 and pc[token] >= 0:
                    out[pc[token]] += 1.0
                if step < last:  # what follows the last beat start is never read
                    gen.feed(token)
        gen.restore(start)
        return out / self.rollouts


def window_symbols(notes: Sequence[Note], start: int, n_steps: int) -> list[str]:
    """The 16th symbols of steps start..start+n_steps-1 of a live player's notes (grid steps, any pitches):
    a pitch where a note starts (the highest if several), '_' while the note before goes on or a rest goes on,
    'r' where a rest starts.  Continuity with step start-1 is taken from `notes`.

    A step sounds when any note covers it (start <= step < end), so where a
    player's overlapping notes outlast a later one, the hold goes on until
    the last of them ends; a rest starts on the first step nothing sounds
    after one that did.  Before step 0 nothing sounds, and a rest starts at
    step 0, as in `tokens.notes_to_symbols` (for one voice the two agree).
    Notes of no duration still start their step.
    """
    onset: dict[int, int] = {}
    end = start + n_steps
    for n in notes:
        if start <= n.start < end and n.pitch > onset.get(n.start, -1):
            onset[n.start] = n.pitch

    def sounds(step: int) -> bool:
        return any(n.start <= step < n.end for n in notes)

    out: list[str] = []
    was = start > 0 and sounds(start - 1)
    for step in range(start, end):
        if step in onset:
            out.append(str(onset[step]))
            was = True
        elif sounds(step):
            out.append(HOLD)  # the note before goes on (was is True: a note covering step covers step-1)
        else:
            out.append(REST if was or step == 0 else HOLD)
            was = False
    return out
