"""Bars for the GANs, cut from the encoded corpus on its real bar lines.

A tune's bars start after its anacrusis (`Tune.pickup_steps`) and are
`meter_steps(tune.meter)` 16th steps long.  The models learn bars of one
length, `steps_per_bar` (16: a 4/4 bar):

* a tune whose bar is that long (4/4, 2/2) gives its bars as they are;
* a shorter bar that divides it is grouped (2/4: two bars make one 16-step
  bar, starting on the first full bar, so the pairs keep the strong beat);
* a longer bar that it divides is split (4/2: each bar gives two);
* other meters (3/4, 6/8, 3/8, 6/4, ...) and tunes whose meter changes are
  skipped, and counted in `BarSet.stats`.

An incomplete last bar is dropped.  Each bar is normalised with
`jamd.inference.gan.normalise_bar`: holds at its start (a note tied over the bar line)
become the note itself, so a bar decodes alone.  `prev` holds the bar before
each bar, which conditions the conditional GAN; a tune's first bar follows
its anacrusis (rest-padded in front) or, without one, a silent bar.

The mode-collapse figures used during training and in the docs live here
too: pitch standard deviation over the notes of a set of bars and the share
of distinct bars among them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from jamd.inference.gan import last_bar, normalise_bar, silent_bar, sounding_before
from jamd.tokens import Vocabulary, is_pitch, symbols_to_notes


def meter_steps(meter: str) -> int | None:
    """16th steps in one bar of `meter` ("6/8" -> 12); None when not on the grid."""
    try:
        num, den = (int(x) for x in meter.split("/"))
        steps = Fraction(16 * num, den)
    except (ValueError, ZeroDivisionError):
        return None
    return int(steps) if steps.denominator == 1 and steps > 0 else None


@dataclass
class BarSet:
    """Bars as vocabulary ids: `bars [n, steps]`, `prev [n, steps]`, `tune [n]` (tune index)."""

    vocab: Vocabulary
    steps_per_bar: int
    bars: np.ndarray
    prev: np.ndarray
    tune: np.ndarray
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.bars)


def tune_bars(symbols: list[str], meter: str, pickup: int, steps: int) -> tuple[list[list[str]], str | None]:
    """The normalised bars of one tune and the bar before the first one; or ([], reason)."""
    length = meter_steps(meter)
    if length is None:
        return [], f"meter {meter}"
    if length != steps and steps % length and length % steps:
        return [], f"meter {meter}"
    body = symbols[pickup:]
    n = len(body) // steps
    out = []
    for i in range(n):
        chunk = body[i * steps : (i + 1) * steps]
        before = symbols[: pickup + i * steps]
        out.append(normalise_bar(chunk, steps, sounding_before(before)))
    return out, None


def extract_bars(corpus, indices: list[int] | None = None, steps_per_bar: int = 16) -> BarSet:
    """Every usable bar of the tunes `indices` (default: all) of an `EncodedCorpus`."""
    vocab = corpus.vocab
    indices = list(range(len(corpus))) if indices is None else list(indices)
    bars: list[np.ndarray] = []
    prevs: list[np.ndarray] = []
    owner: list[int] = []
    skipped: Counter[str] = Counter()
    used: Counter[str] = Counter()
    for i in indices:
        t = corpus.tunes[i]
        if t.meter_changes:
            skipped["meter changes"] += 1
            continue
        pickup = t.pickup_steps if t.pickup_steps < len(t.symbols) else 0
        cut, reason = tune_bars(t.symbols, t.meter, pickup, steps_per_bar)
        if reason is not None:
            skipped[reason] += 1
            continue
        if not cut:
            skipped["shorter than a bar"] += 1
            continue
        used[t.meter] += 1
        first_prev = last_bar(t.symbols[:pickup], steps_per_bar) if pickup else silent_bar(steps_per_bar)
        prev = first_prev
        for bar in cut:
            bars.append(vocab.encode(bar))
            prevs.append(vocab.encode(prev))
            owner.append(i)
            prev = bar
    if not bars:
        raise ValueError(f"no bars of {steps_per_bar} steps in the corpus (skipped: {dict(skipped)})")
    stats = {
        "steps_per_bar": steps_per_bar,
        "tunes_used": sum(used.values()),
        "tunes_used_by_meter": dict(used.most_common()),
        "tunes_skipped": sum(skipped.values()),
        "tunes_skipped_by_reason": dict(skipped.most_common()),
        "bars": len(bars),
    }
    return BarSet(vocab, steps_per_bar, np.stack(bars).astype(np.int32), np.stack(prevs).astype(np.int32),
                  np.array(owner, np.int32), stats)


# -- mode-collapse figures -------------------------------------------------------

def _pitch_table(vocab: Vocabulary) -> np.ndarray:
    return np.array([float(s) if is_pitch(s) else np.nan for s in vocab.symbols])


def pitch_std(bar_ids: np.ndarray, vocab: Vocabulary) -> float:
    """Standard deviation of the pitches of all notes struck in the bars (semitones)."""
    pitches = _pitch_table(vocab)[np.asarray(bar_ids)]
    pitches = pitches[~np.isnan(pitches)]
    return float(pitches.std()) if pitches.size > 1 else 0.0


def distinct_share(bar_ids: np.ndarray) -> float:
    """Distinct bars / bars (1.0: no bar repeats; 1/n: one bar n times)."""
    bar_ids = np.asarray(bar_ids)
    return len(np.unique(bar_ids, axis=0)) / max(len(bar_ids), 1)


def _histogram(values: list[int], bins: int) -> np.ndarray:
    h = np.bincount(np.clip(values, 0, bins - 1), minlength=bins).astype(float) if values else np.zeros(bins)
    return h / max(h.sum(), 1.0)


# |interval| histogram bins: unison to an octave, then "more than an octave"
INTERVAL_BINS = 14


def bar_profile(bar_ids: np.ndarray, vocab: Vocabulary) -> dict[str, np.ndarray]:
    """Pitch-class, note-length, notes-per-bar and interval histograms of a set of bars.

    The interval histogram (|semitones| between consecutive notes inside a bar)
    is what tells a bar that moves like a tune from one whose steps leap at
    random: the other three cannot see the order of the notes.
    """
    pcs: list[int] = []
    lengths: list[int] = []
    counts: list[int] = []
    intervals: list[int] = []
    steps = np.asarray(bar_ids).shape[1]
    for row in np.asarray(bar_ids):
        notes = symbols_to_notes(vocab.decode(row))
        pcs += [n.pitch % 12 for n in notes]
        lengths += [n.duration for n in notes]
        counts.append(len(notes))
        intervals += [abs(b.pitch - a.pitch) for a, b in zip(notes[:-1], notes[1:], strict=True)]
    return {"pitch_class": _histogram(pcs, 12), "note_length": _histogram(lengths, steps + 1),
            "notes_per_bar": _histogram(counts, steps + 1), "interval": _histogram(intervals, INTERVAL_BINS)}


# The distinct share's weight in `score`, counted below the corpus's own share: a
# generator a few percent less varied than the corpus loses to one that is not.
# (The first runs counted it only below 90% of the corpus's, with weight 1, and kept
# a cgan generator at x0.82 because its joins were better.)
DISTINCT_WEIGHT = 2.0


def collapse_figures(bar_ids: np.ndarray, vocab: Vocabulary, reference: dict | None = None) -> dict:
    """The seed's mode-collapse measures for bars, and their ratios to `reference`'s.

    `reference` is this function's result on real bars; with it, `score`
    (lower is better) sums |log pitch-std ratio|, twice the shortfall of the
    distinct share below the corpus's (`DISTINCT_WEIGHT`), and the total-variation
    distances of the four histograms: the number training keeps its best
    generator by, since GAN losses do not measure quality.
    """
    bar_ids = np.asarray(bar_ids)
    prof = bar_profile(bar_ids, vocab)
    figures = {
        "pitch_std": pitch_std(bar_ids, vocab),
        "distinct_share": distinct_share(bar_ids),
        "notes_per_bar": float((~np.isnan(_pitch_table(vocab)[bar_ids])).sum(axis=1).mean()),
        "profile": prof,
    }
    if reference is not None:
        std_ratio = figures["pitch_std"] / max(reference["pitch_std"], 1e-9)
        distinct_ratio = figures["distinct_share"] / max(reference["distinct_share"], 1e-9)
        tv = {k: 0.5 * float(np.abs(prof[k] - reference["profile"][k]).sum()) for k in prof}
        figures.update(
            pitch_std_ratio=std_ratio,
            distinct_ratio=distinct_ratio,
            tv=tv,
            score=float(abs(np.log(max(std_ratio, 1e-6))) + DISTINCT_WEIGHT * max(0.0, 1.0 - distinct_ratio)
                        + sum(tv.values())),
        )
    return figures


def join_figures(prev_ids: np.ndarray, bar_ids: np.ndarray, vocab: Vocabulary) -> dict[str, float]:
    """How bars follow the bars before them: the mean leap (semitones) from the last
    note before the bar line to the first after it, and the correlation of the two
    bars' mean pitches (real Erk bars: about 2.4 and 0.9; bars that ignore what came
    before: about 8 and 0)."""
    table = _pitch_table(vocab)
    before, after = table[np.asarray(prev_ids)], table[np.asarray(bar_ids)]
    keep = ~np.isnan(before).all(axis=1) & ~np.isnan(after).all(axis=1)
    before, after = before[keep], after[keep]
    if len(before) < 3:
        return {"leap": float("nan"), "register_correlation": float("nan")}
    last = np.array([row[~np.isnan(row)][-1] for row in before])
    first = np.array([row[~np.isnan(row)][0] for row in after])
    corr = np.corrcoef(np.nanmean(before, axis=1), np.nanmean(after, axis=1))[0, 1]
    return {"leap": float(np.abs(first - last).mean()), "register_correlation": float(np.nan_to_num(corr))}


def reference_figures(bars: BarSet, n: int = 1000, seed: int = 0) -> dict:
    """`collapse_figures` of `n` random real bars (fixed by `seed`)."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(bars), size=min(n, len(bars)), replace=False)
    return collapse_figures(bars.bars[pick], bars.vocab)


