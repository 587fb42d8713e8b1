"""Per-bar GAN generators, run with ONNX Runtime (no TensorFlow here).

A GAN model writes a whole bar at once: ``steps_per_bar`` 16th steps, each a
symbol of the LSTM's vocabulary (pitch, ``r`` rest, ``_`` hold), so a bar
carries rhythm as well as pitch.  The exported ONNX graph has inputs
``z float32 [batch, latent]`` (and, for the conditional model,
``prev int32 [batch, steps]``: the bar before, as vocabulary ids).  Two heads:

* flat (the seed's): one output ``logits float32 [batch, steps, vocab]``;
  each step is sampled here, independently, at a temperature (0: argmax).
* autoregressive: a further input ``noise float32 [batch, steps, vocab]``
  and the outputs ``ids`` and ``logits``: the model draws each step after
  the ones before it, as argmax(logits + noise); `draw_noise` makes the
  noise (temperature x Gumbel noise, so the draw is exactly a sample at that
  temperature, with masked symbols set far below any logit).

`BarGenerator.draw` hides the difference.

Kinds (in the model's metadata):

* ``gan-bar``: unconditional; every bar comes from its own z.
* ``cgan-bar``: conditioned on the previous bar (the player's last bar or its
  own), so bars chain one after another.

    gen = BarGenerator.load("cgan", cfg.model)
    bar = gen.next_bar(prev_bar_symbols, temperature=0.9, rng=rng)   # 16 symbols
    many = gen.bars(64, temperature=0.9, rng=rng)                   # one batched call

`GanBars` adapts a generator to the engine's `BarSource` protocol
(`reseed`, `next_bar(n_steps, ...)`).

Choosing among the model's own bars is `gan_selection.Selection`: `jamd generate`,
`jamd eval` and the daemon (`GanBars`) all go through `BarGenerator.bar_ids`,
so they choose alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from ..tokens import DELIMITER, HOLD, REST, Vocabulary, is_pitch
from . import bar_source, model_store
from .gan_selection import Selection, continuation_cost, first_last_mean, register_of
from .runtime import make_session
from .sampling import ARGMAX_BELOW, softmax

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

    The same inverse-CDF draw as `jamd.inference.sampling.sample`, for a whole batch of
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


# A masked symbol's entry in the noise of a model that draws its own steps: far below any
# logit, so argmax(logits + noise) never takes it (float32 keeps its sum exact enough).
MASKED = -1e9


def draw_noise(shape: tuple[int, ...], temperature: float, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> np.ndarray:
    """The ``noise`` input of a model that draws its own steps (`AutoregressiveBar`):
    float32 `shape` [..., vocab] of temperature x Gumbel(0, 1), so that argmax(logits +
    noise) is a draw from softmax(logits / temperature) (0: zeros, the argmax); `mask`
    (bool, broadcast to `shape`) puts `MASKED` where a symbol is excluded."""
    if temperature < ARGMAX_BELOW:
        noise = np.zeros(shape, np.float32)
    else:
        u = rng.random(shape)
        noise = (temperature * -np.log(-np.log(np.clip(u, 1e-12, 1.0 - 1e-12)))).astype(np.float32)
    if mask is not None:
        noise[~np.broadcast_to(mask, shape)] = MASKED
    return noise


# What a model of each kind plays with unless its metadata says otherwise (chosen
# with `jamd eval` and the bar figures; docs/MODELS.md gives both with and without).
DEFAULT_SELECTION = {
    GAN_KIND: Selection(candidates=16, leap=1.0, register=1.0, motion=0.5, memory=0.9),
    CGAN_KIND: Selection(candidates=8, leap=1.0, register=1.0, motion=0.5, memory=0.0),
}


class BarGenerator:
    """One ONNX Runtime session that turns (z[, previous bar]) into bars; not thread-safe."""

    def __init__(self, session, info: model_store.ModelInfo, selection: Selection | None = None):
        self.session = session
        self.info = info
        self.vocab: Vocabulary = info.vocab
        self.kind = info.kind
        self.conditional = info.kind == CGAN_KIND
        self.steps_per_bar = int(info.raw["steps_per_bar"])
        self.latent_dim = int(info.raw["latent_dim"])
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        # the model draws its own steps (autoregressive head) when it takes noise
        self.autoregressive = "noise" in inputs
        expected = (["z", "prev"] if self.conditional else ["z"]) + (["noise"] if self.autoregressive else [])
        wanted = ["ids", "logits"] if self.autoregressive else ["logits"]
        if inputs != expected or outputs[:len(wanted)] != wanted:
            raise ModelError(f"{info.path}: not a {self.kind} model (inputs {inputs}, outputs {outputs})")
        _check_shapes(session, info, self.steps_per_bar, self.latent_dim, len(self.vocab))
        self._prev_dtype = np.int64
        if self.conditional and "int32" in session.get_inputs()[1].type:
            self._prev_dtype = np.int32
        # the delimiter never belongs inside a bar
        self._mask = np.ones(len(self.vocab), bool)
        self._mask[self.vocab.id(DELIMITER)] = False
        self._silent = self.vocab.encode(silent_bar(self.steps_per_bar))
        self._pitch = np.array([float(s) if is_pitch(s) else np.nan for s in self.vocab.symbols])
        if selection is None:
            try:
                selection = Selection.from_dict(info.raw.get("selection"), DEFAULT_SELECTION[info.kind])
            except (ModelError, TypeError) as exc:
                raise ModelError(f"{info.path}: bad selection in model metadata ({exc})") from None
        self.selection: Selection = selection
        # the last bar next_bar made and the register it leaves (Selection.memory)
        self._last: tuple[np.ndarray, float] | None = None

    @classmethod
    def load(cls, name_or_path: str, model_cfg: ModelConfig | None = None,
             selection: Selection | Mapping | None = None) -> BarGenerator:
        """The model's selection is its metadata's ``selection`` (else `DEFAULT_SELECTION`); a
        `model.gan_candidates` setting, where the configuration has one, overrides its count, and
        `selection` (a `Selection`, or a mapping of some of its fields) overrides both."""
        cfg = model_cfg or ModelConfig()
        path = model_store.resolve(name_or_path)
        info = model_store.load_info(path)
        if info.kind not in KINDS:
            raise ModelError(f"{path}: is a {info.kind} model, not a per-bar GAN model")
        gen = cls(make_session(path, cfg.providers, cfg.intra_op_threads), info)
        bar_source.tell_bar_repeat_unused(cfg, gen.name)
        candidates = getattr(cfg, "gan_candidates", None)
        if candidates is not None:
            gen.selection = replace(gen.selection, candidates=int(candidates))
        if isinstance(selection, Mapping):
            selection = Selection.from_dict(selection, gen.selection)
        if selection is not None:
            gen.selection = selection
        log.debug("%s: %d candidate bars per bar line (%s)", gen.name, gen.selection.candidates, gen.selection)
        return gen

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
    def _feeds(self, z: np.ndarray, prev_ids: np.ndarray | None) -> dict[str, np.ndarray]:
        feeds = {"z": np.asarray(z, np.float32)}
        if self.conditional:
            if prev_ids is None:
                prev_ids = np.broadcast_to(self._silent, (len(z), self.steps_per_bar))
            feeds["prev"] = np.asarray(prev_ids, self._prev_dtype)
        return feeds

    def logits(self, z: np.ndarray, prev_ids: np.ndarray | None = None, noise: np.ndarray | None = None) -> np.ndarray:
        """Raw generator output for a batch: logits [batch, steps, vocab].  For a model that draws
        its own steps, each step's logits follow the steps drawn with `noise` (None: the argmax's)."""
        feeds = self._feeds(z, prev_ids)
        if self.autoregressive:
            feeds["noise"] = (np.zeros((len(z), self.steps_per_bar, len(self.vocab)), np.float32)
                              if noise is None else np.asarray(noise, np.float32))
        return self.session.run(["logits"], feeds)[0]

    def draw(self, z: np.ndarray, prev_ids: np.ndarray | None, temperature: float, rng: np.random.Generator,
             mask: np.ndarray | None = None) -> np.ndarray:
        """Bars as ids [batch, steps] for `z` (after `prev_ids`, for the conditional model), each step
        drawn at `temperature` (0: argmax) among the symbols `mask` allows (bool [vocab] or [steps, vocab])."""
        if not self.autoregressive:
            return sample_steps(self.logits(z, prev_ids), temperature, rng, mask)
        feeds = self._feeds(z, prev_ids)
        feeds["noise"] = draw_noise((len(z), self.steps_per_bar, len(self.vocab)), temperature, rng, mask)
        return self.session.run(["ids"], feeds)[0]

    def bar_ids(self, n: int, temperature: float, rng: np.random.Generator,
                prev_ids: np.ndarray | None = None, first_note: bool = False,
                register: np.ndarray | None = None) -> np.ndarray:
        """`n` bars as ids [n, steps] from one batched call; `prev_ids` [n, steps] or [steps]
        is the bar before each (None: nothing before).  The conditional model is
        conditioned on it; with `selection.candidates` k > 1, k bars are sampled for
        each of the n (n * k rows in the one call) and the one that best continues
        its bar before is kept (`Selection`), for either kind of model; `register [n]` is
        each chain's running register (None: the bars before)."""
        k = self.selection.candidates
        z = rng.standard_normal((n * k, self.latent_dim)).astype(np.float32)
        if prev_ids is not None:
            prev_ids = np.broadcast_to(np.asarray(prev_ids), (n, self.steps_per_bar))
        cond = None
        if self.conditional and prev_ids is not None:
            cond = np.repeat(prev_ids, k, axis=0) if k > 1 else prev_ids
        mask = np.broadcast_to(self._mask, (self.steps_per_bar, len(self.vocab))).copy()
        if first_note:  # the bar must open with a struck note (an answer starts on its bar line)
            mask[0] = False
            mask[0, self.vocab.pitch_ids()] = True
        ids = self.draw(z, cond, temperature, rng, mask)
        if k == 1:
            return ids
        ids = ids.reshape(n, k, self.steps_per_bar)
        choice = continuation_cost(self._pitch, prev_ids, ids, self.selection, register).argmin(axis=1)
        return ids[np.arange(n), choice]

    def next_register(self, prev_ids: np.ndarray | None, bar_ids: np.ndarray,
                      register: np.ndarray | None = None) -> np.ndarray:
        """The register after `bar_ids [n, steps]` followed `prev_ids` in `register` (`Selection.memory`)."""
        _, _, mean = first_last_mean(self._pitch[np.asarray(bar_ids)])
        if prev_ids is None:
            return mean
        before = register_of(self._pitch, prev_ids, register)
        m = self.selection.memory
        return np.where(np.isnan(before), mean, np.where(np.isnan(mean), before, m * before + (1 - m) * mean))

    def bars(self, n: int, temperature: float, rng: np.random.Generator,
             prev: Sequence[str] | None = None) -> list[list[str]]:
        """`n` independent bars in one batch, each after `prev` (None: after nothing)."""
        prev_ids = self.encode_bar(prev) if prev is not None else None
        return [self.vocab.decode(row) for row in self.bar_ids(n, temperature, rng, prev_ids)]

    def continue_ids(self, prev_ids: np.ndarray | None, temperature: float, rng: np.random.Generator,
                     first_note: bool = False, n: int = 1, register: np.ndarray | None = None) -> np.ndarray:
        """The next bar after each of `prev_ids [n, steps]` (None: `n` bars after nothing), as ids.
        The conditional model is conditioned on it; both kinds choose by it (`Selection`)."""
        if prev_ids is not None:
            prev_ids = np.asarray(prev_ids).reshape(-1, self.steps_per_bar)
            n = len(prev_ids)
        return self.bar_ids(n, temperature, rng, prev_ids, first_note, register)

    def next_bar(self, prev: Sequence[str] | None, temperature: float, rng: np.random.Generator,
                 first_note: bool = False) -> list[str]:
        """One bar after `prev` (the bar before, or None: silence).

        When `prev` is the bar this method returned last, the chain goes on in
        its running register (`Selection.memory`); any other bar (the player's)
        starts a chain in that bar's register."""
        prev_ids = self.encode_bar(prev)[None, :] if prev is not None else None
        register = None
        if prev_ids is not None and self._last is not None and np.array_equal(prev_ids[0], self._last[0]):
            register = np.array([self._last[1]])
        ids = self.continue_ids(prev_ids, temperature, rng, first_note, register=register)
        self._last = (ids[0].copy(), float(self.next_register(prev_ids, ids, register)[0]))
        return self.vocab.decode(ids[0])

    def melody(self, n_steps: int, temperature: float, rng: np.random.Generator,
               prev: Sequence[str] | None = None) -> list[str]:
        """Exactly `n_steps` symbols, bar after bar from `prev` (None: from silence)."""
        return self.melodies(1, n_steps, temperature, rng, prev)[0]

    def melodies(self, n: int, n_steps: int, temperature: float, rng: np.random.Generator,
                 prev: Sequence[str] | None = None) -> list[list[str]]:
        """`n` melodies of `n_steps`, batched across melodies (bar k of every melody in one call)."""
        n_bars = -(-n_steps // self.steps_per_bar)
        rows: list[list[str]] = [[] for _ in range(n)]
        prev_ids = None
        if self.conditional or prev is not None:
            prev_ids = np.broadcast_to(self.encode_bar(prev), (n, self.steps_per_bar))
        register = None
        for _ in range(n_bars):
            ids = self.continue_ids(prev_ids, temperature, rng, n=n, register=register)
            register = self.next_register(prev_ids, ids, register)
            prev_ids = ids
            for row, bar in zip(rows, prev_ids, strict=True):
                row += self.vocab.decode(bar)
        return [row[:n_steps] for row in rows]


def _check_shapes(session, info: model_store.ModelInfo, steps: int, latent: int, vocab_size: int) -> None:
    """The graph's fixed dimensions must be the metadata's: z [batch, latent_dim] and
    logits [batch, steps_per_bar, vocab]; a symbolic dimension (the batch) matches anything."""
    def fits(shape, wanted) -> bool:
        return len(shape) == len(wanted) and all(not isinstance(d, int) or w is None or d == w
                                                 for d, w in zip(shape, wanted, strict=True))

    z = session.get_inputs()[0].shape
    logits = next(o.shape for o in session.get_outputs() if o.name == "logits")
    if not fits(z, (None, latent)) or not fits(logits, (None, steps, vocab_size)):
        raise ModelError(f"{info.path}: model shapes (z {z}, logits {logits}) do not match its metadata "
                         f"(latent_dim {latent}, steps_per_bar {steps}, {vocab_size} symbols)")


class GanBars:
    """The engine's `BarSource` over a `BarGenerator`.

    `reseed` keeps the last bar of what was played (the player's phrase, in
    C/Am); each `next_bar` continues from it and then from the bar it just
    made (the conditional model is conditioned on it; both kinds choose their
    bar by it, `Selection`).  A bar length other than the model's
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

    The unconditional model without a choice (`Selection.candidates` 1) makes
    all its bars in one batched call when the clock's bar is the model's;
    otherwise bars come one at a time through `GanBars`, continuing from the
    seed's last bar (each one batched call of its candidates), exactly as the
    daemon plays them.
    """
    if not gen.conditional and gen.selection.candidates == 1 and bar_steps == gen.steps_per_bar:
        return [s for bar in gen.bars(n_bars, temperature, rng) for s in bar]
    source = GanBars(gen)
    source.reseed(seed)
    return [s for _ in range(n_bars) for s in source.next_bar(bar_steps, temperature, rng)]
