"""Per-bar GAN generators, run with ONNX Runtime (no TensorFlow here).

A GAN model writes a whole bar at once: ``steps_per_bar`` 16th steps, each a
distribution over the LSTM's vocabulary (pitch, ``r`` rest, ``_`` hold), so a
bar carries rhythm as well as pitch.  The exported ONNX graph has inputs
``z float32 [batch, latent]`` (and, for the conditional model,
``prev int32 [batch, steps]``: the bar before, as vocabulary ids) and one
output ``logits float32 [batch, steps, vocab]``; each step is then sampled
here at a temperature (0: argmax, so the bar depends on z alone).

Kinds (in the model's metadata):

* ``gan-bar``: unconditional; every bar comes from its own z.
* ``cgan-bar``: conditioned on the previous bar (the player's last bar or its
  own), so bars chain one after another.

    gen = BarGenerator.load("cgan", cfg.model)
    bar = gen.next_bar(prev_bar_symbols, temperature=0.9, rng=rng)   # 16 symbols
    many = gen.bars(64, temperature=0.9, rng=rng)                   # one batched call

`GanBars` adapts a generator to the engine's `BarSource` protocol
(`reseed`, `next_bar(n_steps, ...)`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from . import model_store
from .config import ModelConfig
from .errors import ModelError
from .runtime import make_session
from .sampling import ARGMAX_BELOW, softmax
from .tokens import DELIMITER, HOLD, REST, Vocabulary, is_pitch

log = logging.getLogger(__name__)

GAN_KIND = "gan-bar"
CGAN_KIND = "cgan-bar"
KINDS = (GAN_KIND, CGAN_KIND)


# -- bars as symbol lists (shared with training) -------------------------------

def silent_bar(steps: int) -> list[str]:
    """A bar of rest: what the conditional model sees before anything was played."""
    return [REST] + [HOLD] * (steps - 1)


def normalise_bar(symbols: Sequence[str], steps: int, sounding: str = REST) -> list[str]:
    """One self-contained bar of exactly `steps` symbols.

    A bar cut from a melody may begin with holds of a note struck in the bar
    before; here those become the note itself (`sounding`: the pitch, or
    ``r``), so every bar decodes alone and equal bars compare equal.  A short
    bar is filled with holds at its end, a long one is cut, and a song
    delimiter becomes a rest.
    """
    bar = [REST if s == DELIMITER else s for s in list(symbols)[:steps]]
    bar += [HOLD] * (steps - len(bar))
    if bar and bar[0] == HOLD:
        bar[0] = sounding if (is_pitch(sounding) or sounding == REST) else REST
    return bar


def sounding_before(symbols: Sequence[str]) -> str:
    """The pitch (or rest) still sounding after `symbols`: the last non-hold symbol."""
    for s in reversed(symbols):
        if s != HOLD:
            return REST if s == DELIMITER else s
    return REST


def last_bar(symbols: Sequence[str], steps: int) -> list[str]:
    """The last `steps` symbols of a melody as a normalised bar (rest-padded in front)."""
    symbols = list(symbols)
    if len(symbols) >= steps:
        before, bar = symbols[:-steps], symbols[-steps:]
        return normalise_bar(bar, steps, sounding_before(before))
    pad = silent_bar(steps - len(symbols)) if len(symbols) < steps else []
    return normalise_bar(pad + symbols, steps)


def sample_steps(logits: np.ndarray, temperature: float, rng: np.random.Generator,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Draw one id per step from `logits [..., vocab]` at `temperature` (0: argmax).

    The same inverse-CDF draw as `jamd.sampling.sample`, for a whole batch of
    bars at once; `mask [vocab]` or `[..., vocab]` (bool) excludes symbols.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    if temperature < ARGMAX_BELOW:
        return np.argmax(logits, axis=-1)
    p = softmax(logits, temperature)
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1] + (1,)) * cdf[..., -1:]
    idx = (cdf <= u).sum(axis=-1)
    return np.minimum(idx, p.shape[-1] - 1)


# -- the ONNX generator ---------------------------------------------------------

class BarGenerator:
    """One ONNX Runtime session that turns (z[, previous bar]) into bars; not thread-safe."""

    def __init__(self, session, info: model_store.ModelInfo):
        self.session = session
        self.info = info
        self.vocab: Vocabulary = info.vocab
        self.kind = info.kind
        self.conditional = info.kind == CGAN_KIND
        self.steps_per_bar = int(info.raw["steps_per_bar"])
        self.latent_dim = int(info.raw["latent_dim"])
        inputs = [i.name for i in session.get_inputs()]
        expected = ["z", "prev"] if self.conditional else ["z"]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != expected or outputs[:1] != ["logits"]:
            raise ModelError(f"{info.path}: not a {self.kind} model (inputs {inputs}, outputs {outputs})")
        self._prev_dtype = np.int64
        if self.conditional and "int32" in session.get_inputs()[1].type:
            self._prev_dtype = np.int32
        # the delimiter never belongs inside a bar
        self._mask = np.ones(len(self.vocab), bool)
        self._mask[self.vocab.id(DELIMITER)] = False
        self._silent = self.vocab.encode(silent_bar(self.steps_per_bar))

    @classmethod
    def load(cls, name_or_path: str, model_cfg: ModelConfig | None = None) -> BarGenerator:
        cfg = model_cfg or ModelConfig()
        path = model_store.resolve(name_or_path)
        info = model_store.load_info(path)
        if info.kind not in KINDS:
            raise ModelError(f"{path}: is a {info.kind} model, not a per-bar GAN model")
        return cls(make_session(path, cfg.providers, cfg.intra_op_threads), info)

    @property
    def name(self) -> str:
        return self.info.path.stem

    # -- conditioning ---------------------------------------------------------
    def encode_bar(self, symbols: Sequence[str] | None) -> np.ndarray:
        """A previous bar as ids (None: a silent bar); pitches must be in the vocabulary."""
        if symbols is None:
            return self._silent
        bar = normalise_bar(symbols, self.steps_per_bar)
        missing = [s for s in bar if s not in self.vocab]
        if missing:
            lo, hi = self.vocab.pitch_range
            raise ModelError(f"bar symbol {missing[0]!r} is not in the model's vocabulary (pitches {lo}-{hi})")
        return self.vocab.encode(bar)

    # -- generation -------------------------------------------------------------
    def logits(self, z: np.ndarray, prev_ids: np.ndarray | None = None) -> np.ndarray:
        """Raw generator output for a batch: logits [batch, steps, vocab]."""
        feeds = {"z": np.asarray(z, np.float32)}
        if self.conditional:
            if prev_ids is None:
                prev_ids = np.broadcast_to(self._silent, (len(z), self.steps_per_bar))
            feeds["prev"] = np.asarray(prev_ids, self._prev_dtype)
        return self.session.run(["logits"], feeds)[0]

    def bar_ids(self, n: int, temperature: float, rng: np.random.Generator,
                prev_ids: np.ndarray | None = None, first_note: bool = False) -> np.ndarray:
        """`n` bars as ids [n, steps] from one batched call; `prev_ids` [n, steps] or [steps]."""
        z = rng.standard_normal((n, self.latent_dim)).astype(np.float32)
        if prev_ids is not None:
            prev_ids = np.broadcast_to(np.asarray(prev_ids), (n, self.steps_per_bar))
        mask = np.broadcast_to(self._mask, (self.steps_per_bar, len(self.vocab))).copy()
        if first_note:  # the bar must open with a struck note (an answer starts on its bar line)
            mask[0] = False
            mask[0, self.vocab.pitch_ids()] = True
        return sample_steps(self.logits(z, prev_ids), temperature, rng, mask)

    def bars(self, n: int, temperature: float, rng: np.random.Generator,
             prev: Sequence[str] | None = None) -> list[list[str]]:
        """`n` independent bars in one batch; for the conditional model, each continues `prev`."""
        prev_ids = self.encode_bar(prev) if self.conditional else None
        return [self.vocab.decode(row) for row in self.bar_ids(n, temperature, rng, prev_ids)]

    def continue_ids(self, prev_ids: np.ndarray | None, temperature: float, rng: np.random.Generator,
                     first_note: bool = False, n: int = 1) -> np.ndarray:
        """The next bar after each of `prev_ids [n, steps]` (None: `n` bars after nothing), as ids.
        Only the conditional model is conditioned; the unconditional one draws fresh bars."""
        if prev_ids is not None:
            prev_ids = np.asarray(prev_ids).reshape(-1, self.steps_per_bar)
            n = len(prev_ids)
        return self.bar_ids(n, temperature, rng, prev_ids if self.conditional else None, first_note)

    def next_bar(self, prev: Sequence[str] | None, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        """One bar after `prev` (the bar before, or None: silence); only the conditional model uses it."""
        prev_ids = self.encode_bar(prev)[None, :] if self.conditional else None
        return self.vocab.decode(self.continue_ids(prev_ids, temperature, rng, first_note)[0])

    def melody(self, n_steps: int, temperature: float, rng: np.random.Generator,
               prev: Sequence[str] | None = None) -> list[str]:
        """Exactly `n_steps` symbols, bar after bar from `prev` (None: from silence)."""
        return self.melodies(1, n_steps, temperature, rng, prev)[0]

    def melodies(self, n: int, n_steps: int, temperature: float, rng: np.random.Generator,
                 prev: Sequence[str] | None = None) -> list[list[str]]:
        """`n` melodies of `n_steps`, batched across melodies (bar k of every melody in one call)."""
        n_bars = -(-n_steps // self.steps_per_bar)
        rows: list[list[str]] = [[] for _ in range(n)]
        prev_ids = np.broadcast_to(self.encode_bar(prev), (n, self.steps_per_bar)) if self.conditional else None
        for _ in range(n_bars):
            prev_ids = self.continue_ids(prev_ids, temperature, rng, n=n)
            for row, bar in zip(rows, prev_ids, strict=True):
                row += self.vocab.decode(bar)
        return [row[:n_steps] for row in rows]


class GanBars:
    """The engine's `BarSource` over a `BarGenerator`.

    `reseed` keeps the last bar of what was played (the player's phrase, in
    C/Am); each `next_bar` continues from it (conditional model) and then
    from the bar it just made.  A bar length other than the model's
    (another meter on the clock) is cut from, or filled with, further bars.
    """

    def __init__(self, generator: BarGenerator, name: str | None = None):
        self.gen = generator
        self.vocab = generator.vocab
        self.name = name or generator.name
        self._prev: list[str] | None = None

    def reseed(self, symbols: Sequence[str]) -> None:
        self._prev = last_bar(symbols, self.gen.steps_per_bar) if symbols else None

    def next_bar(self, n_steps: int, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        out: list[str] = []
        while len(out) < n_steps:
            bar = self.gen.next_bar(self._prev, temperature, rng, first_note=first_note and not out)
            self._prev = bar
            out += bar
        return out[:n_steps]


def continue_melody(gen: BarGenerator, seed: Sequence[str], n_bars: int, bar_steps: int,
                    temperature: float, rng: np.random.Generator) -> list[str]:
    """`n_bars` bars of `bar_steps` after `seed` (what `jamd generate` writes after the seed).

    The unconditional model makes all its bars in one batched call when the
    clock's bar is the model's; otherwise (the conditional model, or another
    meter) bars come one at a time through `GanBars`, the conditional model
    continuing from the seed's last bar.
    """
    if not gen.conditional and bar_steps == gen.steps_per_bar:
        return [s for bar in gen.bars(n_bars, temperature, rng) for s in bar]
    source = GanBars(gen)
    source.reseed(seed)
    return [s for _ in range(n_bars) for s in source.next_bar(bar_steps, temperature, rng)]