def expected_distinct_share(bar_ids: np.ndarray, n: int = 1000, draws: int = 20,
                            rng: np.random.Generator | None = None) -> dict:
    """The share of distinct bars among `n` bars drawn at random from `bar_ids`, as the mean
    over `draws` draws (and their range): "the corpus's own share among 1,000 random bars"
    without the luck of one draw (one draw of 1,000 erk training bars gives 0.88 to 0.91)."""
    rng = rng or np.random.default_rng(0)
    bar_ids = np.asarray(bar_ids)
    shares = [distinct_share(bar_ids[rng.choice(len(bar_ids), size=min(n, len(bar_ids)), replace=False)])
              for _ in range(draws)]
    return _share_summary(shares, min(n, len(bar_ids)))


def model_distinct_share(gen, val: BarSet, n: int = 1000, temperature: float = 1.0, draws: int = 5,
                         rng: np.random.Generator | None = None) -> dict:
    """The same for a generator: the mean share of distinct bars among `n` bars over `draws`
    draws, each bar generated after the real bar before a random bar of `val`, as
    `model_bar_figures` does (the conditional model is conditioned on it; both kinds choose by it)."""
    rng = rng or np.random.default_rng(0)
    shares = []
    for _ in range(draws):
        prev = val.prev[rng.choice(len(val), size=n, replace=len(val) < n)]
        shares.append(distinct_share(gen.continue_ids(prev, temperature, rng)))
    return _share_summary(shares, n)


