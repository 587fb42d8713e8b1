"""The seed's LSTM, run one 16th-note step at a time with ONNX Runtime.

The exported model has inputs ``token``, ``h``, ``c`` and outputs ``logits``,
``h_out``, ``c_out``: one call per step, with the recurrent state held here,
instead of re-running a 64-step window as the seed's loop does.  The shapes
are read from the model: current exports take ``token [1]`` and keep the state
in the LSTM op's layout ``[1, 1, units]``; earlier ones took ``token [batch,
1]`` and ``h``/``c`` as ``[batch, units]``.  Both run, at batch 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from ..tokens import DELIMITER, Vocabulary
from . import model_store
from .runtime import make_session
from .sampling import SymbolSampler, log_softmax

log = logging.getLogger(__name__)

KIND = "lstm-step"
LstmState = tuple[np.ndarray, np.ndarray, np.ndarray]  # next logits, h, c: see `LstmGenerator.snapshot`


class LstmGenerator(SymbolSampler):
    """Autoregressive sampling with explicit state; not thread-safe."""

    def __init__(self, session, info: model_store.ModelInfo):
        self.session = session
        self.info = info
        self.vocab: Vocabulary = info.vocab
        self.units = int(info.raw["units"])
        self.start_symbols = int(info.raw.get("start_symbols", 64))
        self._delimiter = self.vocab.id(DELIMITER)
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != ["token", "h", "c"] or outputs[:3] != ["logits", "h_out", "c_out"]:
            raise ModelError(f"{info.path}: not an LSTM step model (inputs {inputs}, outputs {outputs})")
        tok_in, h_in = session.get_inputs()[:2]
        self._token_dtype = np.int32 if "int32" in tok_in.type else np.int64
        self._token_shape = _batch_one(tok_in.shape)
        self._state_shape = _batch_one(h_in.shape)
        self._logits_shape = _batch_one(session.get_outputs()[0].shape)
        if self._state_shape[-1] != self.units or np.prod(self._logits_shape) != len(self.vocab):
            raise ModelError(f"{info.path}: model shapes (state {h_in.shape}) do not match its metadata "
                             f"({self.units} units, {len(self.vocab)} symbols)")
        self._reset_state = self._start_state()
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
        return cls(session, info)

    # -- state --------------------------------------------------------------
    def _run(self, token_id: int, h: np.ndarray, c: np.ndarray):
        token = np.full(self._token_shape, token_id, dtype=self._token_dtype)
        logits, h, c = self.session.run(["logits", "h_out", "c_out"], {"token": token, "h": h, "c": c})
        return logits.reshape(-1), h, c

    def _start_state(self):
        # As in the seed's generator, melodies begin after 64 delimiters, the
        # padding that separates songs in training; computed once and reused.
        h = np.zeros(self._state_shape, np.float32)
        c = np.zeros(self._state_shape, np.float32)
        logits = None
        for _ in range(self.start_symbols):
            logits, h, c = self._run(self._delimiter, h, c)
        return logits, h, c

    def _bind(self) -> None:
        """Two IO bindings over preallocated buffers, one per direction.

        Step n reads h/c from buffer `cur` and writes them into the other;
        step n+1 uses the other binding.  Nothing is allocated or copied per
        step, which saves ~20-30 µs per call against `session.run` (the bare
        step both ways in `jamd bench --suite lstm`).
        `bind_cpu_input` wraps the NumPy buffer, so writing `_tok` in place
        is what the next run reads.
        """
        self._tok = np.zeros(self._token_shape, self._token_dtype)
        self._tok_flat = self._tok.reshape(-1)  # a view: writing [0] writes the bound input
        self._hbuf = [np.zeros(self._state_shape, np.float32) for _ in range(2)]
        self._cbuf = [np.zeros(self._state_shape, np.float32) for _ in range(2)]
        self._lbuf = np.zeros(self._logits_shape, np.float32)
        self._lflat = self._lbuf.reshape(-1)
        self._bindings = []
        for i in (0, 1):
            io = self.session.io_binding()
            io.bind_cpu_input("token", self._tok)
            io.bind_cpu_input("h", self._hbuf[i])
            io.bind_cpu_input("c", self._cbuf[i])
            for name, buf in (("logits", self._lbuf), ("h_out", self._hbuf[1 - i]), ("c_out", self._cbuf[1 - i])):
                io.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
            self._bindings.append(io)
        self._cur = 0

    def reset(self) -> None:
        """Back to the start of a melody: the state after the 64 delimiters."""
        self.restore(self._reset_state)

    def snapshot(self) -> LstmState:
        """A copy of the state now: (next logits [vocab], h, c [the model's state shape]), for `restore`.

        Costs three small copies (~2 µs); what is fed after it does not change it.
        """
        return self._logits.copy(), self._hbuf[self._cur].copy(), self._cbuf[self._cur].copy()

    def restore(self, state: LstmState) -> None:
        """Go back to a state taken by `snapshot` (copied in, so `state` can be restored again):
        the next `feed` and `next_logits` are as they were then."""
        logits, h, c = state
        self._logits = logits.copy()
        np.copyto(self._hbuf[self._cur], h)
        np.copyto(self._cbuf[self._cur], c)

    def feed(self, symbol_id: int) -> np.ndarray:
        """Advance the state by one known symbol; returns the next logits."""
        self._tok_flat[0] = symbol_id
        self.session.run_with_iobinding(self._bindings[self._cur])
        self._cur ^= 1
        self._logits = self._lflat.copy()
        return self._logits

    def prime(self, symbols: Sequence[str]) -> None:
        for s in symbols:
            self.feed(self.vocab.id(s))

    def step_probabilities(self, symbol: str) -> np.ndarray:
        """Feed `symbol`; the distribution of the symbol after it."""
        return np.exp(log_softmax(self.feed(self.vocab.id(symbol))))

    @property
    def next_logits(self) -> np.ndarray:
        return self._logits


def _batch_one(shape) -> tuple[int, ...]:
    """A model input's shape with symbolic dimensions (the batch) as 1."""
    return tuple(d if isinstance(d, int) else 1 for d in shape)
