"""One `jamd eval --harmony` run: the held-out tunes, every system at every harmonic rhythm, the
melody_fit scan, the goals, the report.

Two sets, both validation splits, neither seen in training:

* **chorales**: Bach's chorales (`harmony_training.source`), with his chords;
* **folk**: the melody corpus's tunes (`corpus.source`, the Erk songs), never
  harmonised in training: the real use.

Each system (`harmony_systems`) harmonises each tune free-running at each
harmonic rhythm (beat, half-bar, bar); the main tables read the chorales at
``beat`` (Bach changes chord per beat) and the folk tunes at
``harmony.rhythm``.  The model decides at `Settings.temperature`
(``harmony.temperature``, the real use) and, beside it, at temperature 0.
Online it guesses the span's notes as the daemon does: with
``harmony.forecast_model`` (a melody LSTM, `harmony_systems.SpanForecast`),
else with the harmony model's melody head; with a forecast model the row
``model online, melody head`` shows the melody head beside it.  Lookahead
never uses the forecast: the span's notes are known.
A system that draws its chords (a temperature above 0) runs `DRAWS` times
over each set, its counts pooled, since one run's noise (about 0.01 in a
share, 0.05 in chords per 4 bars) would decide goals and the melody_fit
recommendation that lie closer than that.  Every draw comes from its own
stream keyed by (seed, system, set, rhythm, melody_fit, draw), so a run
repeats exactly and adding a system changes no other's draws.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jamd import __version__
from jamd.commands.paths import writing
from jamd.config import HARMONIC_RHYTHMS, Config, HarmonyConfig
from jamd.errors import DataError
from jamd.inference.forecast import MelodyForecast
from jamd.inference.harmony import Harmonizer, HarmonyModel

from . import harmony_report
from .harmony_metrics import score_set, transitions
from .harmony_systems import (
    ChordChain,
    MarkovSystem,
    ModelSystem,
    Output,
    ReferenceSystem,
    RuleSystem,
    SpanForecast,
    chain_sequences,
)
from .harmony_tunes import Beats, SkipReason, beats_of, from_tune
from .progress import bar

log = logging.getLogger("jamd.eval")

CHORALES, FOLK = "chorales", "folk"
MELODY_FITS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0)  # 10: the most harmony.melody_fit allows
DRAWS = 3  # runs of a system that draws its chords, pooled: one run's noise decides close goals
MARKOV_SAMPLED_TEMPERATURE = 1.0
MELODY_HEAD = "model online, melody head"


@dataclass(frozen=True)
class Settings:
    model: str  # a shipped name or an .onnx path
    n: int | None  # most tunes per set (None: the whole validation split)
    temperature: float  # the model's, as `harmony.temperature`
    melody_fit: float
    rhythm: str  # the folk tunes' harmonic rhythm
    markov_order: int
    random_seed: int
    out: str
    draws: int = DRAWS
    forecast_model: str | None = None  # harmony.forecast_model: None, the melody head alone
    forecast_rollouts: int = 8

    @property
    def predictor(self) -> str:
        """How the model online guesses the span's notes, in words."""
        if self.forecast_model is None:
            return "the harmony model's melody head (harmony.forecast_model null)"
        return f"forecast by {self.forecast_model}, {self.forecast_rollouts} rollouts"

    @classmethod
    def resolve(cls, args: argparse.Namespace, cfg: Config) -> Settings:
        seed = args.random_seed if args.random_seed is not None else cfg.model.random_seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**32)
        h = cfg.harmony
        return cls(model=(args.model or [h.model])[0], n=args.n,
                   temperature=h.temperature if args.temperature is None else args.temperature,
                   melody_fit=h.melody_fit, rhythm=h.rhythm, markov_order=args.markov_order or 1,
                   random_seed=seed, out=args.out, forecast_model=h.forecast_model,
                   forecast_rollouts=h.forecast_rollouts)

    def command(self) -> str:
        """The command line that repeats this run (with the same config)."""
        parts = ["jamd eval --harmony", f"--model {self.model}"]
        if self.n is not None:
            parts.append(f"--n {self.n}")
        parts += [f"--temperature {self.temperature:g}", f"--markov-order {self.markov_order}",
                  f"--random-seed {self.random_seed}", f"--out {self.out}"]
        default = HarmonyConfig()  # only what differs from the defaults is spelled out
        if self.melody_fit != default.melody_fit:
            parts.append(f"--set harmony.melody_fit={self.melody_fit:g}")
        if self.rhythm != default.rhythm:
            parts.append(f"--set harmony.rhythm={self.rhythm}")
        if self.forecast_model != default.forecast_model:
            parts.append(f"--set harmony.forecast_model={self.forecast_model or 'null'}")
        if self.forecast_rollouts != 8:
            parts.append(f"--set harmony.forecast_rollouts={self.forecast_rollouts}")
        return " ".join(parts)