def _share_summary(shares: list[float], n: int) -> dict:
    """The mean distinct share over draws of `n` bars, with its range."""
    return {"distinct_share": float(np.mean(shares)), "min": float(min(shares)), "max": float(max(shares)),
            "draws": len(shares), "n": n}


def plain(figures: dict) -> dict:
    """Figures without the histograms, for logs and JSON."""
    return {k: v for k, v in figures.items() if k != "profile"}


# -- the shipped models' bar figures (docs/MODELS.md) ---------------------------------

def model_bar_figures(gen, val: BarSet, reference: dict, n: int = 1000, temperature: float = 1.0,
                      seed: int = 0) -> dict:
    """The seed's mode-collapse measures for an exported generator (`jamd.inference.gan.BarGenerator`).

    `n` bars, each generated after the real bar before a random bar of the
    validation tunes `val` (the conditional model is conditioned on it; both
    kinds choose their bar by it when `gen.selection` draws several), as
    `BarGenerator.continue_ids` does for the daemon.  `reference` is
    `reference_figures` of the training bars.
    """
    from jamd.tokens import fit_symbols_to_vocab

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(val), size=n, replace=len(val) < n)
    prev = val.prev[pick]
    if tuple(gen.vocab.symbols) != tuple(val.vocab.symbols):
        # a model trained on another corpus (folk) has its own vocabulary: the real bars before
        # are spelt in it (a pitch it never saw folded by octaves, as the daemon folds a player's)
        prev = np.stack([gen.encode_bar(fit_symbols_to_vocab(val.vocab.decode(row), gen.vocab)) for row in prev])
    ids = gen.continue_ids(prev, temperature, rng)
    figures = plain(collapse_figures(ids, gen.vocab, reference))
    figures["join"] = join_figures(prev, ids, gen.vocab)
    return figures


