"""Write a corpus's tunes as MIDI files with music21: `jamd corpus --write-midi DIR`.

Each tune of the source (an ABC tune, a Humdrum or MusicXML file) is parsed
by music21 and written as one Standard MIDI File under DIR, at
``DIR/<source-relative path>/<tune number>.mid``: real MIDI files for the
ingestion benchmark (`jamd bench --suite ingest`) and the reader tests.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..corpus_sources import Source, Unit


def midi_name(name: str) -> str:
    """The relative .mid path of a tune name: "essenFolksong/erk5.abc#3" -> "essenFolksong/erk5/3.mid"."""
    base, _, number = name.partition("#")
    base = re.sub(r"\.(abc|krn|musicxml|mxl|xml)$", "", base)
    number = re.sub(r"[^A-Za-z0-9._-]+", "_", number)
    return f"{base}/{number}.mid" if number else f"{base}.mid"


def _write(job: tuple[Unit, str]) -> tuple[int, int]:
    """(files written, units that failed) for one unit."""
    from ..corpus_encode import parse_unit

    unit, out = job
    try:
        scores = parse_unit(unit)
    except Exception:  # music21 raises many kinds of errors on bad tunes; the count says how many
        return 0, 1
    written = 0
    for name, score in scores:
        path = Path(out) / midi_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            score.write("midi", fp=str(path))
            written += 1
        except Exception:  # a score music21 read but cannot write as MIDI
            continue
    return written, 0


def write_midi(src: Source, out: Path, workers: int = 0, progress: bool = True,
               limit: int | None = None) -> tuple[int, int]:
    """Write every tune of `src` (the first `limit` units) under `out`; (files written, units failed)."""
    units = src.units()[:limit]
    jobs = [(u, str(out)) for u in units]
    n = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    written = failed = 0
    with tqdm(total=len(jobs), desc=f"writing MIDI files of {src.label}", unit="tune",
              disable=not progress) as bar:
        if n == 1:
            results = map(_write, jobs)
            for w, f in results:
                written, failed = written + w, failed + f
                bar.update()
        else:
            with ProcessPoolExecutor(n) as pool:
                for w, f in pool.map(_write, jobs, chunksize=16):
                    written, failed = written + w, failed + f
                    bar.update()
    return written, failed
