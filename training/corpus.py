"""The training corpus: tunes in the seed's 16th-note encoding, parsed once, then cached.

`load_corpus(cfg.corpus)` resolves `corpus.source` (folders and music21
corpus collections, one or a list, see `corpus_sources`), parses every tune
in worker processes (`corpus_encode`: music21 for ABC, Humdrum and MusicXML,
symusic for MIDI files), keeps the monophonic tunes whose durations the seed
accepts, moves them to C major / A minor and encodes them.  The results go
to a sharded store keyed per source file by path, size and mtime, the melody
part and `ENCODING_VERSION` (`jamd.training.ingest`): the next run parses
only new or changed files and loads without importing music21.

    corpus = load_corpus(cfg.corpus)
    train, val = corpus.split()                      # tune indices, fixed by tune name
    x = corpus.stream(train, sequence_length=64)     # ids, tunes joined by 64 "/" as in the seed
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jamd.config import CorpusConfig
from jamd.errors import DataError
from jamd.tokens import DELIMITER, Vocabulary, is_pitch, steps_per_bar

from .ingest.split import split_by_name as split_by_name  # re-exported: harmony_data splits with it
from .ingest.split import split_with_erk

log = logging.getLogger("jamd.corpus")

# Bump whenever the encoding or the filters change: it is part of the cache key.
# 2: MIDI files through jamd's reader (melody channels, restrikes), limits, key report.
ENCODING_VERSION = 2
# Drop reasons that are limits: the report names each file that hit one.
LIMIT_REASONS = ("over the size limit", "over the time limit", "too long")
# The seed's filter, in quarter lengths: 16th, 8th, dotted 8th, quarter,
# dotted quarter, half, dotted half, whole.
ACCEPTABLE_DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


class SkipTune(Exception):
    """A tune the corpus does not keep; `reason` is a short stats key."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TuneRecord(NamedTuple):
    """One kept tune as a streaming pipeline reads it."""

    name: str
    ids: np.ndarray  # int64 ids in the corpus vocabulary, one per 16th step (C major / A minor)
    bar_steps: int  # 16th steps per bar of its first meter (jamd.tokens.steps_per_bar)
    pickup_steps: int  # anacrusis length in 16th steps
    shift: int  # semitones that moved it to C/Am: its original key is `-shift` away


class MissingSymbolError(DataError, KeyError):
    """A tune holds a symbol that the requested vocabulary lacks."""

    __str__ = Exception.__str__  # one plain line, not KeyError's quoted repr


@dataclass
class Tune:
    name: str  # stable and unique, e.g. "essenFolksong/erk5.abc#3"; the split hashes it
    symbols: list[str]  # one per 16th step, normalised to C major / A minor
    key: str  # the original key, e.g. "G major" (music21 spelling: "B- minor")
    shift: int  # semitones added to every pitch (-6..+5)
    meter: str  # the first time signature, e.g. "6/8"
    pickup_steps: int  # length of the anacrusis in 16th steps (0: starts on a bar line)
    meter_changes: bool = False  # True: later bars use other time signatures than `meter`


def encode_score(score: Any, part: int = 0) -> Tune:
    """Encode one music21 score's melody part; raises SkipTune(reason) for dropped tunes."""
    from .corpus_encode import encode_score as encode

    return encode(score, part)


class JoinedStream:
    """`stream`, shared by the in-memory `EncodedCorpus` and the sharded `ingest.sharded.ShardedCorpus`:
    anything with `vocab` and `ids(index, vocab)`."""

    vocab: Vocabulary

    def ids(self, index: int, vocab: Vocabulary | None = None) -> np.ndarray:
        raise NotImplementedError

    def stream(self, indices: Iterable[int], sequence_length: int,
               vocab: Vocabulary | None = None) -> np.ndarray:
        """Tunes joined as in the seed: each followed by `sequence_length` "/" symbols.

        (The seed writes them as one 64-character word, which its vocabulary then
        holds as a single symbol; here each "/" is one step.)
        """
        delimiter = np.full(sequence_length, (vocab or self.vocab).id(DELIMITER), dtype=np.int64)
        pieces: list[np.ndarray] = []
        for i in indices:
            pieces += [self.ids(i, vocab), delimiter]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


