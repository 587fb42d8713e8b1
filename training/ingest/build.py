"""Parse source files into the store, flushing a shard every `shard_tunes` kept tunes.

Work goes to worker processes one unit (a file, or one ABC tune) at a time,
with at most `IN_FLIGHT_PER_WORKER` units per worker submitted ahead, and
results come back in order; a file's tunes join the shard being filled once
all its units are back, and a shard is written, then its journal line
appended (`shards`), as soon as it is full.  So memory holds one shard's
tunes and a bounded window of work whatever the corpus size, and a killed
run loses at most the shard in progress.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..corpus_sources import Unit, file_units
from . import shards
from .shards import FileEntry

log = logging.getLogger("jamd.corpus")
IN_FLIGHT_PER_WORKER = 8  # batches submitted ahead per worker
BATCH = 16  # units per task: one MIDI file is ~3 ms of work, a task's round trip ~0.1 ms


def _encode_batch(jobs: list[tuple]) -> list[list]:
    """Each unit's results, compact: (name, [name, key, shift, meter, pickup, changes] and the tune's
    shard codes, or None and None, drop reason, detail).  Codes travel between processes as a few
    hundred bytes, where the symbols would be a few hundred strings."""
    from ..corpus_encode import encode_unit

    out = []
    for job in jobs:
        res = []
        for name, tune, reason, error in encode_unit(job):
            if tune is None:
                res.append((name, None, None, reason, error))
            else:
                meta = [tune.name, tune.key, tune.shift, tune.meter, tune.pickup_steps, tune.meter_changes]
                res.append((name, meta, shards.to_codes(tune.symbols), reason, error))
        out.append(res)
    return out


@dataclass(frozen=True)
class FileJob:
    path: Path
    root: Path
    origin: str  # the source's label
    size: int
    mtime_ns: int


class _ShardWriter:
    def __init__(self, folder: Path, shard_tunes: int):
        self.folder, self.shard_tunes = folder, shard_tunes
        self.number = shards.next_shard_number(folder)
        self.codes: list = []
        self.meta: list[list] = []
        self.files: dict[str, FileEntry] = {}
        self.written = 0

    @property
    def name(self) -> str:
        return f"shard-{self.number:06d}.npz"

    def add(self, job: FileJob, results: list) -> None:
        records: list[list] = []
        pitches: set[int] = set()
        tokens = 0
        for name, meta, codes, reason, error in results:
            if meta is not None:
                _, _, _, meter, pickup, changes = meta
                records.append(["k", name, len(self.codes), error, meter, pickup, changes, len(codes)])
                self.codes.append(codes)
                self.meta.append(meta)
                pitches.update(int(p) for p in np.unique(codes) if p < shards.HOLD_CODE)
                tokens += len(codes)
            elif reason is not None:
                records.append(["d", name, reason, error])
            else:
                records.append(["e", name, error])
        shard = self.name if any(r[0] == "k" for r in records) else None
        self.files[str(job.path)] = FileEntry(job.size, job.mtime_ns, shard, records, sorted(pitches), tokens)
        if len(self.codes) >= self.shard_tunes:
            self.flush()

    def flush(self) -> None:
        if not self.files:
            return
        shard = self.name if self.codes else None
        if shard is not None:
            shards.write_shard(self.folder, shard, self.codes, self.meta)
            self.number += 1
            self.written += 1
        shards.append_journal(self.folder, shard, self.files)
        self.codes, self.meta, self.files = [], [], {}


def _units(jobs: Sequence[FileJob]) -> Iterator[tuple[int, Unit]]:
    for i, job in enumerate(jobs):
        units = file_units(job.path, job.root, job.origin)
        for unit in units:
            yield i, unit
        if not units:
            yield i, Unit(job.path.name, str(job.path), None, job.origin)


def parse_files(folder: Path, jobs: Sequence[FileJob], part: int, workers: int, progress: bool, label: str,
                channels: tuple[int, ...], shard_tunes: int, seconds: float) -> int:
    """Parse `jobs` into the store at `folder`; the number of shards written."""
    from ..corpus_encode import worker_count

    writer = _ShardWriter(folder, shard_tunes)
    pending: dict[int, list] = {}  # file index -> its results so far
    counts: dict[int, int] = {}
    unit_list = list(_units(jobs))  # (file index, unit): small (paths, and ABC text of folk tunes)
    for i, _ in unit_list:
        counts[i] = counts.get(i, 0) + 1
    n = worker_count(len(unit_list), workers)

    def done(i: int, res: list) -> None:
        pending.setdefault(i, []).extend(res)
        counts[i] -= 1
        if counts[i] == 0:
            writer.add(jobs[i], pending.pop(i))

    with tqdm(total=len(unit_list), desc=f"parsing {label}", unit="tune", disable=not progress) as bar:
        if n == 1:
            for i, unit in unit_list:
                done(i, _encode_batch([(unit, part, channels, seconds)])[0])
                bar.update()
        else:
            batches = [unit_list[k:k + BATCH] for k in range(0, len(unit_list), BATCH)]
            with ProcessPoolExecutor(n) as pool:
                window: deque[tuple[list, Future]] = deque()

                def take() -> None:
                    batch, fut = window.popleft()
                    for (i, _), res in zip(batch, fut.result(), strict=True):
                        done(i, res)
                    bar.update(len(batch))

                for batch in batches:
                    jobs_ = [(unit, part, channels, seconds) for _, unit in batch]
                    window.append((batch, pool.submit(_encode_batch, jobs_)))
                    if len(window) >= n * IN_FLIGHT_PER_WORKER:
                        take()
                while window:
                    take()
    writer.flush()
    return writer.written