# -- the sets (seams: tests pass small fakes) ----------------------------------
def load_chorales(cfg: Config, progress: bool):
    """The labelled chorales: an object with `.tunes` (HarmonizedTune) and `.split()`."""
    from jamd.training.harmony_data import load_chorales as load

    return load(cfg, progress)


def load_folk(cfg: Config, progress: bool):
    """The melody corpus (`jamd.training.corpus.EncodedCorpus` or anything with `.tunes`, `.split()`)."""
    from jamd.training.corpus import load_corpus

    return load_corpus(cfg.corpus, progress=progress)


@dataclass
class TuneSet:
    name: str
    source: str
    tunes: list[Beats]
    skipped: dict[str, int]


def chorale_sets(cfg: Config, n: int | None, progress: bool) -> tuple[TuneSet, list[Beats]]:
    """(the validation chorales, the training chorales) as `Beats`."""
    corpus = load_chorales(cfg, progress)
    train, val = corpus.split()
    val_tunes = [beats_of(corpus.tunes[i]) for i in val][:n]
    if not val_tunes:
        raise DataError(f"harmony_training.source {cfg.harmony_training.source}: no validation chorales")
    source = f"{len(val_tunes)} validation chorales of {cfg.harmony_training.source} ({len(corpus.tunes)} in all)"
    return TuneSet(CHORALES, source, val_tunes, {}), [beats_of(corpus.tunes[i]) for i in train]


def folk_set(cfg: Config, n: int | None, progress: bool) -> TuneSet:
    """The folk corpus's validation tunes with a whole number of quarter beats per bar (see `from_tune`)."""
    corpus = load_folk(cfg, progress)
    _, val = corpus.split(cfg.corpus.validation_fraction, cfg.corpus.split_seed)
    kept: list[Beats] = []
    skipped: Counter = Counter()
    for i in val:
        try:
            kept.append(beats_of(from_tune(corpus.tunes[i])))
        except SkipReason as why:
            skipped[str(why)] += 1
    kept = kept[:n]
    if not kept:
        raise DataError(f"corpus.source {cfg.corpus.source}: no usable validation tunes ({dict(skipped)})")
    minor = sum(b.minor for b in kept)
    source = (f"{len(kept)} validation tunes of {cfg.corpus.source} ({len(corpus.tunes)} in all; "
              f"{minor} minor)")
    return TuneSet(FOLK, source, kept, dict(skipped))


# -- the systems ----------------------------------------------------------------
@dataclass(frozen=True)
class Maker:
    """How to build one system from its random stream; `random`: its chords are drawn (a
    temperature above 0), so its figures are pooled over `Settings.draws` runs."""

    make: Callable[[np.random.Generator], Any]
    random: bool


