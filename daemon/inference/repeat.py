"""Bar repetition: a step model replays one of its own earlier bars at a bar line.

Folk tunes repeat bars exactly (about one bar in seven in Erk's tunes: their share of distinct
bars within a 16-bar melody is 0.857), and an LSTM sampled 16th by 16th almost never does
(0.998): redrawing the same 16 symbols has a probability far below one even when each is likely.
The metric position tells the model where a bar starts, not what an earlier bar was; this is the
copy step that repetition needs, at decoding time (issue 16 §4; docs/MODELS.md "Bar repetition").

At each bar line, with probability `chance`, the complete bars of the melody so far (the last
`lookback`, the seed's included) are scored by the model itself from its current state: the
log-likelihood (nats) of each bar's 16ths, fed one after another, as `jamd eval` scores NLL.  One
is drawn in proportion to its likelihood (softmax over the bars' summed log-probabilities), and is
played, fed to the model as if sampled, when its mean log-probability per 16th is at least
`min_logp`; otherwise the bar is sampled as usual.  So the model decides which bar comes back and
can veto a repeat that would not fit here.

Cost: up to `lookback` x (bar length) extra model steps at the bar lines that consider a repeat
(8 x 16 x ~30 µs = ~4 ms on one core), none elsewhere.  The random stream is touched only when
`chance` > 0, so a model without the setting generates exactly as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sampling import log_softmax, sample


@dataclass(frozen=True)
class RepeatSettings:
    """chance: share of bar lines where a repeat is considered (0: never), 0..1;
    lookback: complete bars kept, 1..64; min_logp: the least mean log-probability per 16th (nats,
    <= 0) a chosen bar needs to be played."""

    chance: float = 0.0
    lookback: int = 8
    min_logp: float = -2.0

    @classmethod
    def from_metadata(cls, raw: Any, chance: float | None = None) -> RepeatSettings:
        """The model's own "bar_repeat" metadata ({"chance", "lookback", "min_logp"}; absent: off),
        `chance` overriding its chance (the `model.bar_repeat` setting) when not None."""
        own = raw if isinstance(raw, dict) else {}
        base = cls()
        return cls(float(own.get("chance", base.chance)) if chance is None else float(chance),
                   int(own.get("lookback", base.lookback)), float(own.get("min_logp", base.min_logp)))


class BarRepeat:
    """The bars a step model has played, and the repeat decision at a bar line; not thread-safe.

    The generator reports each symbol it plays with `heard(id, position)`, where `position` is the
    bar position (16ths after the downbeat) of the step after it; a bar is complete when that wraps
    to 0.  `forget` on reset.
    """

    def __init__(self, settings: RepeatSettings, bar_steps: int = 16, excluded: tuple[int, ...] = ()):
        self.settings = settings
        self.bar_steps = bar_steps
        self.excluded = frozenset(excluded)  # e.g. the song delimiter: a bar holding one never returns
        self.bars: deque[tuple[int, ...]] = deque(maxlen=max(1, settings.lookback))
        self._bar: list[int] = []
        self.repeats = 0  # bars played as repeats since the model was loaded

    def forget(self, bar_steps: int | None = None) -> None:
        if bar_steps:
            self.bar_steps = int(bar_steps)
        self.bars.clear()
        self._bar = []

    def regrid(self, bar_steps: int) -> None:
        """The clock moved the bar grid: the bar in progress is dropped; another meter forgets all."""
        if int(bar_steps) != self.bar_steps:
            self.forget(bar_steps)
        self._bar = []

    def heard(self, idx: int, position: int) -> None:
        self._bar.append(idx)
        if position == 0:
            bar, self._bar = tuple(self._bar), []
            # a bar entered part-way (a seed not starting on a bar line) is not a whole bar
            if len(bar) == self.bar_steps and not self.excluded.intersection(bar):
                self.bars.append(bar)

    def maybe(self, gen: Any, rng: np.random.Generator) -> list[int] | None:
        """At a bar line (`gen.position` 0): the ids of an earlier bar, already fed to `gen` and
        recorded, or None (not a bar line, no earlier bar, no repeat drawn, or vetoed).

        `gen` needs `position`, `snapshot`, `restore`, `feed` and `next_logits`."""
        s = self.settings
        if s.chance <= 0 or gen.position != 0 or not self.bars or rng.random() >= s.chance:
            return None
        candidates = list(dict.fromkeys(reversed(self.bars)))  # distinct, the latest first
        start = gen.snapshot()
        scores = np.empty(len(candidates))
        for k, bar in enumerate(candidates):
            if k:
                gen.restore(start)
            total = 0.0
            for idx in bar:
                total += float(log_softmax(gen.next_logits)[idx])
                gen.feed(idx)
            scores[k] = total
        k = sample(scores, 1.0, rng)
        chosen = candidates[k]
        if scores[k] / len(chosen) < s.min_logp:
            gen.restore(start)
            return None
        if k != len(candidates) - 1:  # the state after the last one scored is the chosen one's otherwise
            gen.restore(start)
            for idx in chosen:
                gen.feed(idx)
        self.bars.append(chosen)  # a whole bar from a bar line: complete as it is
        self.repeats += 1
        return list(chosen)
