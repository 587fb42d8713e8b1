"""One `jamd eval` run: resolve the sets, generate, score, compare, write the report.

Randomness comes from one seed split into independent streams (reference
draw, folder draw, model, baseline), so adding or removing a set never
changes what another set drew.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from jamd import __version__
from jamd.commands.paths import writing
from jamd.config import Config
from jamd.tokens import STEPS_PER_BAR_4_4

from . import compare, features, markov, melodies, models, nll, report

log = logging.getLogger("jamd.eval")

# The set of real training tunes, measured like a model: the ceiling of every figure.
REAL = "corpus"

# The pitch-std bar is measured on this many melodies of each model (each as long as a random
# corpus tune) against the whole corpus, not on the N compared with a random reference draw.
PITCH_MELODIES = 1000
# A bar model's distinct share: the mean of this many draws of 1,000 bars (the corpus's: of 20).
DISTINCT_DRAWS = 5
CORPUS_DISTINCT_DRAWS = 20
DISTINCT_BARS = 1000


def extra_stream(seed: int, key: int) -> np.random.Generator:
    """A stream of its own for the measures added after the first ones (the children
    `run` spawns keep their draws): the same child whatever the number of models."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1000 + key,)))


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]  # models to generate from
    generated: str | None  # a folder of MIDI files to evaluate
    reference: str  # a folder of MIDI files, or a corpus source
    n: int | None  # as given; None: eval.n (all files for folders)
    n_default: int
    bars: int
    temperature: float
    markov_order: int
    baseline: bool
    random_seed: int
    out: str

    @property
    def max_steps(self) -> int:
        return self.bars * STEPS_PER_BAR_4_4

    @property
    def reference_is_folder(self) -> bool:
        return Path(self.reference).is_dir()

    @classmethod
    def resolve(cls, args: argparse.Namespace, cfg: Config) -> Settings:
        seed = args.random_seed if args.random_seed is not None else cfg.model.random_seed
        if seed is None:
            # a fresh seed, recorded in the report's command line so the run can be repeated
            seed = int(np.random.SeedSequence().entropy % 2**32)
        names = tuple(args.model or ()) or (() if args.generated else (cfg.model.name,))
        e = cfg.eval
        return cls(
            models=names, generated=args.generated, reference=args.reference or cfg.corpus.source,
            n=args.n, n_default=e.n, bars=args.bars or e.bars,
            temperature=e.temperature if args.temperature is None else args.temperature,
            markov_order=args.markov_order or e.markov_order, baseline=not args.no_baseline,
            random_seed=seed, out=args.out,
        )

    def command(self) -> str:
        """The command line that repeats this run exactly."""
        parts = ["jamd eval"]
        parts += [f"--model {m}" for m in self.models]
        if self.generated:
            parts.append(f"--generated {self.generated}")
        parts.append(f"--reference {self.reference}")
        if self.n is not None or not (self.reference_is_folder or self.generated):
            parts.append(f"--n {self.n if self.n is not None else self.n_default}")
        parts += [f"--bars {self.bars}", f"--temperature {self.temperature:g}",
                  f"--markov-order {self.markov_order}"]
        if not self.baseline:
            parts.append("--no-baseline")
        parts += [f"--random-seed {self.random_seed}", f"--out {self.out}"]
        return " ".join(parts)


def load_corpus(corpus_cfg, progress: bool):
    """The encoded corpus (a seam for tests, which pass a small fake instead)."""
    from jamd.training.corpus import load_corpus as load

    return load(corpus_cfg, progress=progress)


