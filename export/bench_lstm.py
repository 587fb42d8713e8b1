"""`jamd bench --suite lstm`: the step model against the seed's loop, in one run.

Per-step latency at batch 1 on the CPU, measured side by side:

* **step**: the shipped single-step ONNX model with explicit state;
* **(a) seed loop**: Keras ``predict`` on a one-hot 64-step window each step,
  as the seed's ``MelodyGenerator`` does (appendix A.1.3), timed two ways:
  ``predict(verbose=0)`` alone (the model call), and the seed's whole loop
  step as written (``to_categorical``, ``predict`` with its default progress
  line, here written to /dev/null, its temperature sampling and its reverse
  symbol lookup);
* **(b) window ONNX**: the same 64-step window model exported to ONNX and
  re-run every step;
* **(c) identity ONNX**: a model that copies its inputs (the step model's
  names, types and shapes), the floor of ONNX Runtime's call overhead; the
  bare step and (c) are timed both with ``session.run`` and over IO bindings;
* **arith**: one LSTM step plus the output layer in NumPy, the model's own
  arithmetic.

And training time per epoch over the corpus: targets at every step against the
seed's one target per window.  The seed's epoch is too long to run whole on a
2-core machine, so a fixed number of its batches is timed and scaled to the
full epoch; the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from jamd.bench.timing import stats, timeit_us
from jamd.config import Config


def _identity_model(path: Path, inputs: list[tuple[str, str, list[int]]]) -> None:
    """A model that copies its inputs: same names, types and shapes as the step model's."""
    import onnx
    from onnx import TensorProto, helper

    def dtype(ort_type: str) -> int:
        return TensorProto.INT32 if "int32" in ort_type else TensorProto.INT64 if "int64" in ort_type \
            else TensorProto.FLOAT

    ins = [helper.make_tensor_value_info(n, dtype(t), s) for n, t, s in inputs]
    outs = [helper.make_tensor_value_info(f"{n}_out", dtype(t), s) for n, t, s in inputs]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"]) for n, _, _ in inputs]
    graph = helper.make_graph(nodes, "identity", ins, outs)
    # IR version 9 keeps the file loadable by older ONNX Runtime releases too
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))


def _bound(session, feeds: dict[str, np.ndarray]):
    """session.run over IO bindings to preallocated outputs, as the daemon calls its model."""
    io = session.io_binding()
    keep = []
    for name, value in feeds.items():
        io.bind_cpu_input(name, value)
    for o in session.get_outputs():
        dt = np.int32 if "int32" in o.type else np.int64 if "int64" in o.type else np.float32
        buf = np.zeros([d if isinstance(d, int) else 1 for d in o.shape], dt)
        keep.append(buf)
        io.bind_output(o.name, "cpu", 0, dt, list(buf.shape), buf.ctypes.data)
    return lambda: (session.run_with_iobinding(io), keep)


