"""Training the GAN variants on corpus bars: resumable, logged every step, watched for mode collapse.

One variant per call (`jamd train --model gan|wgan|cgan`):

* ``gan``: the seed's GAN (A.2): binary cross-entropy, one discriminator
  update per generator update, no noise, no L2, as in the seed.
* ``wgan``: the seed's WGAN (3.3, A.4): a linear critic and the Wasserstein
  loss, Gaussian noise (`gan.noise_std`) after the layers of both networks,
  L2 kernel penalty `gan.l2`, `gan.n_critic` critic updates per generator
  update, and either weight clipping at `gan.clip_value` (the seed's Table
  3.1) or Gulrajani et al.'s gradient penalty (`gan.constraint`).
* ``cgan``: the conditional GAN (seed 000): generator and critic also get the
  previous bar; trained with the ``wgan`` objective and its settings, and
  (`gan.mismatched_pairs`) real bars after a wrong previous bar count as fake.

With the autoregressive head (`gan.head`, the default for ``wgan`` and
``cgan``), the first `gan.pretrain_steps` steps train the generator by
maximum likelihood on real bars instead (teacher forcing: each step's
cross-entropy given the real steps before it), as SeqGAN and RelGAN
pretrain theirs, so that the adversarial steps start from a generator whose
lines already move like tunes; the critic rests meanwhile, and only
generators from the adversarial steps are kept (the pretrained one is saved
as ``pretrained_generator.keras`` for comparison).

Batches are drawn with replacement from the training tunes' bars, as in the
seed.  Every step's losses go to ``losses.csv`` and the progress bar.  Every
`gan.monitor_every` steps the generator (inference mode, as exported) makes
`gan.monitor_bars` bars from fixed z, decoded by argmax and by sampling at
temperature 1, and their pitch standard deviation and share of distinct bars
are compared with `gan.monitor_bars` random real bars (`gan_data`); the
generator with the best `score` is kept as ``best_generator.keras``, since
a GAN's losses do not measure its output.

The run folder holds ``ckpt/`` (both networks and both optimisers, every
`gan.checkpoint_every` steps), ``state.json`` (step, history, monitor
figures), ``losses.csv`` and ``loss.png``.  Running the same command again
resumes from the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config, GanConfig
from jamd.errors import DataError, UsageError

from .gan_data import BarSet, collapse_figures, extract_bars, join_figures, plain, reference_figures
from .gan_models import VARIANTS, gumbel, straight_through

log = logging.getLogger(__name__)


def _objective(variant: str) -> str:
    return "bce" if variant == "gan" else "wasserstein"


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

def monitor(trainer: Trainer, z: np.ndarray, prev: np.ndarray, vocab, reference: dict) -> dict[str, Any]:
    """Mode-collapse figures of the generator as exported: argmax and temperature-1 decoding.

    For the conditional model, how its bars follow the previous bars is scored
    too (`join_figures` against the real pairs'), since a conditional generator
    that ignores its condition can still score well on bars alone.
    """
    mask = np.ones(len(vocab), bool)
    mask[vocab.id("/")] = False
    out = {}
    for label, temperature in (("argmax", 0.0), ("sampled", 1.0)):
        ids = trainer.generate_ids(z, prev, temperature, np.random.default_rng(1), mask)
        out[label] = plain(collapse_figures(ids, vocab, reference))
        if trainer.conditional:
            join = join_figures(prev, ids, vocab)
            ref = reference["join"]
            out[label]["join"] = join
            out[label]["score"] += (abs(join["register_correlation"] - ref["register_correlation"])
                                    + abs(join["leap"] - ref["leap"]) / 12)
    # with sampled critic input the model is the per-step distribution at temperature 1,
    # and that is what is scored; soft input trains towards its argmax as well
    sampled_only = trainer.autoregressive or trainer.gc.critic_input == "sampled"
    out["score"] = out["sampled"]["score"] if sampled_only else 0.5 * (out["argmax"]["score"] + out["sampled"]["score"])
    return out


def plot_history(state: dict, path: Path, variant: str, reference: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = state["history"]
    steps = np.arange(1, len(h["d_loss"]) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))

    def smooth(v: np.ndarray) -> np.ndarray:
        # trailing mean over ~1% of the run: no edge effects at either end
        k = max(1, len(v) // 100)
        c = np.concatenate([[0.0], np.cumsum(v)])
        i = np.arange(1, len(v) + 1)
        lo = np.maximum(0, i - k)
        return (c[i] - c[lo]) / (i - lo)

    def curve(key: str, color: str, label: str, raw: bool = True) -> None:
        # each loss over the steps that have it (pretraining steps have no critic, and vice versa)
        v = np.asarray(h.get(key, []), float)
        keep = np.isfinite(v)
        if not keep.any():
            return
        if raw:
            a.plot(steps[keep], v[keep], color=color, alpha=0.25, lw=0.5)
        a.plot(steps[keep], smooth(v[keep]), color=color, label=label)

    d_label = "critic loss (-W + penalty)" if variant != "gan" else "discriminator loss"
    curve("mle", "tab:gray", "generator cross-entropy (maximum-likelihood pretraining)")
    curve("d_loss", "tab:red", d_label)
    curve("g_loss", "tab:blue", "generator loss")
    if variant != "gan":
        curve("distance", "tab:green", "Wasserstein estimate", raw=False)
    a.set(xlabel="generator step", ylabel="loss", title=f"{variant}: losses at every step (smoothed lines)")
    a.legend()
    mon = state["monitor"]
    if mon:
        ms = [m["step"] for m in mon]
        for label, style in (("argmax", "-"), ("sampled", "--")):
            b.plot(ms, [m[label]["pitch_std_ratio"] for m in mon], style, color="tab:purple",
                   label=f"pitch std / corpus ({label})")
            b.plot(ms, [m[label]["distinct_ratio"] for m in mon], style, color="tab:orange",
                   label=f"distinct bars / corpus ({label})")
        b.axhspan(0.75, 1.25, color="tab:purple", alpha=0.08)
        b.axhline(0.9, color="tab:orange", lw=0.8, ls=":")
    b.set(xlabel="generator step", ylabel="ratio to the corpus",
          title=f"mode collapse (corpus: pitch std {reference['pitch_std']:.2f}, "
                f"distinct {reference['distinct_share']:.3f})")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the run ------------------------------------------------------------------------

# per-step losses: critic, generator, Wasserstein estimate (adversarial steps) and the
# cross-entropy of the maximum-likelihood pretraining steps; NaN where a step has none
LOSSES = ("d_loss", "g_loss", "distance", "mle")


def _write_csv(path: Path, history: dict[str, list[float]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *LOSSES])
        for i, row in enumerate(zip(*(history[k] for k in LOSSES), strict=True)):
            w.writerow([i + 1, *(f"{x:.6g}" for x in row)])


def train(cfg: Config, variant: str, out_dir: str | Path | None = None, fresh: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one GAN variant for `cfg.gan.steps` generator steps; returns the run's figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm import tqdm

    from jamd.training.corpus import load_corpus
    from jamd.training.train_lstm import device_description

    gc = cfg.gan
    out = Path(out_dir or Path(gc.out_dir) / variant)
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus(cfg.corpus, progress=progress)
    train_idx, _ = corpus.split()
    bars = extract_bars(corpus, train_idx, gc.steps_per_bar)
    vocab = corpus.vocab
    s = bars.stats
    log.info("%d bars of %d steps from %d training tunes (%s); skipped %d tunes (%s)", len(bars), gc.steps_per_bar,
             s["tunes_used"], s["tunes_used_by_meter"], s["tunes_skipped"], s["tunes_skipped_by_reason"])
    reference = reference_figures(bars, gc.monitor_bars)
    mon_rng = np.random.default_rng(12345)
    mon_pick = mon_rng.integers(0, len(bars), gc.monitor_bars)
    reference["join"] = join_figures(bars.prev[mon_pick], bars.bars[mon_pick], vocab)
    device = device_description()
    log.info("training %s on %s", variant, device)

    trainer = Trainer(variant, gc, len(vocab), vocab_pitches(vocab))
    state_path, csv_path, ckpt_dir = out / "state.json", out / "losses.csv", out / "ckpt"
    state: dict[str, Any] = {"variant": variant, "step": 0, "history": {k: [] for k in LOSSES},
                             "monitor": [], "best": None, "pretrained": None, "seconds": 0.0}
    manager = trainer.tf.train.CheckpointManager(trainer.checkpoint, str(ckpt_dir), max_to_keep=2)
    if not fresh and state_path.is_file() and manager.latest_checkpoint:
        state = json.loads(state_path.read_text())
        if state.get("vocabulary") != list(vocab.symbols) or state.get("variant") != variant:
            raise DataError(f"{out}: checkpoint is of another variant or vocabulary; use --fresh or another --out")
        trainer.checkpoint.restore(manager.latest_checkpoint).expect_partial()
        trainer.set_rates()  # the settings' rates, not those saved with the optimisers
        if int(trainer.step.numpy()) != state["step"]:
            raise DataError(f"{out}: checkpoint step {int(trainer.step.numpy())} does not match state.json "
                            f"({state['step']}); use --fresh")
        log.info("resuming %s from step %d", out, state["step"])
        for k in LOSSES:  # runs from before the pretraining phase existed
            state["history"].setdefault(k, [float("nan")] * state["step"])
    state.update(vocabulary=list(vocab.symbols), bars=bars.stats, device=device,
                 reference={k: v for k, v in plain(reference).items()},
                 config={"gan": asdict(gc), "corpus": asdict(cfg.corpus)})
    _write_csv(csv_path, state["history"])  # drops any steps logged after the checkpoint

    mon_z = mon_rng.standard_normal((gc.monitor_bars, gc.latent_dim)).astype(np.float32)
    mon_prev = bars.prev[mon_pick]

    def save() -> None:
        manager.save(checkpoint_number=state["step"])
        trainer.generator.save(out / "last_generator.keras")
        state_path.write_text(json.dumps(state, indent=1))  # last: a crash before it resumes from the previous one
        plot_history(state, out / "loss.png", variant, reference)

    start = state["step"]
    t0 = time.perf_counter()
    seconds0 = state["seconds"]
    with open(csv_path, "a", newline="") as f, \
            tqdm(total=gc.steps, initial=start, desc=f"training {variant}", unit="step", disable=not progress) as bar:
        writer = csv.writer(f)
        for step in range(start, gc.steps):
            rng = np.random.default_rng([gc.batch_size, step])  # resumable: depends on the step only
            pretraining = step < trainer.pretrain_steps
            losses = trainer.train_step(bars, rng)
            for k in LOSSES:
                state["history"][k].append(losses[k])
            expected = ("mle",) if pretraining else ("d_loss", "distance") if step < trainer.warmup_end \
                else ("d_loss", "g_loss", "distance")
            if not all(np.isfinite(losses[k]) for k in expected):
                raise DataError(f"{variant}: losses became non-finite at step {step + 1} ({losses})")
            state["step"] = step + 1
            writer.writerow([step + 1, *(f"{losses[k]:.6g}" for k in LOSSES)])
            f.flush()
            bar.update()
            if pretraining:
                bar.set_postfix(mle=f"{losses['mle']:.3f}", refresh=False)
            else:
                bar.set_postfix(d=f"{losses['d_loss']:.3f}", g=f"{losses['g_loss']:.3f}", refresh=False)
            if not progress:
                log.debug("step %d: %s", step + 1, losses)
            last = step + 1 == gc.steps
            if (step + 1) % gc.monitor_every == 0 or last:
                m = {"step": step + 1, **monitor(trainer, mon_z, mon_prev, vocab, reference)}
                state["monitor"].append(m)
                if step + 1 == trainer.pretrain_steps:
                    # the maximum-likelihood generator alone, kept to compare with what the GAN makes of it
                    state["pretrained"] = m
                    trainer.generator.save(out / "pretrained_generator.keras")
                # only adversarially trained generators are kept: this is a GAN's run
                eligible = step + 1 > trainer.warmup_end
                if eligible and (state["best"] is None or m["score"] < state["best"]["score"]):
                    state["best"] = m
                    trainer.generator.save(out / "best_generator.keras")
                a, sm = m["argmax"], m["sampled"]
                log.info("step %d: %s | argmax: pitch std %.2f (x%.2f), distinct %.3f (x%.2f) | "
                         "sampled: pitch std x%.2f, distinct x%.2f, intervals TV %.3f | score %.3f%s", step + 1,
                         f"mle {losses['mle']:.4f}" if pretraining else
                         f"d {losses['d_loss']:.4f} g {losses['g_loss']:.4f}", a["pitch_std"], a["pitch_std_ratio"],
                         a["distinct_share"], a["distinct_ratio"], sm["pitch_std_ratio"], sm["distinct_ratio"],
                         sm["tv"].get("interval", float("nan")), m["score"],
                         " (best)" if state["best"] is m else "")
            if (step + 1) % gc.checkpoint_every == 0 or last:
                state["seconds"] = seconds0 + time.perf_counter() - t0
                save()
    if state["step"] == start and start > 0:
        log.info("%s already trained for %d steps (gan.steps); nothing to do", out, start)
    elif state["step"] == 0:
        raise UsageError("gan.steps is 0: nothing to train")
    if not (out / "best_generator.keras").is_file():
        raise DataError(f"{out}: no generator was kept (the monitor never ran after the "
                        f"{trainer.pretrain_steps} pretraining steps: raise gan.steps)")

    h, best = state["history"], state["best"]
    tail = max(1, (len(h["d_loss"]) - trainer.pretrain_steps) // 10)
    figures = {
        "variant": variant,
        "corpus": corpus.source,
        "bars": bars.stats,
        "steps_run": state["step"],
        "best_step": best["step"],
        "final_d_loss_mean_last_10pct": float(np.mean(h["d_loss"][-tail:])),
        "final_g_loss_mean_last_10pct": float(np.mean(h["g_loss"][-tail:])),
        "final_distance_mean_last_10pct": float(np.mean(h["distance"][-tail:])),
        "reference": state["reference"],
        "best_monitor": best,
        "pretrain_steps": trainer.pretrain_steps,
        "critic_warmup_end": trainer.warmup_end,
        "pretrained_monitor": state.get("pretrained"),
        "seconds": round(state["seconds"], 1),
        "seconds_per_step": round(state["seconds"] / max(state["step"] - 0, 1), 4),
        "device": device,
    }
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    log.info("best generator at step %d (score %.3f): argmax pitch std x%.2f, distinct x%.2f; run folder %s",
             best["step"], best["score"], best["argmax"]["pitch_std_ratio"], best["argmax"]["distinct_ratio"], out)
    return figures
