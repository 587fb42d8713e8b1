"""What `jamd eval` needs of a model, so that new kinds of model plug in.

A `MelodySource` generates melodies of given lengths (each as long as the
reference melody it will be compared with); that is all the feature
comparison needs.  Step models (the LSTM, the Markov baseline) get it
from `StepSource`, which drives their `reset` / `next_symbol` loop; a GAN that
writes whole bars only has to implement `generate` itself.  A source that can
also score held-out tunes (`StepSource`) gets a negative log-likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from jamd.errors import ModelError
from jamd.tokens import STEPS_PER_BAR_4_4, Vocabulary

from .melodies import Melody, from_symbols
from .progress import bar


@runtime_checkable
class StepModel(Protocol):
    """The autoregressive interface of `jamd.inference.lstm.LstmGenerator`."""

    vocab: Vocabulary

    def reset(self) -> None: ...

    @property
    def next_logits(self) -> np.ndarray: ...

    def feed(self, symbol_id: int) -> np.ndarray: ...

    def generate(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 stop_at_end: bool = False) -> list[str]: ...


class MelodySource(Protocol):
    name: str

    def generate(self, lengths: Sequence[int], temperature: float, rng: np.random.Generator,
                 progress: bool = False) -> list[Melody]:
        """One melody per entry of `lengths`, exactly that many 16th steps long."""
        ...


class StepSource:
    """Melodies from a step model: each starts from the model's reset state
    (after the song delimiters, as in the seed) and runs exactly its length
    with the delimiter never drawn, which is how `jamd generate` and
    `jamd run` play a given number of bars."""

    def __init__(self, name: str, model: StepModel):
        self.name = name
        self.model = model
        self.vocab = model.vocab

    def generate(self, lengths: Sequence[int], temperature: float, rng: np.random.Generator,
                 progress: bool = False) -> list[Melody]:
        out = []
        for i, n_steps in enumerate(bar(lengths, f"generating ({self.name})", "melody", progress)):
            if getattr(self.model, "metric_position", False):
                # the melodies are compared as 4/4 bars from a downbeat (eval.bars): the model hears so
                self.model.reset(0, STEPS_PER_BAR_4_4)
            else:
                self.model.reset()
            symbols = self.model.generate(n_steps, temperature, rng, stop_at_end=False)
            out.append(from_symbols(f"{self.name}-{i:03d}", symbols, n_steps))
        return out


class BarSource:
    """Melodies from a GAN that writes whole bars (`jamd.inference.gan.BarGenerator`):
    bars are drawn until the melody is long enough, then it is cut.  It
    scores no held-out tunes, so it gets no NLL."""

    def __init__(self, name: str, generator):
        self.name = name
        self.generator = generator
        self.vocab = generator.vocab

    def generate(self, lengths: Sequence[int], temperature: float, rng: np.random.Generator,
                 progress: bool = False) -> list[Melody]:
        out = []
        for i, n_steps in enumerate(bar(lengths, f"generating ({self.name})", "melody", progress)):
            symbols = self.generator.melody(n_steps, temperature, rng)
            out.append(from_symbols(f"{self.name}-{i:03d}", symbols, n_steps))
        return out

    def generate_batch(self, lengths: Sequence[int], temperature: float, rng: np.random.Generator,
                       progress: bool = False) -> list[Melody]:
        """The same, all melodies chained side by side (bar k of every melody in one call) and
        each cut to its length: faster for many melodies (other draws than `generate`'s)."""
        rows = self.generator.melodies(len(lengths), max(lengths), temperature, rng)
        return [from_symbols(f"{self.name}-{i:04d}", row, n) for i, (row, n) in enumerate(zip(rows, lengths,
                                                                                             strict=True))]


def load_source(name: str, model_cfg) -> StepSource | BarSource:
    """A shipped model name or .onnx path, dispatched on the kind in its metadata."""
    from jamd.inference import model_store

    path = model_store.resolve(name)
    info = model_store.load_info(path)
    label = path.stem if name.endswith(".onnx") else name
    if info.kind == "lstm-step":
        from jamd.inference.lstm import LstmGenerator

        return StepSource(label, LstmGenerator.load(str(path), model_cfg))
    if info.kind in ("gan-bar", "cgan-bar"):
        from jamd.inference.gan import BarGenerator

        return BarSource(label, BarGenerator.load(str(path), model_cfg))
    raise ModelError(f"{path}: jamd eval cannot evaluate {info.kind!r} models")

