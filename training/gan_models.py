"""The three GAN variants' networks, with Keras's functional API.

The generator is the seed's (appendix A.2): Dense 256, 512 and 1024, each
followed by LeakyReLU 0.2 and BatchNorm (momentum 0.8).  Its output is
adapted so that a bar carries rhythm: instead of one tanh value per note,
the ``flat`` head (the seed's plain GAN here) is a Dense layer giving
`steps x vocab` logits, one distribution over the vocabulary (pitch, rest,
hold) per 16th step; the daemon samples each step at any temperature.
Training shows the discriminator one symbol drawn per step (or, with
``critic_input: soft``, the softmax, as Gulrajani et al. generated discrete
text with WGAN-GP).

The discriminator is the seed's too: LSTM -> bidirectional LSTM -> Dense 512
and 256 with LeakyReLU 0.2 -> dropout 0.5 -> one unit (sigmoid for the GAN,
linear for the Wasserstein critic).  The seed's extra Dense(100) labelled
"minibatch discrimination" is a plain Dense layer and is left out; real
minibatch information comes from `MinibatchStd` after the BiLSTM (a setting).

The WGAN of appendix A.4 adds Gaussian noise (sigma 0.1) after the layers of
both networks and an L2 kernel penalty (`l2`).  The conditional variant gives
the generator the previous bar (one-hot, flattened) beside z, and the
discriminator reads the previous bar and then the bar, 2 x steps long, so it
judges the pair and the step across the bar line.

The seed's flat output samples the 16 steps of a bar independently given z,
so its bars may leap wildly: nothing ties a step to the one before.  The
``autoregressive`` head (`AutoregressiveBar`, the default for ``wgan`` and
``cgan``) keeps the seed's Dense stack as a trunk that writes a per-step
plan and a start state, then a small GRU walks the bar, reading each step's
plan and the symbol it just drew, so each step follows the one before.
Drawing happens inside the network: the Gumbel-max trick (argmax of logits
plus temperature x Gumbel noise, fed in as the input ``noise``) samples
exactly as a softmax at that temperature would, the forward pass feeds the
one-hot draw back and training takes the gradient of its softmax relaxation
(straight-through Gumbel-softmax, Jang et al. 2017), so the critic sees
the sampled bars the daemon will play.  A mask rides on the same noise: a
very negative entry forbids a symbol at that step.

LSTMs are unrolled: the sequences are 16-32 steps, unrolling is faster on
the CPU, and the gradient penalty needs a gradient of a gradient through them.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from .lstm_model import OneHot

VARIANTS = ("gan", "wgan", "cgan")
HEADS = ("flat", "autoregressive")


@keras.saving.register_keras_serializable(package="jamd")
class MinibatchStd(keras.layers.Layer):
    """Appends the batch's mean feature standard deviation to every sample's features.

    Karras et al.'s minibatch standard deviation: the critic sees how varied
    the batch is, so a generator that makes the same bar again and again is
    easy to tell from real data.  It stands in for the "minibatch
    discrimination" that the seed describes (3.2.4) but its code does not
    implement.
    """

    def call(self, x):
        ops = keras.ops
        std = ops.sqrt(ops.var(x, axis=0) + 1e-8)
        feature = ops.mean(std) * ops.ones_like(x[:, :1])
        return ops.concatenate([x, feature], axis=-1)


def gumbel(shape):
    """Gumbel(0, 1) noise of `shape` (TensorFlow): argmax(logits + it) is a draw from softmax(logits)."""
    import tensorflow as tf  # training/ runs Keras on TensorFlow

    return -tf.math.log(-tf.math.log(tf.random.uniform(shape, 1e-9, 1.0)))


def straight_through(drawn, depth: int):
    """Straight-through Gumbel-softmax of `drawn` (logits + Gumbel noise) [..., depth]:
    (the one-hot argmax in the forward pass, with its softmax's gradient in the
    backward pass; the argmax ids).  Both heads feed the critic through it, so the
    critic sees one-hot draws like real bars (Jang et al. 2017)."""
    import tensorflow as tf

    # tf.argmax, not keras.ops.argmax: Keras's adds a -0.0 fix (Bitcast, BitwiseAnd)
    # that tf2onnx cannot convert, and ties at -0.0 do not arise with Gumbel noise
    idx = tf.argmax(drawn, axis=-1, output_type=tf.int64)
    soft = tf.nn.softmax(drawn, axis=-1)
    return tf.one_hot(idx, depth, dtype=drawn.dtype) + soft - tf.stop_gradient(soft), idx


@keras.saving.register_keras_serializable(package="jamd")
class AutoregressiveBar(keras.layers.Layer):
    """(plan [b, steps, d], start state [b, units], noise [b, steps, vocab]) -> (bar, ids, logits).

    A GRU cell walks the bar: step t reads its plan and the one-hot symbol
    drawn at t - 1 and gives logits; the symbol drawn is argmax(logits +
    noise_t), which with noise = temperature x Gumbel(0, 1) is a draw from
    softmax(logits / temperature) (the Gumbel-max trick) and with noise 0 the
    argmax.  ``bar`` is the one-hot draw [b, steps, vocab] (in training, its
    straight-through softmax relaxation), ``ids`` the drawn ids [b, steps] and
    ``logits`` [b, steps, vocab] each step's logits after the symbols drawn
    before it (what the export's parity check compares).
    The loop is unrolled: a bar is 12-16 steps and the export needs no
    control flow.
    """

    def __init__(self, vocab_size: int, units: int = 128, noise_std: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.units, self.noise_std, self.l2 = vocab_size, units, noise_std, l2
        reg = keras.regularizers.L2(l2) if l2 > 0 else None
        self.cell = keras.layers.GRUCell(units, kernel_regularizer=reg, name="cell")
        self.readout = keras.layers.Dense(vocab_size, kernel_regularizer=reg, name="readout")

    def build(self, plan_shape, state_shape=None, noise_shape=None):
        self.cell.build((None, plan_shape[-1] + self.vocab_size))
        self.readout.build((None, self.units))
        self.built = True

    def _step(self, plan_t, y, h, training):
        """One step of the walk: the step's logits after the symbol `y` (one-hot) and the new state."""
        out, h = self.cell(keras.ops.concatenate([plan_t, y], axis=-1), h, training=training)
        return self.readout(out), h

    def call(self, plan, state, noise, training=False):
        ops = keras.ops
        y = ops.zeros_like(noise[:, 0])
        h = [state]
        bars, ids, all_logits = [], [], []
        for t in range(plan.shape[1]):
            logits, h = self._step(plan[:, t], y, h, training)
            if training and self.noise_std > 0:  # the seed's noise injection, on the logits here
                logits = logits + self.noise_std * keras.random.normal(ops.shape(logits))
            relaxed, idx = straight_through(logits + noise[:, t], self.vocab_size)
            # inference feeds back the draw itself, exactly one-hot (hard + soft - soft is not)
            y = relaxed if training else ops.one_hot(idx, self.vocab_size, dtype=logits.dtype)
            bars.append(y)
            ids.append(idx)
            all_logits.append(logits)
        return ops.stack(bars, axis=1), ops.stack(ids, axis=1), ops.stack(all_logits, axis=1)

    def teacher_forced(self, plan, state, bar, training=False):
        """Each step's logits [b, steps, vocab] when the symbols before it are `bar`'s (one-hot
        [b, steps, vocab]) rather than drawn: the maximum-likelihood pretraining's view."""
        ops = keras.ops
        y = ops.zeros_like(bar[:, 0])
        h = [state]
        all_logits = []
        for t in range(plan.shape[1]):
            logits, h = self._step(plan[:, t], y, h, training)
            all_logits.append(logits)
            y = bar[:, t]
        return ops.stack(all_logits, axis=1)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "units": self.units,
                "noise_std": self.noise_std, "l2": self.l2}


