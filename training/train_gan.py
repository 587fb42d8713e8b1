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
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import DataError, UsageError

from .checkpoints import atomic_json, atomic_save, clean_stale_temps, fsync_file, read_states, rotate_state
from .gan_data import collapse_figures, extract_bars, join_figures, plain, reference_figures
from .gan_trainer import Trainer, vocab_pitches

log = logging.getLogger(__name__)


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
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100))
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


def resume(out: Path, trainer: Trainer, ckpt_dir: Path, variant: str, vocabulary: list[str]) -> dict[str, Any] | None:
    """Restore the newest sound checkpoint of run folder `out` into `trainer`; its state, or None: nothing to resume.

    Each state (``state.json``, then ``previous_state.json``) names its checkpoint by
    its step (``ckpt/ckpt-STEP``); one that is missing or does not restore is
    reported in one log line and the state before it is tried.  States but no
    usable checkpoint: `DataError`.
    """
    states = read_states(out)
    if not states:
        return None
    for state_path, state in sorted(states, key=lambda s: -int(s[1].get("step", 0))):
        if state.get("vocabulary") != vocabulary or state.get("variant") != variant:
            raise DataError(f"{out}: checkpoint is of another variant or vocabulary; use --fresh or another --out")
        prefix = ckpt_dir / f"ckpt-{state['step']}"
        try:
            if not prefix.with_name(prefix.name + ".index").is_file():
                raise FileNotFoundError("missing")
            trainer.checkpoint.restore(str(prefix)).expect_partial()
            if int(trainer.step.numpy()) != state["step"]:
                raise ValueError(f"holds step {int(trainer.step.numpy())}")
        except Exception as exc:  # TF's own errors for a damaged file
            first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
            log.warning("%s: checkpoint %s is unusable (%s); trying the one before", state_path, prefix.name, first)
            continue
        trainer.set_rates()  # the settings' rates, not those saved with the optimisers
        log.info("resuming %s from step %d", out, state["step"])
        return state
    raise DataError(f"{out}: no usable checkpoint in {ckpt_dir.name}/ for state.json or previous_state.json; "
                    "use --fresh or another --out")


def train(cfg: Config, variant: str, out_dir: str | Path | None = None, fresh: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one GAN variant for `cfg.gan.steps` generator steps; returns the run's figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm import tqdm

    from jamd.training.corpus import load_corpus
    from jamd.training.train_lstm import device_description, keep_corpus_stats

    gc = cfg.gan
    out = Path(out_dir or Path(gc.out_dir) / variant)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)
    corpus = load_corpus(cfg.corpus, progress=progress, input_channels=cfg.live.input_channels)
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
    # three kept: the state before the newest names the checkpoint before the newest
    manager = trainer.tf.train.CheckpointManager(trainer.checkpoint, str(ckpt_dir), max_to_keep=3)
    if not fresh:
        resumed = resume(out, trainer, ckpt_dir, variant, list(vocab.symbols))
        state = resumed or state
        for k in LOSSES:  # runs from before the pretraining phase existed
            state["history"].setdefault(k, [float("nan")] * state["step"])
    state.update(vocabulary=list(vocab.symbols), bars=bars.stats, device=device,
                 reference={k: v for k, v in plain(reference).items()},
                 config={"gan": asdict(gc), "corpus": asdict(cfg.corpus)})
    keep_corpus_stats(state, corpus, out)
    _write_csv(csv_path, state["history"])  # drops any steps logged after the checkpoint

    mon_z = mon_rng.standard_normal((gc.monitor_bars, gc.latent_dim)).astype(np.float32)
    mon_prev = bars.prev[mon_pick]

    def save() -> None:
        # TF writes each checkpoint file under a temp name and renames it; the fsyncs make it durable
        prefix = Path(manager.save(checkpoint_number=state["step"]))
        for f in [*ckpt_dir.glob(prefix.name + ".*"), ckpt_dir / "checkpoint"]:
            fsync_file(f)
        atomic_save(out / "last_generator.keras", trainer.generator.save)
        rotate_state(out)
        atomic_json(state_path, state)  # last: it names the checkpoint, so a kill before it resumes from the one before
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
                    atomic_save(out / "pretrained_generator.keras", trainer.generator.save)
                # only adversarially trained generators are kept: this is a GAN's run
                eligible = step + 1 > trainer.warmup_end
                if eligible and (state["best"] is None or m["score"] < state["best"]["score"]):
                    state["best"] = m
                    atomic_save(out / "best_generator.keras", trainer.generator.save)
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
    atomic_json(out / "figures.json", figures)
    log.info("best generator at step %d (score %.3f): argmax pitch std x%.2f, distinct x%.2f; run folder %s",
             best["step"], best["score"], best["argmax"]["pitch_std_ratio"], best["argmax"]["distinct_ratio"], out)
    return figures