def systems(s: Settings, model: HarmonyModel, chains: dict[str, ChordChain], melody_fit: float | None = None,
            forecast: SpanForecast | None = None) -> dict[str, Maker]:
    """Name -> its `Maker`, in the report's order; the model online guesses with `forecast` when given."""
    fit = s.melody_fit if melody_fit is None else melody_fit

    def model_system(name: str, temperature: float, lookahead: bool, guess: SpanForecast | None = forecast) -> Maker:
        return Maker(lambda rng: ModelSystem(name, Harmonizer(model, temperature, fit, rng), lookahead, guess),
                     temperature > 0)

    out = {"model online": model_system("model online", s.temperature, False)}
    if forecast is not None:
        out[MELODY_HEAD] = model_system(MELODY_HEAD, s.temperature, False, None)
    out["model lookahead"] = model_system("model lookahead", s.temperature, True)
    if s.temperature > 0:
        out["model online T=0"] = model_system("model online T=0", 0.0, False)
        out["model lookahead T=0"] = model_system("model lookahead T=0", 0.0, True)
    out["rule online"] = Maker(lambda rng: RuleSystem("rule online", False), False)
    out["rule lookahead"] = Maker(lambda rng: RuleSystem("rule lookahead", True), False)
    out["markov"] = Maker(lambda rng: MarkovSystem("markov", chains, 0.0, rng), False)
    out[f"markov T={MARKOV_SAMPLED_TEMPERATURE:g}"] = Maker(
        lambda rng: MarkovSystem("markov sampled", chains, MARKOV_SAMPLED_TEMPERATURE, rng), True)
    return out