@keras.saving.register_keras_serializable(package="jamd")
class PitchLine(keras.layers.Layer):
    """Adds two channels to a one-hot (or relaxed) bar [b, steps, vocab]: the
    struck pitch and the interval from the note struck before (both in octaves,
    0 where no note is struck).

    The critic sees symbols one-hot, in which 60 is as far from 62 as from 84:
    to tell a tune's stepwise line from random leaps it would first have to
    learn where every pitch lies.  A 64-unit LSTM critic never did (the first
    WGANs' bars kept the leaps of independent draws), so the line is spelled
    out for it.  Both channels are linear in the symbols (the sounding pitch is
    carried over holds and rests), so the generator's straight-through
    gradients pass through them.
    """

    def __init__(self, pitches: Sequence[float | None], **kwargs):
        super().__init__(**kwargs)
        self.pitches = [None if p is None else float(p) for p in pitches]

    def call(self, bar):
        ops = keras.ops
        known = [p for p in self.pitches if p is not None]
        centre = 0.5 * (min(known) + max(known))
        value = ops.convert_to_tensor([[0.0 if p is None else (p - centre) / 12.0 for p in self.pitches]])
        struck = ops.convert_to_tensor([[0.0 if p is None else 1.0 for p in self.pitches]])
        pitch = ops.sum(bar * value, axis=-1)  # [b, steps]
        is_note = ops.sum(bar * struck, axis=-1)
        sounding = ops.zeros_like(pitch[:, 0])
        seen = ops.zeros_like(pitch[:, 0])
        intervals = []
        for t in range(bar.shape[1]):
            intervals.append(is_note[:, t] * seen * (pitch[:, t] - sounding))
            sounding = pitch[:, t] + (1.0 - is_note[:, t]) * sounding
            seen = ops.maximum(seen, is_note[:, t])
        line = ops.stack([pitch, ops.stack(intervals, axis=1)], axis=-1)
        return ops.concatenate([bar, line], axis=-1)

    def get_config(self):
        return {**super().get_config(), "pitches": self.pitches}


