"""One GAN variant's networks and training steps (`Trainer`), for `train_gan.train`.

The three phases of a run (maximum-likelihood pretraining of the
autoregressive head, the critic's warm-up, adversarial steps) and the three
objectives (the seed's GAN, WGAN with clipping or gradient penalty, and the
conditional GAN of seed 000) are described in `train_gan` and docs/MODELS.md.
Networks are built by `gan_models`; TensorFlow is imported inside.
"""

from __future__ import annotations

import os

import numpy as np

from jamd.config import GanConfig
from jamd.errors import UsageError

from .gan_data import BarSet
from .gan_models import VARIANTS, gumbel, straight_through


def limit_threads(tf) -> None:
    """Honour TensorFlow's own TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS explicitly
    (so `TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 nice -n 19 jamd train ...` keeps
    a run to one core on a shared machine); no-op once TensorFlow's runtime has started."""
    for var, setter in (("TF_NUM_INTRAOP_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
                        ("TF_NUM_INTEROP_THREADS", tf.config.threading.set_inter_op_parallelism_threads)):
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            try:
                setter(int(value))
            except RuntimeError:  # the runtime is already initialised (another Trainer in this process)
                pass


def _objective(variant: str) -> str:
    return "bce" if variant == "gan" else "wasserstein"


def generator_head(variant: str, gc: GanConfig) -> str:
    """`gan.head`, with ``auto`` resolved: the seed's flat output for ``gan``, else autoregressive."""
    if gc.head != "auto":
        return gc.head
    return "flat" if variant == "gan" else "autoregressive"


def build_networks(variant: str, gc: GanConfig, vocab_size: int, pitches=None):
    from .gan_models import build_discriminator, build_generator

    wasserstein = _objective(variant) == "wasserstein"
    noise, l2 = (gc.noise_std, gc.l2) if wasserstein else (0.0, 0.0)
    conditional = variant == "cgan"
    g = build_generator(vocab_size, gc.steps_per_bar, gc.latent_dim, gc.generator_units, noise, l2, conditional,
                        head=generator_head(variant, gc), head_units=gc.head_units)
    d = build_discriminator(vocab_size, gc.steps_per_bar, gc.lstm_units, gc.dense_units, gc.dropout, noise, l2,
                            linear=wasserstein, conditional=conditional, minibatch_std=gc.minibatch_std,
                            pitches=pitches if gc.pitch_line else None)
    return g, d


def vocab_pitches(vocab) -> list[float | None]:
    """Each symbol's MIDI pitch, None for rest, hold and delimiter (for `PitchLine`)."""
    from jamd.tokens import is_pitch

    return [float(s) if is_pitch(s) else None for s in vocab.symbols]


class Trainer:
    """The networks, their optimisers and one compiled update of each."""

    def __init__(self, variant: str, gc: GanConfig, vocab_size: int, pitches=None):
        """`pitches`: each vocabulary symbol's MIDI pitch (None: not a pitch), for the critic's
        view of the melodic line (`gan.pitch_line`); without them the critic reads symbols only."""
        import keras
        import tensorflow as tf

        if variant not in VARIANTS:
            raise UsageError(f"unknown GAN variant {variant!r} (choose from {', '.join(VARIANTS)})")
        limit_threads(tf)
        self.tf = tf
        self.variant, self.gc, self.vocab_size = variant, gc, vocab_size
        self.conditional = variant == "cgan"
        self.wasserstein = _objective(variant) == "wasserstein"
        self.generator, self.critic = build_networks(variant, gc, vocab_size, pitches)
        self.autoregressive = generator_head(variant, gc) == "autoregressive"
        # The seed's optimiser for every variant: Adam 2e-4, beta_1 0.5 (A.2, A.4);
        # beta_2 0.9 follows Gulrajani et al. for the penalty.
        # a pretrained generator is fine-tuned: at the critic's rate, 100 adversarial steps undid
        # what pretraining taught it (docs/MODELS.md)
        self.pretrain_steps = gc.pretrain_steps if self.autoregressive else 0
        self.g_opt = keras.optimizers.Adam(self._generator_rate(), beta_1=gc.beta_1, beta_2=gc.beta_2)
        self.d_opt = keras.optimizers.Adam(gc.learning_rate, beta_1=gc.beta_1, beta_2=gc.beta_2)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(step=self.step, generator=self.generator, critic=self.critic,
                                              g_opt=self.g_opt, d_opt=self.d_opt)
        # compiled graphs run several times faster per step but take a minute to build
        self.d_step = tf.function(self._d_step) if gc.compile else self._d_step
        self.g_step = tf.function(self._g_step) if gc.compile else self._g_step
        # after pretraining, the critic first learns alone against the pretrained generator,
        # so that its first gradients do not undo what the generator learnt (SeqGAN's
        # discriminator pretraining)
        self.warmup_end = self.pretrain_steps + (gc.critic_warmup if self.pretrain_steps else 0)
        if self.pretrain_steps:
            # the trunk's plan and start state, and the head, for teacher forcing
            trunk_inputs = [i for i in self.generator.inputs if i.name != "noise"]
            self.trunk = keras.Model(trunk_inputs, [self.generator.get_layer("g_plan_steps").output,
                                                    self.generator.get_layer("g_start").output])
            self.walk = self.generator.get_layer("g_walk")
            self.mle_opt = keras.optimizers.Adam(gc.pretrain_learning_rate)
            self.checkpoint.mle_opt = self.mle_opt
            self.m_step = tf.function(self._m_step) if gc.compile else self._m_step

    def _generator_rate(self) -> float:
        return self.gc.finetune_learning_rate if self.pretrain_steps else self.gc.learning_rate

    def set_rates(self) -> None:
        """The optimisers' learning rates from the settings (a checkpoint restores its own)."""
        self.g_opt.learning_rate.assign(self._generator_rate())
        self.d_opt.learning_rate.assign(self.gc.learning_rate)
        if self.pretrain_steps:
            self.mle_opt.learning_rate.assign(self.gc.pretrain_learning_rate)

    # -- pieces -----------------------------------------------------------------
    def _fake(self, z, prev, training: bool):
        """Generated bars as the critic sees them: [batch, steps, vocab]."""
        tf = self.tf
        inputs = [z, prev] if self.conditional else [z]
        if self.autoregressive:
            # the head draws each step itself (straight-through Gumbel-softmax at temperature 1)
            noise = gumbel([tf.shape(z)[0], self.gc.steps_per_bar, self.vocab_size])
            return self.generator([*inputs, noise], training=training)[0]
        logits = self.generator(inputs, training=training)
        if self.gc.critic_input == "soft":
            return tf.nn.softmax(logits, axis=-1)
        # one symbol drawn per step at temperature 1 (what the daemon plays), with the
        # gradient of its softmax relaxation
        return straight_through(logits + gumbel(tf.shape(logits)), self.vocab_size)[0]

    def _score(self, bars, prev):
        return self.critic([bars, prev] if self.conditional else bars, training=True)

    @staticmethod
    def _bce(p, target: float):
        import tensorflow as tf

        p = tf.clip_by_value(p, 1e-7, 1 - 1e-7)
        return -tf.reduce_mean(tf.math.log(p) if target == 1.0 else tf.math.log(1 - p))

    def _penalty(self, real, fake, prev):
        tf = self.tf
        eps = tf.random.uniform([tf.shape(real)[0], 1, 1])
        mixed = eps * real + (1 - eps) * fake
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            score = self._score(mixed, prev)
        grad = tape.gradient(score, mixed)
        norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2]) + 1e-12)
        return tf.reduce_mean(tf.square(norm - 1.0))

    # -- updates ------------------------------------------------------------------
    def _d_step(self, real_ids, prev, z):
        tf = self.tf
        real = tf.one_hot(real_ids, self.vocab_size)
        fake = self._fake(z, prev, training=True)
        with tf.GradientTape() as tape:
            s_real = self._score(real, prev)
            s_fake = self._score(fake, prev)
            if self.wasserstein:
                fake_score = tf.reduce_mean(s_fake)
                if self.conditional and self.gc.mismatched_pairs:
                    # Reed et al.'s matching-aware critic: a real bar after another bar's
                    # predecessor counts as fake too, so the critic must judge the pair and
                    # the generator cannot ignore its condition
                    wrong = tf.roll(prev, shift=1, axis=0)
                    fake_score = 0.5 * (fake_score + tf.reduce_mean(self._score(real, wrong)))
                distance = tf.reduce_mean(s_real) - fake_score
                loss = -distance
                if self.gc.constraint == "gp" and self.gc.gp_weight > 0:
                    loss += self.gc.gp_weight * self._penalty(real, fake, prev)
            else:
                # the seed's d_loss = 0.5 * (loss on real + loss on fake)
                loss = 0.5 * (self._bce(s_real, 1.0) + self._bce(s_fake, 0.0))
                distance = tf.reduce_mean(s_real) - tf.reduce_mean(s_fake)
            reg = tf.add_n(self.critic.losses) if self.critic.losses else 0.0
            total = loss + reg
        grads = tape.gradient(total, self.critic.trainable_variables)
        self.d_opt.apply_gradients(zip(grads, self.critic.trainable_variables, strict=True))
        if self.wasserstein and self.gc.constraint == "clip":
            c = self.gc.clip_value
            for v in self.critic.trainable_variables:
                v.assign(tf.clip_by_value(v, -c, c))
        return loss, distance

    def _g_step(self, prev, z):
        tf = self.tf
        with tf.GradientTape() as tape:
            s_fake = self._score(self._fake(z, prev, training=True), prev)
            loss = -tf.reduce_mean(s_fake) if self.wasserstein else self._bce(s_fake, 1.0)
            reg = tf.add_n(self.generator.losses) if self.generator.losses else 0.0
            total = loss + reg
        grads = tape.gradient(total, self.generator.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        return loss

    def _m_step(self, real_ids, prev, z):
        """One maximum-likelihood (teacher-forced) update of the generator on real bars."""
        tf = self.tf
        real = tf.one_hot(real_ids, self.vocab_size)
        with tf.GradientTape() as tape:
            plan, start = self.trunk([z, prev] if self.conditional else [z], training=True)
            logits = self.walk.teacher_forced(plan, start, real, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=real_ids, logits=logits))
            reg = tf.add_n(self.generator.losses) if self.generator.losses else 0.0
            total = loss + reg
        variables = self.generator.trainable_variables
        grads = tape.gradient(total, variables)
        # the noise input feeds nothing in teacher forcing: its layers get no gradient
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.mle_opt.apply_gradients(pairs)
        return loss

    def _tensors(self, *arrays: np.ndarray):
        return [self.tf.convert_to_tensor(a) for a in arrays]

    def train_step(self, bars: BarSet, rng: np.random.Generator) -> dict[str, float]:
        """One generator update after its critic updates; returns this step's losses.  During the
        first `gan.pretrain_steps` (autoregressive head) the update is a maximum-likelihood one
        instead: ``mle`` is its cross-entropy, and the critic rests (its losses are NaN); the
        `gan.critic_warmup` steps after them update the critic only (``g_loss`` NaN)."""
        gc = self.gc
        if int(self.step.numpy()) < self.pretrain_steps:
            pick = rng.integers(0, len(bars), gc.batch_size)
            z = rng.standard_normal((gc.batch_size, gc.latent_dim)).astype(np.float32)
            mle = float(self.m_step(*self._tensors(bars.bars[pick].astype(np.int32), bars.prev[pick], z)))
            self.step.assign_add(1)
            return {"d_loss": float("nan"), "g_loss": float("nan"), "distance": float("nan"), "mle": mle}
        n_critic = gc.n_critic if self.wasserstein else 1
        d_losses, distances = [], []
        for _ in range(n_critic):
            pick = rng.integers(0, len(bars), gc.batch_size)
            z = rng.standard_normal((gc.batch_size, gc.latent_dim)).astype(np.float32)
            d_loss, dist = self.d_step(*self._tensors(bars.bars[pick], bars.prev[pick], z))
            d_losses.append(float(d_loss))
            distances.append(float(dist))
        if int(self.step.numpy()) < self.warmup_end:
            self.step.assign_add(1)
            return {"d_loss": float(np.mean(d_losses)), "g_loss": float("nan"), "distance": float(np.mean(distances)),
                    "mle": float("nan")}
        pick = rng.integers(0, len(bars), gc.batch_size)
        z = rng.standard_normal((gc.batch_size, gc.latent_dim)).astype(np.float32)
        g_loss = float(self.g_step(*self._tensors(bars.prev[pick], z)))
        self.step.assign_add(1)
        return {"d_loss": float(np.mean(d_losses)), "g_loss": g_loss, "distance": float(np.mean(distances)),
                "mle": float("nan")}

    def generate_ids(self, z: np.ndarray, prev: np.ndarray, temperature: float, rng: np.random.Generator,
                     mask: np.ndarray) -> np.ndarray:
        """Bars as ids [batch, steps] from the generator in inference mode, as exported and played."""
        from jamd.inference.gan import draw_noise, sample_steps

        inputs = [z, prev] if self.conditional else [z]
        if self.autoregressive:
            noise = draw_noise((len(z), self.gc.steps_per_bar, self.vocab_size), temperature, rng, mask)
            return np.asarray(self.generator([*inputs, noise], training=False)[1])
        return sample_steps(np.asarray(self.generator(inputs, training=False)), temperature, rng, mask)


# -- monitoring and plots ---------------------------------------------------------
