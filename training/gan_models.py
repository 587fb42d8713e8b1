"""The three GAN variants' networks, with Keras's functional API.

The generator is the seed's (appendix A.2): Dense 256, 512 and 1024, each
followed by LeakyReLU 0.2 and BatchNorm (momentum 0.8).  Its output is
adapted so that a bar carries rhythm: instead of one tanh value per note,
a Dense layer gives `steps x vocab` logits, reshaped to one distribution over
the vocabulary (pitch, rest, hold) per 16th step.  Training feeds the
discriminator the softmax of those logits while real bars are one-hot, as
Gulrajani et al. generated discrete text with WGAN-GP; the exported model
outputs the logits, so the daemon samples each step at any temperature.

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

LSTMs are unrolled: the sequences are 16-32 steps, unrolling is faster on
the CPU, and the gradient penalty needs a gradient of a gradient through them.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from .lstm_model import OneHot

VARIANTS = ("gan", "wgan", "cgan")


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


def _dense(units: int, l2: float, name: str) -> keras.layers.Dense:
    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    return keras.layers.Dense(units, kernel_regularizer=reg, name=name)


def _noise(x, std: float, name: str):
    return keras.layers.GaussianNoise(std, name=name)(x) if std > 0 else x


def build_generator(vocab_size: int, steps: int, latent_dim: int, units: Sequence[int] = (256, 512, 1024),
                    noise_std: float = 0.0, l2: float = 0.0, conditional: bool = False) -> keras.Model:
    """(z [, prev ids]) -> logits [batch, steps, vocab]."""
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
    x = _dense(steps * vocab_size, l2, "g_out")(x)
    x = _noise(x, noise_std, "g_noise_out")
    logits = keras.layers.Reshape((steps, vocab_size), name="logits")(x)
    return keras.Model(inputs, logits, name="generator")


def build_discriminator(vocab_size: int, steps: int, lstm_units: int = 512, dense_units: Sequence[int] = (512, 256),
                        dropout: float = 0.5, noise_std: float = 0.0, l2: float = 0.0, linear: bool = False,
                        conditional: bool = False, minibatch_std: bool = False) -> keras.Model:
    """(bar [batch, steps, vocab] probabilities [, prev ids]) -> score [batch, 1]."""
    bar = keras.Input(shape=(steps, vocab_size), name="bar")
    inputs = [bar]
    x = bar
    if conditional:
        prev = keras.Input(shape=(steps,), dtype="int32", name="prev")
        inputs.append(prev)
        x = keras.layers.Concatenate(axis=1, name="prev_then_bar")([OneHot(vocab_size, name="prev_one_hot")(prev), bar])
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