def _dense(units: int, l2: float, name: str) -> keras.layers.Dense:
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    return keras.layers.Dense(units, kernel_regularizer=reg, name=name)


def _noise(x, std: float, name: str):
    return keras.layers.GaussianNoise(std, name=name)(x) if std > 0 else x


def build_generator(vocab_size: int, steps: int, latent_dim: int, units: Sequence[int] = (256, 512, 1024),
                    noise_std: float = 0.0, l2: float = 0.0, conditional: bool = False,
                    head: str = "flat", head_units: int = 128, plan_dim: int = 64) -> keras.Model:
    """Flat head: (z [, prev ids]) -> logits [batch, steps, vocab].
    Autoregressive head: (z [, prev ids], noise [batch, steps, vocab]) -> (bar one-hot, ids, logits)."""
    if head not in HEADS:
        raise ValueError(f"unknown generator head {head!r} (choose from {', '.join(HEADS)})")
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    x = z
    if conditional:
        prev = keras.Input(shape=(steps,), dtype="int32", name="prev")
        inputs.append(prev)
        flat = keras.layers.Flatten(name="prev_flat")(OneHot(vocab_size, name="prev_one_hot")(prev))
        x = keras.layers.Concatenate(name="z_prev")([z, flat])
    for i, u in enumerate(units):
        x = _dense(u, l2, f"g_dense{i}")(x)
        x = _noise(x, noise_std, f"g_noise{i}")
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"g_lrelu{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.8, name=f"g_bn{i}")(x)
    if head == "autoregressive":
        noise = keras.Input(shape=(steps, vocab_size), name="noise")
        inputs.append(noise)
        plan = _dense(steps * plan_dim, l2, "g_plan")(x)
        plan = _noise(plan, noise_std, "g_noise_plan")
        plan = keras.layers.Reshape((steps, plan_dim), name="g_plan_steps")(plan)
        start = keras.layers.Dense(head_units, activation="tanh", name="g_start")(x)
        bar, ids, logits = AutoregressiveBar(vocab_size, head_units, noise_std, l2, name="g_walk")(plan, start, noise)
        return keras.Model(inputs, [bar, ids, logits], name="generator")
    x = _dense(steps * vocab_size, l2, "g_out")(x)
    x = _noise(x, noise_std, "g_noise_out")
    logits = keras.layers.Reshape((steps, vocab_size), name="logits")(x)
    return keras.Model(inputs, logits, name="generator")


def build_discriminator(vocab_size: int, steps: int, lstm_units: int = 512, dense_units: Sequence[int] = (512, 256),
                        dropout: float = 0.5, noise_std: float = 0.0, l2: float = 0.0, linear: bool = False,
                        conditional: bool = False, minibatch_std: bool = False,
                        pitches: Sequence[float | None] | None = None) -> keras.Model:
    """(bar [batch, steps, vocab] probabilities [, prev ids]) -> score [batch, 1].
    `pitches` (each symbol's MIDI pitch, None for rest/hold/delimiter): the critic also reads
    the melodic line (`PitchLine`)."""
    bar = keras.Input(shape=(steps, vocab_size), name="bar")
    inputs = [bar]
    x = bar
    if conditional:
        prev = keras.Input(shape=(steps,), dtype="int32", name="prev")
        inputs.append(prev)
        x = keras.layers.Concatenate(axis=1, name="prev_then_bar")([OneHot(vocab_size, name="prev_one_hot")(prev), bar])
    if pitches is not None:
        x = PitchLine(pitches, name="d_pitch_line")(x)
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    x = keras.layers.LSTM(lstm_units, return_sequences=True, unroll=True, kernel_regularizer=reg, name="d_lstm")(x)
    x = _noise(x, noise_std, "d_noise_lstm")
    x = keras.layers.Bidirectional(
        keras.layers.LSTM(lstm_units, unroll=True, kernel_regularizer=reg), name="d_bilstm")(x)
    x = _noise(x, noise_std, "d_noise_bilstm")
    if minibatch_std:
        x = MinibatchStd(name="d_minibatch_std")(x)
    for i, u in enumerate(dense_units):
        x = _dense(u, l2, f"d_dense{i}")(x)
        x = _noise(x, noise_std, f"d_noise{i}")
        x = keras.layers.LeakyReLU(negative_slope=0.2, name=f"d_lrelu{i}")(x)
    x = keras.layers.Dropout(dropout, name="d_dropout")(x)
    score = keras.layers.Dense(1, activation=None if linear else "sigmoid", name="score")(x)
    return keras.Model(inputs, score, name="critic" if linear else "discriminator")