class EncodedCorpus(JoinedStream):
    """Kept tunes, their vocabulary and the parse report.

    The ids of all tunes sit in one uint8 array (`Vocabulary` never exceeds
    131 symbols) with offsets, so `ids` and `stream` are slices, not loops.
    """

    def __init__(self, vocab: Vocabulary, tunes: list[Tune], source: str, stats: dict,
                 validation_fraction: float = 0.1, split_seed: int = 0):
        self.vocab = vocab
        self.tunes = tunes
        self.source = source
        self.stats = stats
        self.validation_fraction = validation_fraction
        self.split_seed = split_seed
        lengths = [len(t.symbols) for t in tunes]
        self._offsets = np.zeros(len(tunes) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        self._ids = np.empty(int(self._offsets[-1]), dtype=np.uint8)
        for t, a in zip(tunes, self._offsets[:-1], strict=True):
            self._ids[a : a + len(t.symbols)] = vocab.encode(t.symbols)
        self._tables: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def from_tunes(cls, tunes: list[Tune], source: str, stats: dict, **split: Any) -> EncodedCorpus:
        pitches = {int(s) for t in tunes for s in set(t.symbols) if is_pitch(s)}
        return cls(Vocabulary.from_pitches(pitches), tunes, source, stats, **split)

    def __len__(self) -> int:
        return len(self.tunes)

    def __repr__(self) -> str:
        return f"EncodedCorpus({self.source!r}, {len(self)} tunes, {self.n_tokens} tokens, {self.vocab!r})"

    @property
    def n_tokens(self) -> int:
        return int(self._offsets[-1])

    def split(self, validation_fraction: float | None = None,
              seed: int | None = None) -> tuple[list[int], list[int]]:
        """(train, validation) tune indices, fixed by tune name and seed.

        Tunes are ordered by a hash of (seed, name) and the first
        round(n * fraction) go to validation: the same tune always lands on the
        same side, whatever order the files were parsed in.
        """
        fraction = self.validation_fraction if validation_fraction is None else validation_fraction
        seed = self.split_seed if seed is None else seed
        return split_with_erk([t.name for t in self.tunes], fraction, seed)

    def _table(self, vocab: Vocabulary) -> np.ndarray:
        """Map this corpus's ids to `vocab`'s ids (-1: missing there)."""
        table = self._tables.get(vocab.symbols)
        if table is None:
            table = np.array([vocab.id(s) if s in vocab else -1 for s in self.vocab.symbols], dtype=np.int64)
            self._tables[vocab.symbols] = table
        return table

    def ids(self, index: int, vocab: Vocabulary | None = None) -> np.ndarray:
        """One tune as int64 ids, in `vocab` (a model's) when given."""
        own = self._ids[self._offsets[index] : self._offsets[index + 1]].astype(np.int64)
        if vocab is None or vocab == self.vocab:
            return own
        out = self._table(vocab)[own]
        if out.size and out.min() < 0:
            symbol = self.vocab.symbols[int(own[np.argmin(out)])]
            raise MissingSymbolError(
                f"tune {self.tunes[index].name}: symbol {symbol!r} is not in the vocabulary {vocab!r}"
            )
        return out

    def iter_tunes(self, indices: Iterable[int], seed: int | None = None) -> Iterator[TuneRecord]:
        """The tunes `indices` as `TuneRecord`s (ids in this corpus's vocabulary), in the given
        order, or shuffled by `seed`.  A sharded corpus reads them shard by shard, so this is
        the one way a streaming pipeline touches the tunes."""
        order = list(indices)
        if seed is not None:
            np.random.default_rng(seed).shuffle(order)
        for i in order:
            t = self.tunes[i]
            yield TuneRecord(t.name, self.ids(i), steps_per_bar(t.meter), t.pickup_steps, t.shift)

    # -- cache ------------------------------------------------------------------

    def save(self, path: Path) -> None:
        meta = {
            "version": ENCODING_VERSION,
            "source": self.source,
            "vocab": list(self.vocab.symbols),
            "tunes": [[t.name, t.key, t.shift, t.meter, t.pickup_steps, t.meter_changes] for t in self.tunes],
            "stats": self.stats,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # other runs may read meanwhile
        with open(tmp, "wb") as f:
            # JSON as UTF-8 bytes: a numpy str array would spend 4 bytes per character
            blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            np.savez(f, ids=self._ids, offsets=self._offsets, meta=blob)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, **split: Any) -> EncodedCorpus:
        with np.load(path, allow_pickle=False) as z:
            ids, offsets, raw = z["ids"], z["offsets"], z["meta"]
        meta = json.loads(raw.tobytes().decode() if raw.dtype == np.uint8 else str(raw))
        if meta.get("version") != ENCODING_VERSION:
            raise ValueError("old encoding version")
        vocab = Vocabulary(meta["vocab"])
        symbols = np.array(vocab.symbols, dtype=object)[ids].tolist()
        tunes = [
            Tune(name, symbols[offsets[i] : offsets[i + 1]], key, shift, meter, pickup, changes)
            for i, (name, key, shift, meter, pickup, changes) in enumerate(meta["tunes"])
        ]
        corpus = cls.__new__(cls)
        corpus.vocab, corpus.tunes, corpus.source, corpus.stats = vocab, tunes, meta["source"], meta["stats"]
        corpus.validation_fraction = split.get("validation_fraction", 0.1)
        corpus.split_seed = split.get("split_seed", 0)
        corpus._ids, corpus._offsets, corpus._tables = ids, offsets.astype(np.int64), {}
        return corpus


# -- building -------------------------------------------------------------------

def cache_dir(cfg: CorpusConfig) -> Path:
    """corpus.cache_dir, or (when empty, the default) the per-user cache folder:
    $XDG_CACHE_HOME/jamd/corpus, else ~/.cache/jamd/corpus (XDG Base Directory spec;
    a relative XDG_CACHE_HOME is ignored, as the spec says), so every command run
    from any folder shares one cache."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "jamd" / "corpus"


def summary(corpus: EncodedCorpus) -> str:
    s = corpus.stats
    dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "none"
    return (f"corpus {corpus.source}: {s['files']} files, {s['tunes_seen']} tunes, {s['kept']} kept, "
            f"dropped: {dropped}; {len(s['parse_errors'])} unreadable")


def load_cached(path: Path, load: Callable[[Path], Any], describe: Callable[[Any], str]) -> Any | None:
    """`load(path)` of a cached corpus (anything with a `stats` dict), timed and logged with
    `describe(corpus)`; None, with a warning line, when the cache is unreadable (it is parsed again)."""
    t0 = time.perf_counter()
    try:
        corpus = load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cache %s unreadable (%s): parsing again", path, exc)
        return None
    corpus.stats.update(cached=True, load_seconds=round(time.perf_counter() - t0, 3), cache_file=str(path))
    log.info("%s (from cache in %.2f s)", describe(corpus), corpus.stats["load_seconds"])
    return corpus


@contextlib.contextmanager
def parse_lock(path: Path) -> Iterator[None]:
    """One parser per cache entry: another jamd asking for the same corpus waits, then loads it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; two runs just both parse
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "ab")
    except OSError:
        yield  # an unwritable cache folder: saving will warn about it
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another jamd process that is parsing this corpus (%s)", path.name)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def load_corpus(cfg: CorpusConfig, progress: bool = True, cache: bool = True,
                input_channels: tuple[int, ...] = ()) -> Any:
    """The corpus of `cfg.source` (one source or a list), from the store when it is current.

    Returns a `jamd.training.ingest.sharded.ShardedCorpus` (the API of `EncodedCorpus`):
    only new or changed files are parsed, in shards (`jamd.training.ingest`).
    cache=False parses every file again.  input_channels: the melody channels of MIDI
    files (live.input_channels; empty: every channel but 10, General MIDI percussion).
    Raises DataError when the source keeps no tune.
    """
    from .ingest.load import load_sharded

    return load_sharded(cfg, progress, cache, tuple(input_channels))
