"""Harmony training data: music21's Bach chorales as (melody, chord, bass) per beat.

CONTRACT (the evaluation codes against it):

`HarmonizedTune` is one chorale (or one folk tune, for evaluation, with no
chords) normalised to C major / A minor.  Beats are quarter notes
(`jamd.music.chords.STEPS_PER_BEAT` 16th steps); beat 0 starts at step 0.

`load_chorales(cfg, progress) -> HarmonyCorpus`: parsed, labelled and cached.
`HarmonyCorpus.split()` -> (training indices, validation indices), by chorale.
`beat_arrays(tune, lookahead)` -> the model's inputs and targets, beat by beat.

The source (``harmony_training.source``) ``bach`` is music21's list of
chorales, `music21.corpus.chorales.Iterator` (371 entries in Riemenschneider
order, 350 distinct works: repeats are counted under ``duplicates`` and
parsed once); any other value is read as ``corpus.source`` is (a folder of
four-part scores, or a path in music21's corpus).  How a chorale is labelled
is in `jamd.training.harmony_parse`.  Parsing runs in ``corpus.workers``
processes (0: one per core), at most 2; the result is cached as JSON beside
the melody corpus's cache (`corpus.cache_dir`), keyed by the files' paths,
sizes and times and `HARMONY_VERSION`, so the next run loads it in well
under a second without importing music21.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jamd.config import Config
from jamd.errors import DataError
from jamd.music import chords
from jamd.tokens import STEPS_PER_QUARTER

from .corpus import ACCEPTABLE_DURATIONS, ENCODING_VERSION, cache_dir, load_cached, parse_lock, split_by_name
from .corpus_sources import Source, Unit, resolve

log = logging.getLogger("jamd.corpus")

# Bump whenever the labelling changes: it is part of the cache key.
HARMONY_VERSION = 1
NO_BASS = -1  # the bass of a beat where nothing sounds
MAX_WORKERS = 2
CHORALES = ("bach", "chorales")  # sources that mean music21's chorale list


@dataclass
class HarmonizedTune:
    name: str  # e.g. "bach/bwv269"
    symbols: list[str]  # the soprano (melody) in the LSTM's 16th encoding, in C/Am
    beats_per_bar: int  # from the time signature, in quarter-note beats (3/4: 3, 4/4: 4)
    pickup_beats: int  # beats before the first bar line (0: starts on a bar line)
    chords: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [n_beats] chord ids; empty: none
    bass: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [n_beats] bass pitch classes 0-11,
    # NO_BASS (-1) where nothing sounds
    key: str = ""  # the original key, e.g. "G major"
    shift: int = 0  # semitones added to move it to C/Am

    @property
    def n_beats(self) -> int:
        return len(self.symbols) // 4

    def beat_in_bar(self, beat: int) -> int:
        """Position of `beat` in its bar, 0 for a downbeat."""
        return (beat - self.pickup_beats) % self.beats_per_bar


# -- per beat ---------------------------------------------------------------------

def melody_by_beat(tune: HarmonizedTune) -> tuple[np.ndarray, np.ndarray]:
    """The melody of each beat: `chords.melody_features` [n_beats, 25] float32 and the
    melody head's targets `chords.onset_class` [n_beats] int64."""
    step = STEPS_PER_QUARTER
    sounding = chords.sounding_from_symbols(tune.symbols[: tune.n_beats * step])
    beats = [sounding[b * step:(b + 1) * step] for b in range(tune.n_beats)]
    feats = np.stack([chords.melody_features(s) for s in beats]) if beats else np.zeros((0, 25), np.float32)
    return feats, np.array([chords.onset_class(s) for s in beats], np.int64)