def _interleaved(fns: dict[str, Any], n: int, turns: int = 10) -> dict[str, dict[str, float]]:
    """`n` timed calls of each function, taken in `turns` rounds that go through all of them."""
    times: dict[str, list[np.ndarray]] = {k: [] for k in fns}
    per_turn = max(1, n // turns)
    for _ in range(turns):
        for k, fn in fns.items():
            times[k].append(timeit_us(fn, per_turn))
    return {k: stats(np.concatenate(v)) for k, v in times.items()}


def _seed_window_model(vocab_size: int, units: int):
    """The seed's model (A.1.2): one-hot window in, one softmax out."""
    import keras

    inp = keras.Input(shape=(None, vocab_size), name="onehot")
    x = keras.layers.LSTM(units, name="lstm")(inp)
    x = keras.layers.Dropout(0.2)(x)
    out = keras.layers.Dense(vocab_size, activation="softmax", name="output")(x)
    return keras.Model(inp, out)


def _seed_loop_step(model, vocab: list[str], temperature: float = 0.9):
    """One pass of the seed's generation loop (A.1.3) as written, on a 64-step seed.

    Only the model differs (the same architecture, untrained: the cost is the
    same).  ``predict`` keeps Keras's default verbosity, as in the seed: it
    prints a progress line per call, which goes to /dev/null here, the
    cheapest place a terminal-less run could send it.
    """
    import keras

    mappings = {symbol: i for i, symbol in enumerate(vocab)}
    rng = np.random.default_rng(0)
    seed = list(rng.integers(0, len(vocab), 64))
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the closure

    def sample_with_temperature(probabilities):
        predictions = np.log(probabilities) / temperature
        probabilities = np.exp(predictions) / np.sum(np.exp(predictions))
        choices = range(len(probabilities))
        return np.random.choice(choices, p=probabilities)

    def step():
        nonlocal seed
        seed = seed[-64:]
        onehot_seed = keras.utils.to_categorical(seed, num_classes=len(mappings))
        onehot_seed = onehot_seed[np.newaxis, ...]
        with contextlib.redirect_stdout(devnull):
            probabilities = model.predict(onehot_seed)[0]
        output_int = sample_with_temperature(probabilities)
        seed.append(output_int)
        return [k for k, v in mappings.items() if v == output_int][0]
    return step


def _lstm_arith(vocab_size: int, units: int):
    """One LSTM step and the output layer in NumPy, with as few calls as it takes.

    NumPy pays ~1 µs per call, so this is an upper bound on the arithmetic;
    the FLOP count is in the figures as well.
    """
    rng = np.random.default_rng(0)
    W = rng.normal(size=(vocab_size, 4 * units)).astype(np.float32)
    U = (rng.normal(size=(units, 4 * units)) * 0.01).astype(np.float32)
    D = rng.normal(size=(units, vocab_size)).astype(np.float32)
    h = np.zeros(units, np.float32)
    c = np.zeros(units, np.float32)
    z = np.empty(4 * units, np.float32)

    def step():
        np.dot(h, U, out=z)
        np.add(z, W[3], out=z)  # one-hot input: a row of the input kernel
        s = 0.5 * np.tanh(0.5 * z[: 3 * units]) + 0.5  # input, forget, output gates
        c2 = s[units : 2 * units] * c + s[:units] * np.tanh(z[3 * units :])
        return (s[2 * units :] * np.tanh(c2)) @ D
    return step


def run(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging

    import onnxruntime as ort

    from jamd.inference.lstm import LstmGenerator
    from jamd.inference.runtime import make_session
    from jamd.inference.sampling import sample

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    n = 200 if args.quick else args.steps
    n_seed = 20 if args.quick else 100
    gen = LstmGenerator.load(cfg.model.name, cfg.model)
    V, U = len(gen.vocab), gen.units
    figures: dict[str, Any] = {"model": str(gen.info.path), "vocab": V, "units": U,
                               "onnxruntime": ort.__version__, "cpu_threads": cfg.model.intra_op_threads}

    rng = np.random.default_rng(0)
    logits = gen.next_logits.copy()
    shapes = [(i.name, i.type, [d if isinstance(d, int) else 1 for d in i.shape]) for i in gen.session.get_inputs()]
    feeds = {name: np.full(shape, 3, np.int32) if "int32" in t else np.zeros(shape, np.float32)
             for name, t, shape in shapes}
    figures["model_io"] = {name: shape for name, _, shape in shapes}

    with tempfile.TemporaryDirectory() as tmp:
        ident = Path(tmp) / "identity.onnx"
        _identity_model(ident, shapes)
        s_id = make_session(ident, "cpu", cfg.model.intra_op_threads)
        # the per-step variants in turns of n/10 calls each, so that a change
        # in the machine's load hits all of them alike (their ratios are the figures)
        figures.update(_interleaved({
            "step": lambda: gen.next_symbol(0.9, rng),
            "sample": lambda: sample(logits, 0.9, rng),
            "step_feed": lambda: gen.feed(3),
            "step_raw_run": lambda: gen.session.run(None, feeds),
            "step_raw_bound": _bound(gen.session, feeds),
            "identity": lambda: s_id.run(None, feeds),
            "identity_bound": _bound(s_id, feeds),
            "arith": _lstm_arith(V, U),
        }, n))
        figures["flops_per_step"] = 2 * (U * 4 * U + U * V)  # recurrent matvec + output layer

        import tensorflow as tf
        import tf2onnx

        seed_model = _seed_window_model(V, U)
        window = np.eye(V, dtype=np.float32)[rng.integers(0, V, 64)][None]
        # both readings of (a) in turns, like the step variants, so their ratio holds
        figures.update(_interleaved({
            "seed_keras_predict": lambda: seed_model.predict(window, verbose=0),
            "seed_loop_as_written": _seed_loop_step(seed_model, list(gen.vocab.symbols)),
        }, n_seed, turns=5))
        spec = (tf.TensorSpec((None, 64, V), tf.float32, name="onehot"),)
        proto, _ = tf2onnx.convert.from_keras(seed_model, input_signature=spec, opset=17)
        win_path = Path(tmp) / "window.onnx"
        win_path.write_bytes(proto.SerializeToString())
        s_win = make_session(win_path, "cpu", cfg.model.intra_op_threads)
        in_name = s_win.get_inputs()[0].name
        figures["window_onnx"] = stats(timeit_us(lambda: s_win.run(None, {in_name: window}), n))

        figures["training"] = _epoch_times(cfg, V, U, quick=args.quick)

    step = figures["step"]["median_us"]
    floor = figures["identity"]["median_us"] + figures["arith"]["median_us"]
    # like for like: the model call against the model call, and the loop step
    # against the loop step; the strictest mix (jamd's whole step against
    # Keras's bare call) is kept as well
    figures["speedup_vs_seed_loop"] = figures["seed_keras_predict"]["median_us"] / step
    figures["speedup_call_vs_call"] = figures["seed_keras_predict"]["median_us"] / figures["step_feed"]["median_us"]
    figures["speedup_loop_vs_loop"] = figures["seed_loop_as_written"]["median_us"] / step
    figures["speedup_vs_window_onnx"] = figures["window_onnx"]["median_us"] / step
    figures["step_over_floor"] = figures["step_raw_run"]["median_us"] / floor
    figures["step_over_floor_bound"] = figures["step_raw_bound"]["median_us"] / (
        figures["identity_bound"]["median_us"] + figures["arith"]["median_us"])
    _print_table(figures)
    return figures


def _epoch_times(cfg: Config, V: int, U: int, quick: bool) -> dict[str, Any]:
    """Seconds per epoch over the corpus: ours vs the seed's one target per window."""
    from jamd.training.corpus import load_corpus
    from jamd.training.lstm_model import build_training_model
    from jamd.training.train_lstm import windows

    corpus = load_corpus(cfg.corpus, progress=False, input_channels=cfg.live.input_channels)
    train_idx, _ = corpus.split()
    L, B = cfg.training.sequence_length, cfg.training.batch_size
    stream = corpus.stream(train_idx, L).astype(np.int32)
    tokens = len(stream)
    ours = build_training_model(len(corpus.vocab), U, cfg.training.dropout, cfg.training.learning_rate)
    x, y = windows(stream, L)
    batches = 5 if quick else len(x) // B
    ours.fit(x[:B], y[:B], batch_size=B, epochs=1, verbose=0)  # build and trace outside the timing
    t0 = time.perf_counter()
    ours.fit(x[: batches * B], y[: batches * B], batch_size=B, epochs=1, verbose=0)
    ours_s = (time.perf_counter() - t0) * (len(x) // B) / batches

    seed = _seed_window_model(len(corpus.vocab), U)
    seed.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    n_windows = tokens - L
    seed_batches = 3 if quick else 30
    idx = np.arange(seed_batches * B)[:, None] + np.arange(L)[None, :]
    sx = np.eye(len(corpus.vocab), dtype=np.float32)[stream[idx]]
    sy = stream[idx[:, -1] + 1]
    seed.fit(sx[:B], sy[:B], batch_size=B, epochs=1, verbose=0)
    t0 = time.perf_counter()
    seed.fit(sx, sy, batch_size=B, epochs=1, verbose=0)
    per_batch = (time.perf_counter() - t0) / seed_batches
    seed_s = per_batch * n_windows / B
    return {"tokens": tokens, "ours_epoch_s": ours_s, "ours_batches_timed": batches,
            "seed_epoch_s_extrapolated": seed_s, "seed_batches_timed": seed_batches,
            "seed_windows_per_epoch": n_windows, "ratio": seed_s / ours_s}


def _print_table(f: dict[str, Any]) -> None:
    def row(name, key):
        s = f[key]
        return f"| {name} | {s['median_us']:.1f} | {s['p99_us']:.1f} | {s['n']} |"

    print(f"\nLSTM step latency, batch 1, CPU, {f['cpu_threads']} intra-op thread "
          f"(vocab {f['vocab']}, {f['units']} units, onnxruntime {f['onnxruntime']})\n")
    print("| variant | median µs | p99 µs | calls |\n|---|---|---|---|")
    print(row("step model, sample + feed back (jamd)", "step"))
    print(row("  of which: sampling alone", "sample"))
    print(row("  of which: feed (IO-bound run + logits copy)", "step_feed"))
    print(row("step model, bare session.run", "step_raw_run"))
    print(row("step model, bare run over IO bindings", "step_raw_bound"))
    print(row("(a) seed loop: Keras predict on a 64-step one-hot window", "seed_keras_predict"))
    print(row("(a) seed loop step as written (one-hot, predict, sampling, lookup)", "seed_loop_as_written"))
    print(row("(b) 64-step window model in ONNX Runtime", "window_onnx"))
    print(row("(c) identity ONNX model (call overhead)", "identity"))
    print(row("(c) identity ONNX model over IO bindings", "identity_bound"))
    print(row("LSTM step + output layer in NumPy (arithmetic)", "arith"))
    print(f"\nspeed-up vs (a): model call vs model call (feed vs predict) {f['speedup_call_vs_call']:.0f}x; "
          f"loop step vs loop step as written {f['speedup_loop_vs_loop']:.0f}x; "
          f"jamd's whole step vs predict alone {f['speedup_vs_seed_loop']:.0f}x")
    print(f"speed-up vs (b): {f['speedup_vs_window_onnx']:.1f}x; "
          f"bare step / ((c) + arithmetic): {f['step_over_floor']:.2f} "
          f"(over IO bindings: {f['step_over_floor_bound']:.2f})")
    t = f["training"]
    print(f"\ntraining, {t['tokens']} tokens per epoch: targets at every step {t['ours_epoch_s']:.1f} s/epoch "
          f"({t['ours_batches_timed']} batches timed); the seed's one target per window "
          f"{t['seed_epoch_s_extrapolated']:.0f} s/epoch (extrapolated from {t['seed_batches_timed']} batches "
          f"to {t['seed_windows_per_epoch']} windows); ratio {t['ratio']:.0f}x")
