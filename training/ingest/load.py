"""`load_corpus` for every source: bring the store up to date, then open the corpus on it.

Each source file is looked up in the store's journal by its path, size and
mtime: only new or changed files are parsed (all of them with cache=False),
so adding 1,000 MIDI files to a folder of 170,000 parses 1,000.  The corpus
is then every kept tune of the source's files, in file order; its vocabulary
is the union of their pitches and is written, with the report, to the
corpus's manifest (``manifest-<source>.json`` in the store).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from jamd.config import CorpusConfig
from jamd.errors import DataError
from jamd.tokens import Vocabulary

from ..corpus import ACCEPTABLE_DURATIONS, ENCODING_VERSION, LIMIT_REASONS, cache_dir, parse_lock
from ..corpus_sources import Source, rebase_name, resolve
from . import shards
from .build import FileJob, parse_files
from .sharded import ShardedCorpus
from .split import ERK_NAME

log = logging.getLogger("jamd.corpus")


def store_dir(cfg: CorpusConfig, channels: tuple[int, ...]) -> Path:
    """The store of this parse setting (melody part, MIDI channels, encoding version)."""
    key = json.dumps([cfg.part, ENCODING_VERSION, ACCEPTABLE_DURATIONS, list(channels)])
    return cache_dir(cfg) / f"store-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _jobs(src: Source) -> list[FileJob]:
    jobs = []
    for f, root, label in src.file_origins():
        try:
            st = f.stat()
        except OSError:  # a dangling link: parsed (and reported unreadable) until it points somewhere
            jobs.append(FileJob(f, root, label, -1, -1))
            continue
        jobs.append(FileJob(f, root, label, st.st_size, st.st_mtime_ns))
    return jobs


def _stale(jobs: list[FileJob], known: dict[str, shards.FileEntry]) -> list[FileJob]:
    out = []
    for j in jobs:
        e = known.get(str(j.path))
        if e is None or (e.size, e.mtime_ns) != (j.size, j.mtime_ns):
            out.append(j)
    return out


def update_store(folder: Path, jobs: list[FileJob], cfg: CorpusConfig, progress: bool, label: str,
                 channels: tuple[int, ...], cache: bool = True) -> tuple[dict[str, shards.FileEntry], int, float]:
    """Parse the files of `jobs` the store lacks (all with cache=False); (journal, files parsed, seconds)."""
    from ..corpus_encode import MAX_UNIT_SECONDS

    folder.mkdir(parents=True, exist_ok=True)
    known = shards.read_journal(folder)
    todo = _stale(jobs, known) if cache else jobs
    if not todo:
        return known, 0, 0.0
    with parse_lock(folder / "store"):
        known = shards.read_journal(folder)  # another run may have parsed them meanwhile
        todo = _stale(jobs, known) if cache else jobs
        if not todo:
            return known, 0, 0.0
        t0 = time.perf_counter()
        shards.remove_orphans(folder, known)
        parse_files(folder, todo, cfg.part, cfg.workers, progress, label, channels, cfg.shard_tunes, MAX_UNIT_SECONDS)
        return shards.read_journal(folder), len(todo), time.perf_counter() - t0


def load_sharded(cfg: CorpusConfig, progress: bool = True, cache: bool = True,
                 input_channels: tuple[int, ...] = ()) -> ShardedCorpus:
    """The corpus of `cfg.source` (see the module docstring); DataError when it keeps no tune."""
    return load_source(cfg, resolve(cfg.source), progress, cache, input_channels)


def load_source(cfg: CorpusConfig, src: Source, progress: bool = True, cache: bool = True,
                input_channels: tuple[int, ...] = ()) -> ShardedCorpus:
    """The corpus of the files of `src` (`load_sharded` with the files given, as the ingest bench
    gives its MIDI files); DataError when it keeps no tune."""
    from ..corpus_encode import worker_count

    t0 = time.perf_counter()
    channels = tuple(input_channels)
    folder = store_dir(cfg, channels)
    jobs = _jobs(src)
    known, parsed, seconds = update_store(folder, jobs, cfg, progress, src.label, channels, cache)
    current = {str(j.path) for j in _stale(jobs, known)}
    if current:  # the store could not be written: parsing failed to record them
        raise DataError(f"{folder}: the corpus store did not record {len(current)} files (is it writable?)")
    names: list[str] = []
    shard_of: list[str] = []
    local: list[int] = []
    lengths: list[int] = []
    pitches: set[int] = set()
    stats = _stats(src, jobs, known, names, shard_of, local, lengths, pitches, parsed_now=parsed > 0)
    stats.update(workers=worker_count(parsed, cfg.workers) if parsed else 0, parse_seconds=round(seconds, 2),
                 parsed_files=parsed, cached=parsed == 0, cache_file=str(folder),
                 shards=len({s for s in shard_of}))
    if not names:
        dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "none"
        raise DataError(f"{src.label}: no usable tunes in {stats['files']} files "
                        f"({len(stats['parse_errors'])} unreadable; dropped: {dropped})")
    vocab = Vocabulary.from_pitches(pitches)
    erk_names = _erk_names(cfg, src, jobs, names, progress, channels, cache and parsed == 0)
    corpus = ShardedCorpus(folder, vocab, src.label, stats, names, shard_of, np.array(local, dtype=np.int64),
                           np.array(lengths, dtype=np.int64), cfg.validation_fraction, cfg.split_seed, erk_names)
    _write_manifest(folder, src, vocab, stats)
    stats["load_seconds"] = round(time.perf_counter() - t0, 3)
    how = f"parsed {parsed} files in {seconds:.1f} s" if parsed else "from cache"
    log.info("corpus %s: %d files, %d kept (%s, %.2f s)", src.label, stats["files"], stats["kept"], how,
             stats["load_seconds"])
    return corpus


def _stats(src: Source, jobs: list[FileJob], known: dict[str, shards.FileEntry], names: list[str],
           shard_of: list[str], local: list[int], lengths: list[int], pitches: set[int], parsed_now: bool) -> dict:
    """The report of `jamd corpus`, filling the tune index lists on the way."""
    dropped: Counter[str] = Counter()
    errors: list[str] = []
    skipped: list[str] = []
    midi_keys: Counter[str] = Counter()
    meters: Counter[str] = Counter()
    sources: dict[str, dict[str, int]] = {}
    seen = changes = pickups = 0
    for job in jobs:
        entry = known[str(job.path)]
        share = sources.setdefault(job.origin, {"files": 0, "tunes": 0, "tokens": 0})
        share["files"] += 1
        pitches.update(entry.pitches)
        for rec in entry.records:
            seen += 1
            name = rebase_name(rec[1], job.path, job.root)  # recorded under the root of the run that parsed it
            if rec[0] == "k":
                _, _, k, key_from, meter, pickup, change, length = rec
                names.append(name)
                shard_of.append(entry.shard)  # type: ignore[arg-type]
                local.append(k)
                lengths.append(length)
                share["tunes"] += 1
                share["tokens"] += length
                meters[meter] += 1
                changes += bool(change)
                pickups += pickup > 0
                if key_from:
                    midi_keys[key_from] += 1
            elif rec[0] == "d":
                _, _, reason, detail = rec
                dropped[reason] += 1
                if reason in LIMIT_REASONS:
                    skipped.append(f"{name}: {reason}" + (f" ({detail})" if detail else ""))
                    if parsed_now:
                        log.warning("skipping %s: %s%s", job.root / name, reason, f" ({detail})" if detail else "")
            else:
                errors.append(name)
                if parsed_now:
                    log.warning("skipping %s: cannot read it (%s)", job.root / name, rec[2])
    return {
        "files": len(jobs),
        "tunes_seen": seen,  # kept + sum(dropped) + len(parse_errors)
        "kept": len(names),
        "dropped": dict(sorted(dropped.items())),
        "parse_errors": errors,
        "skipped": skipped,  # files over a limit, "name: reason (detail)"
        "midi_keys": dict(sorted(midi_keys.items())),  # kept MIDI files by where their key came from
        "tokens": int(sum(lengths)),
        "meters": dict(meters.most_common()),
        "meter_changes": changes,
        "pickups": pickups,
        "sources": sources,  # each source's share: files, kept tunes, tokens
    }


def _erk_names(cfg: CorpusConfig, src: Source, jobs: list[FileJob], names: list[str], progress: bool,
               channels: tuple[int, ...], cache: bool) -> list[str] | None:
    """The tunes the Erk corpus keeps, when this corpus holds some of Erk's tunes but not all its files
    (else None: its own Erk tunes are all of Erk's)."""
    if not any(ERK_NAME.match(n) for n in names):
        return None
    try:
        erk = resolve("erk")
    except DataError:
        return None
    have = {str(j.path) for j in jobs}
    erk_jobs = _jobs(erk)
    if all(str(j.path) in have for j in erk_jobs):
        return None
    known, _, _ = update_store(store_dir(cfg, channels), erk_jobs, cfg, progress, "erk (its split)", channels)
    return [rebase_name(rec[1], j.path, j.root) for j in erk_jobs for rec in known[str(j.path)].records
            if rec[0] == "k"]


def _write_manifest(folder: Path, src: Source, vocab: Vocabulary, stats: dict) -> None:
    """The corpus's vocabulary, shards and report, for people and tools (the journal is the truth)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", src.label).strip("-")[-40:] or "corpus"
    path = folder / f"manifest-{slug}.json"
    data = {"version": ENCODING_VERSION, "source": src.label, "vocab": list(vocab.symbols), "stats": stats}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the corpus manifest %s (%s)", path, exc)
