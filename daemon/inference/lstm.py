"""The seed's LSTM, run one 16th-note step at a time with ONNX Runtime.

The exported model has inputs ``token``, ``h``, ``c`` and outputs ``logits``,
``h_out``, ``c_out``: one call per step, with the recurrent state held here,
instead of re-running a 64-step window as the seed's loop does.  The shapes
are read from the model: current exports take ``token [1]`` and keep the state
in the LSTM op's layout ``[1, 1, units]``; earlier ones took ``token [batch,
1]`` and ``h``/``c`` as ``[batch, units]``.  Both run, at batch 1.

Issue 16's models may stack layers (metadata ``layers``: ``h``/``c`` are then
``[layers, 1, units]``) and may read the metric position (``metric_position``):
a second input ``position [1]`` int32, the bar position (16ths after the
downbeat, modulo metadata ``positions``) of the step the logits predict.  The
generator keeps a bar grid for that (`align`, `reset`): each `feed` reads
the position of the step after the one fed.  Models without the input only
keep count; what they compute is as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from ..tokens import DELIMITER, METRIC_POSITIONS, STEPS_PER_BAR_4_4, Vocabulary
from . import model_store
from .repeat import BarRepeat, RepeatSettings
from .runtime import make_session
from .sampling import SymbolSampler, log_softmax

log = logging.getLogger(__name__)

KIND = "lstm-step"
# see `LstmGenerator.snapshot`: next logits, h, c, (bar position of the next step, 16ths per bar)
LstmState = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]


def start_positions(n: int, position: int, bar_steps: int) -> list[int]:
    """The positions fed with the `n` delimiters before a melody whose first step falls at
    `position` of a bar of `bar_steps` 16ths: the padding continues the melody's bar grid
    backwards, so the last delimiter reads `position` (the step it predicts)."""
    return [(position - n + 1 + k) % bar_steps for k in range(n)]


class LstmGenerator(SymbolSampler):
    """Autoregressive sampling with explicit state; not thread-safe."""

    def __init__(self, session, info: model_store.ModelInfo):
        self.session = session
        self.info = info
        self.vocab: Vocabulary = info.vocab
        self.units = int(info.raw["units"])
        self.layers = int(info.raw.get("layers", 1))
        self.metric_position = bool(info.raw.get("metric_position", False))
        self.positions = int(info.raw.get("positions", METRIC_POSITIONS))
        self.transpose = str(info.raw.get("transpose", "c"))  # "all-keys": plays in the player's own key
        self.start_symbols = int(info.raw.get("start_symbols", 64))
        self._delimiter = self.vocab.id(DELIMITER)
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        expected = ["token", "position", "h", "c"] if self.metric_position else ["token", "h", "c"]
        if inputs != expected or outputs[:3] != ["logits", "h_out", "c_out"]:
            what = " with the metric-position input" if self.metric_position else ""
            raise ModelError(f"{info.path}: not an LSTM step model{what} (inputs {inputs}, outputs {outputs}; "
                             f"its metadata says metric_position {str(self.metric_position).lower()})")
        named = {i.name: i for i in session.get_inputs()}
        tok_in, h_in = named["token"], named["h"]
        self._token_dtype = np.int32 if "int32" in tok_in.type else np.int64
        self._token_shape = _batch_one(tok_in.shape)
        self._state_shape = _batch_one(h_in.shape)
        self._logits_shape = _batch_one(session.get_outputs()[0].shape)
        stacked = self._state_shape[0] if len(self._state_shape) == 3 else 1
        if (self._state_shape[-1] != self.units or np.prod(self._logits_shape) != len(self.vocab)
                or stacked != self.layers):
            raise ModelError(f"{info.path}: model shapes (state {h_in.shape}) do not match its metadata "
                             f"({self.layers} layer(s) of {self.units} units, {len(self.vocab)} symbols)")
        self.bar_steps = STEPS_PER_BAR_4_4  # the bar grid: 16ths per bar ...
        self.position = 0  # ... and the bar position of the step the next logits predict
        self._starts: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._reset_state = self._start_state(0, STEPS_PER_BAR_4_4)
        self._bind()
        self.reset()

    @classmethod
    def load(cls, name_or_path: str, model_cfg: ModelConfig | None = None) -> LstmGenerator:
        cfg = model_cfg or ModelConfig()
        path = model_store.resolve(name_or_path)
        info = model_store.load_info(path)
        if info.kind != KIND:
            raise ModelError(f"{path}: is a {info.kind} model, not an LSTM step model")
        session = make_session(path, cfg.providers, cfg.intra_op_threads)
        gen = cls(session, info)
        settings = RepeatSettings.from_metadata(info.raw.get("bar_repeat"), getattr(cfg, "bar_repeat", None))
        if settings.chance > 0:
            gen.repeat = BarRepeat(settings, gen.bar_steps, excluded=(gen._delimiter,))
        return gen

    # -- state --------------------------------------------------------------
    def _run(self, token_id: int, h: np.ndarray, c: np.ndarray, position: int = 0):
        token = np.full(self._token_shape, token_id, dtype=self._token_dtype)
        feeds = {"token": token, "h": h, "c": c}
        if self.metric_position:
            feeds["position"] = np.full(self._token_shape, position % self.positions, dtype=np.int32)
        logits, h, c = self.session.run(["logits", "h_out", "c_out"], feeds)
        return logits.reshape(-1), h, c

    def _start_state(self, position: int, bar_steps: int):
        """(next logits, h, c) after the delimiters before a melody whose first step falls at `position`
        of a bar of `bar_steps`; computed once per grid and reused (one grid for models without position)."""
        key = (position, bar_steps) if self.metric_position else (0, 0)
        if key not in self._starts:
            # As in the seed's generator, melodies begin after 64 delimiters, the
            # padding that separates songs in training.
            h = np.zeros(self._state_shape, np.float32)
            c = np.zeros(self._state_shape, np.float32)
            logits = None
            for p in start_positions(self.start_symbols, position, bar_steps):
                logits, h, c = self._run(self._delimiter, h, c, p)
            self._starts[key] = (logits, h, c)
        return self._starts[key]

    def _bind(self) -> None:
        """Two IO bindings over preallocated buffers, one per direction.

        Step n reads h/c from buffer `cur` and writes them into the other;
        step n+1 uses the other binding.  Nothing is allocated or copied per
        step, which saves ~20-30 µs per call against `session.run` (the bare
        step both ways in `jamd bench --suite lstm`).
        `bind_cpu_input` wraps the NumPy buffer, so writing `_tok` in place
        is what the next run reads.  The input buffers of the last step stay
        as they were, so `align` can run that step again with another position.
        """
        self._tok = np.zeros(self._token_shape, self._token_dtype)
        self._tok_flat = self._tok.reshape(-1)  # a view: writing [0] writes the bound input
        self._pos = np.zeros(self._token_shape, np.int32)
        self._pos_flat = self._pos.reshape(-1)
        self._hbuf = [np.zeros(self._state_shape, np.float32) for _ in range(2)]
        self._cbuf = [np.zeros(self._state_shape, np.float32) for _ in range(2)]
        self._lbuf = np.zeros(self._logits_shape, np.float32)
        self._lflat = self._lbuf.reshape(-1)
        self._bindings = []
        for i in (0, 1):
            io = self.session.io_binding()
            io.bind_cpu_input("token", self._tok)
            if self.metric_position:
                io.bind_cpu_input("position", self._pos)
            io.bind_cpu_input("h", self._hbuf[i])
            io.bind_cpu_input("c", self._cbuf[i])
            for name, buf in (("logits", self._lbuf), ("h_out", self._hbuf[1 - i]), ("c_out", self._cbuf[1 - i])):
                io.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
            self._bindings.append(io)
        self._cur = 0
        self._last: int | None = None  # the token of the last step while its input buffers are intact

    def reset(self, position: int = 0, bar_steps: int | None = None) -> None:
        """Back to the start of a melody: the state after the 64 delimiters, the melody's first
        step falling at `position` of a bar of `bar_steps` 16ths (None: the grid as it is)."""
        bar = int(bar_steps or self.bar_steps)
        logits, h, c = self._start_state(position % bar, bar)
        self.restore((logits, h, c, (position % bar, bar)))
        if self.repeat is not None:
            self.repeat.forget(bar)

    def snapshot(self) -> LstmState:
        """A copy of the state now: (next logits [vocab], h, c [the model's state shape], (bar position
        of the next step, 16ths per bar)), for `restore`.

        Costs three small copies (~2 µs); what is fed after it does not change it.
        """
        return (self._logits.copy(), self._hbuf[self._cur].copy(), self._cbuf[self._cur].copy(),
                (self.position, self.bar_steps))

    def restore(self, state: LstmState) -> None:
        """Go back to a state taken by `snapshot` (copied in, so `state` can be restored again):
        the next `feed` and `next_logits` are as they were then."""
        logits, h, c, (self.position, self.bar_steps) = state
        self._logits = logits.copy()
        np.copyto(self._hbuf[self._cur], h)
        np.copyto(self._cbuf[self._cur], c)
        self._last = None

    def feed(self, symbol_id: int) -> np.ndarray:
        """Advance the state by one known symbol; returns the next logits (of the step after it,
        whose bar position the model reads when it has the metric-position input)."""
        nxt = self.position + 1
        self.position = nxt = nxt if nxt < self.bar_steps else 0
        self._tok_flat[0] = symbol_id
        if self.metric_position:
            self._pos_flat[0] = nxt % self.positions
        self.session.run_with_iobinding(self._bindings[self._cur])
        self._cur ^= 1
        self._last = symbol_id
        self._logits = self._lflat.copy()
        return self._logits

    def align(self, position: int, bar_steps: int) -> None:
        """Put the bar grid where the clock has it: the step the next logits predict falls at
        `position` of a bar of `bar_steps` 16ths.

        A model with the metric-position input is asked again: the last step is run again with
        that position (at the start of a melody, the start state for it is taken).  Without the
        input only the count changes.  After `restore` the last step cannot be run again; the
        grid moves and the logits stay (the next step reads the new grid).
        """
        bar = max(1, int(bar_steps))
        position %= bar
        if (position, bar) == (self.position, self.bar_steps):
            return
        if self.repeat is not None:  # the bar in progress no longer ends where it was counted to
            self.repeat.regrid(bar)
        if not self.metric_position:
            self.position, self.bar_steps = position, bar
        elif self._last is not None:
            self.position, self.bar_steps = position, bar
            self._cur ^= 1  # back to the last step's inputs, untouched since
            self._pos_flat[0] = position % self.positions
            self._tok_flat[0] = self._last
            self.session.run_with_iobinding(self._bindings[self._cur])
            self._cur ^= 1
            self._logits = self._lflat.copy()
        elif self._at_start():
            self.reset(position, bar)
        else:
            log.debug("bar grid moved to %d/%d after a restore; the next logits keep the old position",
                      position, bar)
            self.position, self.bar_steps = position, bar

    def _at_start(self) -> bool:
        start = self._starts.get((self.position, self.bar_steps))
        return start is not None and np.array_equal(start[1], self._hbuf[self._cur]) \
            and np.array_equal(start[2], self._cbuf[self._cur])

    def prime(self, symbols: Sequence[str]) -> None:
        """Feed a seed; with bar repetition, its whole bars may come back."""
        for s in symbols:
            self.play(self.vocab.id(s))

    def step_probabilities(self, symbol: str) -> np.ndarray:
        """Feed `symbol`; the distribution of the symbol after it."""
        return np.exp(log_softmax(self.feed(self.vocab.id(symbol))))

    @property
    def next_logits(self) -> np.ndarray:
        return self._logits


def _batch_one(shape) -> tuple[int, ...]:
    """A model input's shape with symbolic dimensions (the batch) as 1."""
    return tuple(d if isinstance(d, int) else 1 for d in shape)