def run(s: Settings, cfg: Config, progress: bool = False) -> dict[str, Any]:
    # child i of a SeedSequence is the same however many are spawned: the
    # reference draw does not change when a model is added
    streams = [np.random.default_rng(x) for x in np.random.SeedSequence(s.random_seed).spawn(4 + len(s.models))]
    rng_ref, rng_folder, rng_base, rng_real, rng_models = (streams[0], streams[1], streams[2], streams[3],
                                                           streams[4:])
    n = s.n if s.n is not None else s.n_default
    corpus_cfg = cfg.corpus if s.reference_is_folder else replace(cfg.corpus, source=s.reference)
    corpus = None

    def get_corpus():
        nonlocal corpus
        if corpus is None:
            corpus = load_corpus(corpus_cfg, progress)
        return corpus

    # models first: a wrong name should fail before minutes of corpus parsing
    sources = [models.load_source(name, cfg.model) for name in s.models]

    # -- reference: a folder, or N validation tunes --------------------------
    if s.reference_is_folder:
        ref, ref_source = melodies.load_midi_folder(s.reference, s.n, s.max_steps, rng_ref, progress,
                                                    cfg.live.is_melody_channel)
    else:
        draw = melodies.draw_reference(get_corpus(), n, s.max_steps, rng_ref, corpus_cfg.validation_fraction,
                                       corpus_cfg.split_seed, corpus_name=s.reference)
        ref, ref_source = draw.melodies, draw.source

    # -- generated sets: each melody as long as its reference partner --------
    lengths = [m.n_steps for m in ref]
    generated: dict[str, tuple[list, str]] = {}
    step_models: dict[str, models.StepModel] = {}
    vocab = None
    if s.generated:
        mel, source = melodies.load_midi_folder(s.generated, s.n, s.max_steps, rng_folder, progress,
                                                cfg.live.is_melody_channel)
        generated["generated"] = (mel, source)
    for name, src, rng in zip(s.models, sources, rng_models, strict=True):
        vocab = src.vocab if vocab is None else vocab  # the baseline shares the first model's symbols
        mel = src.generate(lengths, s.temperature, rng, progress)
        generated[src.name] = (mel, f"{len(mel)} melodies sampled from {name} at temperature "
                                    f"{s.temperature:g}, as long as the reference melodies")
        if isinstance(src, models.StepSource):  # only step models can score held-out tunes
            step_models[src.name] = src.model

    # -- the baseline, trained on the models' training tunes -----------------
    baseline = None
    if s.baseline:
        c = get_corpus()
        train, _ = c.split(corpus_cfg.validation_fraction, corpus_cfg.split_seed)
        chain = markov.MarkovChain(c.vocab if vocab is None else vocab, s.markov_order)
        chain.fit(melodies.tune_symbols(c, train))
        baseline = f"markov-{s.markov_order}"
        src = models.StepSource(baseline, chain)
        mel = src.generate(lengths, s.temperature, rng_base, progress)
        generated[baseline] = (mel, f"{len(mel)} melodies sampled from an order-{s.markov_order} Markov "
                                    f"chain trained on the {len(train)} training tunes, "
                                    f"temperature {s.temperature:g}")
        step_models[baseline] = chain

    # -- a second sample of real tunes: what a perfect model would score ------
    if not s.reference_is_folder:
        mel, source = melodies.draw_training(get_corpus(), len(ref), s.max_steps, rng_real,
                                             corpus_cfg.validation_fraction, corpus_cfg.split_seed)
        generated[REAL] = (mel, source)

    # -- held-out NLL on the validation tunes --------------------------------
    scores: dict[str, nll.Nll] = {}
    if corpus is not None and step_models:
        _, val = corpus.split(corpus_cfg.validation_fraction, corpus_cfg.split_seed)
        tunes = melodies.tune_symbols(corpus, val)
        positioned = any(getattr(m, "metric_position", False) for m in step_models.values())
        grids = melodies.tune_grids(corpus, val) if positioned else None
        for name, model in step_models.items():
            scores[name] = nll.held_out_nll(model, tunes, name, progress, grids)

    # -- the pitch bar on a fixed, larger basis; the distinct-bar bar of bar models --
    checks: dict[str, compare.PitchCheck] = {}
    distinct: dict[str, dict] = {}
    if not s.reference_is_folder:
        c = get_corpus()
        whole = [melodies.from_symbols(t.name, t.symbols, s.max_steps) for t in c.tunes]
        corpus_std = features.pitch_stats(whole)["pitch_std"]
        basis = f"all {len(whole)} tunes of {s.reference}, cut to at most {s.max_steps} steps"
        all_lengths = np.array([m.n_steps for m in whole])
        pitch_sources = [(i, src.name, src) for i, src in enumerate(sources)]
        if baseline is not None:
            pitch_sources.append((500, baseline, models.StepSource(baseline, chain)))
        for key, name, src in pitch_sources:
            rng = extra_stream(s.random_seed, key)
            lengths = [int(x) for x in rng.choice(all_lengths, PITCH_MELODIES)]
            make = getattr(src, "generate_batch", src.generate)
            mel = make(lengths, s.temperature, rng, progress)
            checks[name] = compare.PitchCheck(features.pitch_stats(mel)["pitch_std"], len(mel), corpus_std, basis)
        if REAL in generated:
            checks[REAL] = compare.PitchCheck(features.pitch_stats(generated[REAL][0])["pitch_std"],
                                              len(generated[REAL][0]), corpus_std, basis)
        distinct = bar_distinct(c, corpus_cfg, [(i, src) for i, src in enumerate(sources)
                                                if isinstance(src, models.BarSource)], s)

    ev = compare.evaluate(ref, ref_source, generated, scores, baseline, checks, distinct)
    settings = {
        "command": s.command(), "random_seed": s.random_seed, "n": len(ref), "bars": s.bars,
        # folders without --n give all their files: nothing was requested then
        "n_requested": n if s.n is not None or not (s.reference_is_folder or s.generated) else None,
        "max_steps": s.max_steps, "pitch_melodies": PITCH_MELODIES,
        "temperature": s.temperature, "markov_order": s.markov_order, "jamd_version": __version__,
    }
    with writing(s.out, "--out"):  # a folder that fails at the end says so in one line, naming it
        return report.write(ev, settings, Path(s.out), cfg.eval.piano_roll)


def bar_distinct(corpus, corpus_cfg, sources: list, s: Settings) -> dict[str, dict]:
    """Issue 5's variety bar for bar models: the mean share of distinct bars among 1,000 generated
    ones (`DISTINCT_DRAWS` draws, each bar after the real bar before a random validation bar)
    against the corpus's own mean share among 1,000 random training bars."""
    if not sources:
        return {}
    from jamd.training import gan_data

    steps = sources[0][1].generator.steps_per_bar
    train_idx, val_idx = corpus.split(corpus_cfg.validation_fraction, corpus_cfg.split_seed)
    train = gan_data.extract_bars(corpus, train_idx, steps)
    val = gan_data.extract_bars(corpus, val_idx, steps)
    ref = gan_data.expected_distinct_share(train.bars, DISTINCT_BARS, CORPUS_DISTINCT_DRAWS,
                                           extra_stream(s.random_seed, 600))
    out = {}
    for i, src in sources:
        if src.generator.steps_per_bar != steps:
            continue
        fig = gan_data.model_distinct_share(src.generator, val, DISTINCT_BARS, s.temperature, DISTINCT_DRAWS,
                                            extra_stream(s.random_seed, 700 + i))
        out[src.name] = {**fig, "reference": ref}
    return out
