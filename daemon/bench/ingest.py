"""`jamd bench --suite ingest --folder DIR`: corpus ingestion rate, symusic against music21.

On the MIDI files under DIR (e.g. written by `jamd corpus --source folk
--write-midi DIR`), in one run:

- **symusic**: the whole ingestion as `jamd corpus` runs it (worker
  processes, shards, journal) into a fresh temporary cache: files/s, and
  files/s per worker process;
- **music21**: `converter.parse` and the corpus's encoding of each file
  (how a MIDI file was read before jamd had its own reader), one process,
  on a random subset of `--m21-files` files (music21 takes ~0.2 s a file);
- **jamd's reader** (mido, pure Python), one process, on the same subset.

Rates per core are files per CPU second (the workers' and the parent's CPU
time together; getrusage), so other load on the machine slows the wall clock
but not them; the projection for 170,000 files uses the wall-clock rate of
this run, and the per-core rate for 16 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import Config
from ..errors import DataError, UsageError

PROJECTED_FILES = 170_000


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the parser workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rate(files: list[Path], encode) -> tuple[float, float]:
    """(files per wall second, files per CPU second) of `encode` over `files`, in this process."""
    t0, c0 = time.perf_counter(), _cpu()
    for f in files:
        encode(f)
    return len(files) / (time.perf_counter() - t0), len(files) / (_cpu() - c0)


def run(args: argparse.Namespace, cfg: Config) -> dict:
    from jamd.training.corpus_encode import _encode_scores, encode_midi
    from jamd.training.corpus_sources import Source, Unit, midi_files
    from jamd.training.ingest.load import load_source

    if not getattr(args, "folder", None):  # Path("") is ".": never benchmark the current folder by default
        raise UsageError("--suite ingest needs --folder DIR, a folder of MIDI files "
                         "(write one: jamd corpus --source folk --write-midi DIR)")
    folder = Path(args.folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"--folder {folder}: not a folder (write one: jamd corpus --source folk --write-midi DIR)")
    # the MIDI files as `jamd corpus` lists them (a dangling link too: unreadable in both), and only
    # those: every reader below is timed on them, whatever else the folder holds
    files = midi_files(folder.resolve())
    if not files:
        raise DataError(f"--folder {folder}: no .mid files below it")
    workers = cfg.corpus.workers or os.cpu_count() or 1
    subset = random.Random(0).sample(files, min(len(files), 40 if args.quick else getattr(args, "m21_files", 300)))

    with tempfile.TemporaryDirectory(prefix="jamd-bench-ingest-") as cache:
        corpus_cfg = replace(cfg.corpus, source=str(folder), cache_dir=cache, workers=workers)
        src = Source(str(folder), folder.resolve(), tuple(files), f"the MIDI files of {folder}")
        t0, c0 = time.perf_counter(), _cpu()
        corpus = load_source(corpus_cfg, src, progress=not args.quick, cache=False)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    # the parent's peak memory while parsing (kB on Linux): bounded by a shard, not the corpus
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    used = corpus.stats["workers"]
    symusic_rate = len(files) / seconds
    m21_wall, m21_rate = _rate(subset, lambda f: _encode_scores(Unit(f.name, str(f)), 0))
    jamd_wall, jamd_rate = _rate(subset, lambda f: encode_midi(Unit(f.name, str(f)), 0, reader="jamd"))
    # per core = per CPU second (workers and the parent together): other processes on the machine
    # then slow the wall clock, not the figure
    per_core = len(files) / cpu
    figures = {
        "files": len(files), "kept": corpus.stats["kept"], "dropped": corpus.stats["dropped"],
        "unreadable": len(corpus.stats["parse_errors"]), "workers": used, "cpu_count": os.cpu_count(),
        "symusic_seconds": round(seconds, 2), "symusic_files_per_s": round(symusic_rate, 1),
        "symusic_cpu_seconds": round(cpu, 2), "parent_peak_rss_mb": round(rss_mb, 1),
        "symusic_files_per_s_per_core": round(per_core, 1),
        "music21_files": len(subset), "music21_files_per_s_per_core": round(m21_rate, 2),
        "music21_files_per_wall_s": round(m21_wall, 2),
        "jamd_reader_files_per_s_per_core": round(jamd_rate, 1), "load_average": os.getloadavg()[0],
        "speedup_vs_music21": round(per_core / m21_rate, 1),
        "projected_170k_minutes_this_machine": round(PROJECTED_FILES / symusic_rate / 60, 1),
        "projected_170k_minutes_music21_same_cores": round(PROJECTED_FILES / (m21_rate * used) / 60, 1),
        "projected_170k_minutes_16_cores": round(PROJECTED_FILES / (per_core * 16) / 60, 1),
    }
    print(f"corpus ingestion, {len(files)} MIDI files under {folder} ({used} worker processes, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}); per core = per CPU second\n")
    print("| reader | files | files/s | files/s/core | 170,000 files |")
    print("|---|---:|---:|---:|---:|")
    print(f"| symusic (jamd corpus: workers, shards) | {len(files)} | {symusic_rate:.0f} | {per_core:.0f} | "
          f"{figures['projected_170k_minutes_this_machine']} min on {used} cores, "
          f"{figures['projected_170k_minutes_16_cores']} min on 16 |")
    print(f"| music21 (converter.parse + encoding) | {len(subset)} | | {m21_rate:.2f} | "
          f"{figures['projected_170k_minutes_music21_same_cores']} min on {used} cores |")
    print(f"| jamd's reader (mido) + encoding | {len(subset)} | | {jamd_rate:.1f} | |")
    print(f"\nsymusic is {figures['speedup_vs_music21']}x music21 per core; kept {corpus.stats['kept']}, "
          f"dropped {sum(corpus.stats['dropped'].values())}, unreadable {figures['unreadable']}; "
          f"parent's peak RSS while parsing {rss_mb:.0f} MB")
    return figures