def beat_arrays(tune: HarmonizedTune, lookahead: np.ndarray | bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The model's input and targets over a chorale, with Bach's chords fed back (teacher forcing).

    `lookahead`: per beat (bool [n_beats], or one bool for all) whether the
    beat's own melody is shown (`chords.step_input`).  Returns
    ``x [n_beats, 117]`` float32, chord ids ``[n_beats]``, bass pitch classes
    ``[n_beats]`` (NO_BASS where nothing sounds: no bass target) and melody
    onset classes ``[n_beats]`` (0-11, 12 rest), all int64.  A tune without
    chords (a folk tune) gets ``N`` as every chord before and no bass.
    """
    n = tune.n_beats
    mel, onsets = melody_by_beat(tune)
    show = np.broadcast_to(np.asarray(lookahead, bool), (n,))
    chord_ids = tune.chords if len(tune.chords) == n else np.zeros(n, np.int64)
    bass = tune.bass if len(tune.bass) == n else np.full(n, NO_BASS, np.int64)
    x = np.zeros((n, chords.STEP_FEATURES), np.float32)
    for b in range(n):
        prev_bass = int(bass[b - 1]) if b and bass[b - 1] != NO_BASS else None
        chords.step_input(mel[b - 1] if b else None, int(chord_ids[b - 1]) if b else chords.NO_CHORD, prev_bass,
                          mel[b] if show[b] else None, tune.beat_in_bar(b), out=x[b])
    return x, np.asarray(chord_ids, np.int64), np.asarray(bass, np.int64), onsets


def hide_melody(x: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
    """`x` (from `beat_arrays` with lookahead everywhere, [..., 117]) with the beats where
    `lookahead` is False turned online: their current-melody slots and flag zeroed, as
    `chords.step_input` writes them; the same result as calling `beat_arrays` with `lookahead`."""
    out = x.copy()
    out[~np.asarray(lookahead, bool), chords.CUR_MELODY:chords.LOOKAHEAD_FLAG + 1] = 0.0
    return out


# -- the corpus -------------------------------------------------------------------

class HarmonyCorpus:
    """The kept chorales and the parse report (`stats`)."""

    def __init__(self, tunes: list[HarmonizedTune], source: str, stats: dict[str, Any],
                 validation_fraction: float = 0.1, split_seed: int = 0):
        self.tunes = tunes
        self.source = source
        self.stats = stats
        self.validation_fraction = validation_fraction
        self.split_seed = split_seed

    def __len__(self) -> int:
        return len(self.tunes)

    def split(self, validation_fraction: float | None = None,
              seed: int | None = None) -> tuple[list[int], list[int]]:
        """(train, validation) chorale indices, as `EncodedCorpus.split` draws them: chorales
        ordered by a hash of (seed, name), the first round(n * fraction) validate."""
        fraction = self.validation_fraction if validation_fraction is None else validation_fraction
        seed = self.split_seed if seed is None else seed
        return split_by_name([t.name for t in self.tunes], fraction, seed)

    def save(self, path: Path) -> None:
        from .checkpoints import atomic_write

        data = {"version": HARMONY_VERSION, "source": self.source, "stats": self.stats,
                "tunes": [[t.name, " ".join(t.symbols), t.beats_per_bar, t.pickup_beats, t.chords.tolist(),
                           t.bass.tolist(), t.key, t.shift] for t in self.tunes]}
        atomic_write(path, json.dumps(data))

    @classmethod
    def load(cls, path: Path, **split: Any) -> HarmonyCorpus:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != HARMONY_VERSION:
            raise ValueError("old labelling version")
        tunes = [HarmonizedTune(name, symbols.split(), bpb, pickup, np.array(c, np.int64), np.array(b, np.int64),
                                key, shift)
                 for name, symbols, bpb, pickup, c, b, key, shift in data["tunes"]]
        return cls(tunes, data["source"], data["stats"], **split)


def chorale_source(source: str) -> Source:
    """The files of `harmony_training.source` (for ``bach``: music21's bach folder, which holds
    the chorales); DataError (one line) when there are none.  Cheap: music21 is not imported."""
    return resolve("bach" if source in CHORALES else source)


def chorale_units(source: str, src: Source) -> tuple[list[Unit], int]:
    """(work units, duplicates skipped): for ``bach`` the works `music21.corpus.chorales.Iterator`
    lists, each once, named as music21 names them ("bach/bwv269"); else every file of `src`."""
    if source not in CHORALES:
        return src.units(), 0
    from music21.corpus import chorales, getWork

    listed = list(chorales.Iterator(returnType="filename"))
    names = list(dict.fromkeys(listed))
    if not names:
        raise DataError(f"harmony_training.source {source!r}: music21 lists no chorales")
    return [Unit(n, str(_work_file(n, getWork(n)))) for n in names], len(listed) - len(names)


def _work_file(name: str, found: Path | list[Path]) -> Path:
    """The file of chorale `name` where music21 finds several ("bach/bwv112.5" also matches
    bwv112.5-sc.mxl; bwv281 is there as .krn and .mxl): the exact stem, MusicXML first."""
    if not isinstance(found, list):
        return Path(found)
    stem = name.rsplit("/", 1)[-1]
    exact = [Path(f) for f in found if Path(f).stem == stem] or [Path(f) for f in found]
    return sorted(exact, key=lambda f: f.suffix.lower() not in (".mxl", ".musicxml", ".xml"))[0]


def cache_path(cfg: Config, src: Source) -> Path:
    key = src.fingerprint("harmony", HARMONY_VERSION, ENCODING_VERSION, ACCEPTABLE_DURATIONS)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", src.label).strip("-")[-40:] or "chorales"
    return cache_dir(cfg.corpus) / f"harmony-{slug}-{key}.json"


def chord_counts(tunes: list[HarmonizedTune]) -> Counter[str]:
    """Beats per chord name over `tunes`."""
    counts: Counter[int] = Counter()
    for t in tunes:
        counts.update(t.chords.tolist())
    return Counter({chords.chord_name(c): n for c, n in counts.items()})


def _stats(results: list, src: Source, files: int, duplicates: int, workers: int) -> tuple[list[HarmonizedTune], dict]:
    """The kept tunes and the report: counts per drop reason, chord distribution, meters, keys."""
    tunes = [t for _, t, _, _ in results if t is not None]
    dropped = Counter(r for _, t, r, _ in results if t is None and r is not None)
    errors = [f"{name}: {err}" for name, t, r, err in results if t is None and r is None]
    for e in errors:
        log.warning("skipping %s", e)
    counts = chord_counts(tunes)
    beats = sum(counts.values())
    return tunes, {
        "source": src.label,
        "files": files,
        "duplicates": duplicates,  # listed twice in music21's chorale list, parsed once
        "tunes_seen": len(results),
        "kept": len(tunes),
        "dropped": dict(sorted(dropped.items())),
        "parse_errors": errors,
        "beats": beats,
        "chords": dict(counts.most_common()),
        "no_chord_share": round(counts.get("N", 0) / beats, 4) if beats else 0.0,
        "no_bass_beats": int(sum(int(np.sum(t.bass == NO_BASS)) for t in tunes)),
        "meters": dict(Counter(f"{t.beats_per_bar} beats" for t in tunes).most_common()),
        "pickups": sum(t.pickup_beats > 0 for t in tunes),
        "keys": dict(Counter(t.key.split()[-1] for t in tunes if t.key).most_common()),
        "workers": workers,
    }


def summary(corpus: HarmonyCorpus) -> str:
    s = corpus.stats
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none"
    return (f"chorales {corpus.source}: {s['files']} files, {s['tunes_seen']} chorales, {s['kept']} kept, "
            f"dropped: {dropped}; {len(s['parse_errors'])} unreadable; {s['beats']} beats, "
            f"{100 * s['no_chord_share']:.1f}% N")


def load_chorales(cfg: Config, progress: bool = True, cache: bool = True) -> HarmonyCorpus:
    """The labelled chorales of `cfg.harmony_training.source`, from the cache when it is current.

    Split settings are `cfg.corpus.validation_fraction` and `split_seed`.
    Raises DataError (one line) when the source has no usable chorale.
    """
    split = {"validation_fraction": cfg.corpus.validation_fraction, "split_seed": cfg.corpus.split_seed}
    src = chorale_source(cfg.harmony_training.source)
    path = cache_path(cfg, src)
    if cache and path.is_file() and (corpus := _cached(path, split)) is not None:
        return corpus
    with parse_lock(path):
        if cache and path.is_file() and (corpus := _cached(path, split)) is not None:
            return corpus
        t0 = time.perf_counter()
        from .harmony_parse import harmonize_all  # music21 is imported only when parsing

        units, duplicates = chorale_units(cfg.harmony_training.source, src)
        workers = max(1, min(cfg.corpus.workers or MAX_WORKERS, MAX_WORKERS, len(units)))
        results = harmonize_all(units, workers, progress, src.label)
        tunes, stats = _stats(results, src, len(units), duplicates, workers)
        stats["parse_seconds"] = round(time.perf_counter() - t0, 2)
        if not tunes:
            raise DataError(f"{src.label}: no usable four-part chorales in {stats['files']} files "
                            f"({len(stats['parse_errors'])} unreadable; dropped: {stats['dropped']})")
        corpus = HarmonyCorpus(tunes, src.label, stats, **split)
        try:
            corpus.save(path)
            stats["cache_file"] = str(path)
        except OSError as exc:
            log.warning("cannot write the chorale cache %s (%s); the next run parses again", path, exc)
        stats["cached"] = False
        log.info("%s (parsed in %.1f s)", summary(corpus), stats["parse_seconds"])
        return corpus


def _cached(path: Path, split: dict) -> HarmonyCorpus | None:
    return load_cached(path, lambda p: HarmonyCorpus.load(p, **split), summary)
