"""The corpus cache on disk: a journal of finished shards, and the shards.

A store is one folder per parse setting (melody part, MIDI channels,
`ENCODING_VERSION`), shared by every source parsed with it:

    store-<key>/journal.jsonl       one JSON line per finished shard
    store-<key>/shard-000012.npz    up to `corpus.shard_tunes` kept tunes

A journal line names its shard and every source file whose tunes it holds,
with the file's size and mtime (ns) and the outcome of each of its tunes
(kept, dropped and why, unreadable), so a later run knows which files are
current without opening a shard.  A later line about a file replaces the
earlier one.  The shard is written (to a temporary name, then renamed) before
its line is appended, and a line is read only when it ends in a newline: a
run killed at any moment loses at most the shard it was filling, and a
shard no line names is deleted by the next parse.

A shard holds uint8 codes independent of any vocabulary (0-127 a note's
pitch, 128 hold, 129 rest), offsets (int64, tunes + 1) and a JSON list of
each tune's [name, key, shift, meter, pickup_steps, meter_changes].
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jamd.tokens import HOLD, REST

HOLD_CODE, REST_CODE = 128, 129
JOURNAL = "journal.jsonl"
_SHARD = re.compile(r"^shard-(\d{6})\.npz$")


def to_codes(symbols: list[str]) -> np.ndarray:
    """A tune's symbols as shard codes (uint8, one per 16th step)."""
    return np.array([HOLD_CODE if s == HOLD else REST_CODE if s == REST else int(s) for s in symbols],
                    dtype=np.uint8)


CODE_SYMBOLS = tuple(str(p) for p in range(128)) + (HOLD, REST)  # the symbol of each code 0..129


@dataclass
class FileEntry:
    """What the journal knows about one source file."""

    size: int
    mtime_ns: int
    shard: str | None  # the shard holding its kept tunes (None: it has none)
    # one per tune seen: ["k", name, index in shard, key-from or null, meter, pickup steps, meter changes,
    # length in steps] | ["d", name, reason, detail or null] | ["e", name, message]
    records: list[list]
    pitches: list[int]  # pitches of its kept tunes (the corpus vocabulary is their union)
    tokens: int  # 16th steps of its kept tunes


def write_shard(folder: Path, name: str, codes: list[np.ndarray], meta: list[list]) -> None:
    """Write one shard atomically (a temporary file renamed over the final name)."""
    offsets = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in codes], out=offsets[1:])
    ids = np.concatenate(codes) if codes else np.zeros(0, dtype=np.uint8)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(f, ids=ids, offsets=offsets, meta=blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / name)


def read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """(codes uint8, offsets int64, per-tune meta) of one shard."""
    with np.load(path, allow_pickle=False) as z:
        return z["ids"], z["offsets"].astype(np.int64), json.loads(z["meta"].tobytes().decode())


def append_journal(folder: Path, shard: str | None, files: dict[str, FileEntry]) -> None:
    """One line for a finished shard, written and synced in one piece."""
    line = json.dumps({"shard": shard, "files": {p: [e.size, e.mtime_ns, e.shard, e.records, e.pitches, e.tokens]
                                                  for p, e in files.items()}}) + "\n"
    with open(folder / JOURNAL, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_journal(folder: Path) -> dict[str, FileEntry]:
    """Every file the journal knows, its latest line winning; a last line cut short by a crash is ignored."""
    out: dict[str, FileEntry] = {}
    try:
        f = open(folder / JOURNAL, encoding="utf-8")
    except FileNotFoundError:
        return out
    with f:
        for line in f:
            if not line.endswith("\n"):
                break  # a line a killed run did not finish
            try:
                files = json.loads(line)["files"]
            except (ValueError, KeyError, TypeError):
                continue
            for path, (size, mtime, shard, records, pitches, tokens) in files.items():
                out[path] = FileEntry(size, mtime, shard, records, pitches, tokens)
    return out


def shard_names(folder: Path) -> Iterator[str]:
    for p in folder.glob("shard-*.npz"):
        if _SHARD.match(p.name):
            yield p.name


def next_shard_number(folder: Path) -> int:
    return max((int(_SHARD.match(n).group(1)) for n in shard_names(folder)), default=-1) + 1  # type: ignore[union-attr]


def remove_orphans(folder: Path, known: dict[str, FileEntry]) -> int:
    """Delete shards no journal line names, and temporary files (a killed run's); how many."""
    used = {e.shard for e in known.values()}
    gone = 0
    for name in list(shard_names(folder)):
        if name not in used:
            (folder / name).unlink(missing_ok=True)
            gone += 1
    for tmp in folder.glob(".shard-*.tmp"):
        tmp.unlink(missing_ok=True)
    return gone