def main(argv: list[str] | None = None) -> int:
    """`python -m jamd.training.gan_data --model gan --model cgan`: the table of docs/MODELS.md."""
    import argparse
    import json

    from jamd.config import Config
    from jamd.inference.gan import BarGenerator

    from .corpus import load_corpus

    p = argparse.ArgumentParser(prog="python -m jamd.training.gan_data", description=main.__doc__)
    p.add_argument("--model", action="append", required=True, help="shipped GAN name or .onnx path (repeatable)")
    p.add_argument("--temperature", type=float, action="append", help="(repeatable; default: 1.0)")
    p.add_argument("--candidates", type=int, help="override the models' selection.candidates (1: the bare model)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draws", type=int, default=5,
                   help="also give the distinct share as the mean of this many draws of 1,000 bars, "
                        "against the mean of 20 draws of real training bars (default: 5)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    cfg = Config()
    corpus = load_corpus(cfg.corpus, progress=False, input_channels=cfg.live.input_channels)
    train_idx, val_idx = corpus.split()
    train, val = extract_bars(corpus, train_idx), extract_bars(corpus, val_idx)
    reference = reference_figures(train, args.n)
    ref_join = join_figures(val.prev, val.bars, val.vocab)
    print(f"corpus: pitch std {reference['pitch_std']:.2f}, distinct {reference['distinct_share']:.3f} "
          f"(1,000 training bars); validation pairs: leap {ref_join['leap']:.1f}, "
          f"register corr. {ref_join['register_correlation']:.2f}")
    ref_mean = expected_distinct_share(train.bars, args.n, 20, np.random.default_rng(args.seed))
    print(f"corpus: distinct share {ref_mean['distinct_share']:.3f} as the mean of 20 draws of "
          f"{ref_mean['n']:,} training bars ({ref_mean['min']:.3f}-{ref_mean['max']:.3f})")
    print(f"| model | candidates | T | pitch std | ratio | distinct | ratio | distinct, mean of {args.draws} "
          "| ratio to the mean | leap | register corr. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in args.model:
        sel = {"candidates": args.candidates} if args.candidates else None
        gen = BarGenerator.load(name, selection=sel)
        for t in args.temperature or [1.0]:
            f = model_bar_figures(gen, val, reference, args.n, t, args.seed)
            m = model_distinct_share(gen, val, args.n, t, args.draws, np.random.default_rng(args.seed))
            f["distinct_mean"] = {**m, "ratio": m["distinct_share"] / ref_mean["distinct_share"]}
            rows.append({"model": name, "selection": gen.selection.to_dict(), "temperature": t, **f})
            print(f"| {name} | {gen.selection.candidates} | {t:g} | {f['pitch_std']:.2f} | "
                  f"{f['pitch_std_ratio']:.2f} | {f['distinct_share']:.3f} | {f['distinct_ratio']:.2f} | "
                  f"{m['distinct_share']:.3f} | {f['distinct_mean']['ratio']:.2f} | "
                  f"{f['join']['leap']:.1f} | {f['join']['register_correlation']:.2f} |")
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"reference": plain(reference), "reference_mean": ref_mean,
                                               "validation_join": ref_join,
                                               "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