def stream(seed: int, *key: str) -> np.random.Generator:
    """The random stream of (seed, names...): the same whatever else the run does."""
    digest = hashlib.blake2b("\0".join(key).encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def harmonise(system, tunes: list[Beats], rhythm: str, progress: bool, desc: str) -> list[Output]:
    return [system.run(b, rhythm) for b in bar(tunes, desc, "tune", progress)]


def score(tunes: list[Beats], outputs: list[Output], labelled: bool) -> dict:
    return score_set((b, o.chords, b.tune.chords if labelled else None)
                     for b, o in zip(tunes, outputs, strict=True))


def run(s: Settings, cfg: Config, progress: bool = False) -> dict[str, Any]:
    model = HarmonyModel.load(s.model, cfg.model)  # a wrong model fails before the corpora load
    forecast = None
    if s.forecast_model is not None:
        forecast = SpanForecast(MelodyForecast.load(s.forecast_model, cfg.model, s.forecast_rollouts, None),
                                s.random_seed, s.predictor)
    chorales, train = chorale_sets(cfg, s.n, progress)
    folk = folk_set(cfg, s.n, progress)
    chains = {r: ChordChain(s.markov_order).fit(chain_sequences(train, r)) for r in HARMONIC_RHYTHMS}
    main_rhythm = {CHORALES: "beat", FOLK: s.rhythm}
    rhythms: dict[str, dict[str, dict[str, dict]]] = {}
    kept: dict[str, dict[str, list[Output]]] = {}  # each set's outputs at its main rhythm
    for ts in (chorales, folk):
        rhythms[ts.name], kept[ts.name] = score_all(s, systems(s, model, chains, forecast=forecast), ts,
                                                    main_rhythm[ts.name], progress)
    scan = melody_fit_scan(s, model, chains, (chorales, folk), main_rhythm, rhythms, progress, forecast)
    matrices = {
        f"model online on {cfg.corpus.source} ({s.rhythm})": transitions(o.chords for o in kept[FOLK]["model online"]),
        "Bach on the validation chorales": transitions(o.chords for o in kept[CHORALES]["bach"]),
    }
    figures = {
        "settings": {"command": s.command(), "model": s.model, "random_seed": s.random_seed,
                     "temperature": s.temperature, "melody_fit": s.melody_fit, "rhythm": s.rhythm,
                     "markov_order": s.markov_order, "markov_sampled_temperature": MARKOV_SAMPLED_TEMPERATURE,
                     "draws": s.draws, "n": s.n, "jamd_version": __version__,
                     "forecast_model": s.forecast_model, "forecast_rollouts": s.forecast_rollouts,
                     "online_predictor": s.predictor},
        "sets": {ts.name: {"source": ts.source, "tunes": len(ts.tunes), "beats": sum(b.n for b in ts.tunes),
                           "rhythm": main_rhythm[ts.name], "skipped": ts.skipped} for ts in (chorales, folk)},
        "rhythms": rhythms,
        "melody_fit_scan": scan,
    }
    figures["goals"] = harmony_report.goals(figures)
    figures["recommended_melody_fit"] = harmony_report.recommend_melody_fit(scan)
    roll = piano_roll_tune(folk.tunes)
    roll_outputs = {f"{name} ({s.rhythm})": kept[FOLK][name][roll] for name in ("model online", "model lookahead")}
    with writing(s.out, "--out"):
        return harmony_report.write(figures, Path(s.out), matrices, folk.tunes[roll], roll_outputs,
                                    cfg.harmony.chords_lowest)


def run_drawn(s: Settings, maker: Maker, ts: TuneSet, rhythm: str, key: tuple[str, ...],
              progress: bool) -> list[Output]:
    """The outputs of `maker`'s system on every tune of `ts`, `s.draws` times over when it draws
    (draw after draw: tunes * draws outputs), each draw from its own stream of (seed, key, draw)."""
    outs: list[Output] = []
    for draw in range(s.draws if maker.random else 1):
        rng = stream(s.random_seed, *key, *((str(draw),) if draw else ()))
        outs += harmonise(maker.make(rng), ts.tunes, rhythm, progress, " ".join(key) + f" draw {draw + 1}")
    return outs


def score_all(s: Settings, makers: dict[str, Maker], ts: TuneSet, main: str,
              progress: bool) -> tuple[dict[str, dict[str, dict]], dict[str, list[Output]]]:
    """(rhythm -> system -> figures, system -> outputs at rhythm `main`) of every system on `ts`;
    labelled sets (the chorales) get Bach's own chords as the first row."""
    labelled = ts.name == CHORALES
    rows: dict[str, dict[str, dict]] = {}
    kept: dict[str, list[Output]] = {}
    for rhythm in HARMONIC_RHYTHMS:
        rows[rhythm] = {}
        if labelled:
            outs = harmonise(ReferenceSystem(), ts.tunes, rhythm, False, "")
            rows[rhythm]["bach"] = score(ts.tunes, outs, True)
            if rhythm == main:
                kept["bach"] = outs
        for name, maker in makers.items():
            outs = run_drawn(s, maker, ts, rhythm, (name, ts.name, rhythm, f"{s.melody_fit:g}"), progress)
            rows[rhythm][name] = score(ts.tunes * (len(outs) // len(ts.tunes)), outs, labelled)
            if rhythm == main:
                kept[name] = outs
    return rows, kept


def melody_fit_scan(s: Settings, model: HarmonyModel, chains: dict[str, ChordChain], sets: tuple[TuneSet, ...],
                    main_rhythm: dict[str, str], known: dict[str, Any], progress: bool,
                    forecast: SpanForecast | None = None) -> dict[str, Any]:
    """The model online (guessing with `forecast` when given) and with lookahead at each of
    `MELODY_FITS`, on each set at its main rhythm (pooled over the draws as the main rows); at
    ``harmony.melody_fit`` the main rows (`known`)."""
    out: dict[str, Any] = {"values": list(MELODY_FITS), "temperature": s.temperature,
                           "draws": s.draws if s.temperature > 0 else 1, "online_predictor": s.predictor}
    for ts in sets:
        rhythm = main_rhythm[ts.name]
        rows = out.setdefault(ts.name, {})
        for fit in MELODY_FITS:
            makers = systems(s, model, chains, melody_fit=fit, forecast=forecast)
            row = rows.setdefault(f"{fit:g}", {})
            for name in ("model online", "model lookahead"):
                if fit == s.melody_fit:
                    row[name.split()[-1]] = known[ts.name][rhythm][name]
                    continue
                outs = run_drawn(s, makers[name], ts, rhythm, (name, ts.name, rhythm, f"{fit:g}"), progress)
                row[name.split()[-1]] = score(ts.tunes * (len(outs) // len(ts.tunes)), outs, ts.name == CHORALES)
    return out


def piano_roll_tune(tunes: list[Beats]) -> int:
    """The index of the first tune of at least 8 whole bars (else the longest): the piano roll's."""
    for i, b in enumerate(tunes):
        if b.n - b.tune.pickup_beats >= 8 * b.tune.beats_per_bar:
            return i
    return int(np.argmax([b.n for b in tunes]))
