"""`jamd corpus`: parse (or load from the cache) the training corpus and report on it.

The corpus is the seed's: tunes with only 16th..whole-note durations, no
chords, moved to C major / A minor and encoded one symbol per 16th note
(MIDI pitch starts a note, "_" holds, "r" rests).  The first run parses on
every core (music21 for ABC, Humdrum and MusicXML, symusic for MIDI files)
into a sharded cache; later runs parse only new or changed files and load
the rest in well under a second.  The same corpus is what `jamd train` trains on.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from ..config import Config
from . import options
from .paths import check_output_file, write_text

HELP = "parse the training corpus (or load it from the cache) and report what was kept and why"
EXAMPLE = "jamd corpus --source essenFolksong/han --show 3"

DESCRIPTION = """\
sources (corpus.source, or --source):
  erk                  the seed's Erk subset of the Essen folk songs (1,781 tunes, in music21)
  essen                all of music21's essenFolksong collection
  oneill, ryan         O'Neill's Music of Ireland (1850), Ryan's Mammoth Collection
  folk                 essen + oneill + ryan (~11,500 tunes)
  A,B,...              several sources in one corpus (config: a YAML list); the report
                       gives each one's share. Erk's validation tunes stay in validation.
  bach, essenFolksong/han, ...
                       a folder inside music21's corpus, or a file-name prefix in it
  PATH                 a folder (searched recursively) or one file of .krn, .abc,
                       .mid/.midi, .musicxml/.mxl/.xml; an existing path wins over a name
  Nothing is downloaded. For multi-part files, corpus.part (--part) picks the melody.

what is kept:
  monophonic tunes whose notes and rests, as written, are all 1/16, 1/8, 3/16, 1/4,
  3/8, 1/2, 3/4 or 1 whole note long (the seed's filter). Each is moved to C major or
  A minor by the smallest shift (-6..+5 semitones) and encoded one symbol per 16th
  (tied notes become one note). Every dropped tune is counted under its reason.

MIDI files:
  read with symusic (C++) exactly as jamd's own reader reads them (as generate
  --seed-midi does; jamd's reader itself where symusic cannot say): the melody
  channels of live.input_channels (default: all but 10, GM drums), a restrike
  ends the sounding note, corpus.part picks the N-th track holding melody.
  A written key signature is used only when music21's analysis agrees; the
  report counts which key was used ("MIDI keys").

harmony (--harmony):
  the harmony model's data instead: harmony_training.source (bach: music21's
  Bach chorales, each listed work once), the soprano as melody (the filter
  above), and per quarter-note beat the chord sounding at its onset across
  the four voices (49 labels: N, or a root with maj, min, dim or dom7) and the
  bass. --source then sets harmony_training.source. The report adds the chord
  distribution.

limits:
  each file (or ABC tune) gets 60 s and 4 MiB, and a tune at most 1,024 bars of
  4/4; one over a limit is skipped and named under "skipped".

cache:
  the encoded corpus is kept under corpus.cache_dir (default: the per-user
  cache folder, $XDG_CACHE_HOME/jamd/corpus or ~/.cache/jamd/corpus), in shards
  of corpus.shard_tunes tunes, each source file keyed by its path, size and time
  (and corpus.part): a later run parses only new or changed files, and a run
  that is killed resumes where its last finished shard ends.

--write-midi DIR:
  write every tune of the source as a MIDI file under DIR (music21 writes them),
  e.g. the benchmark's folder: jamd corpus --source folk --write-midi /work/bench-midi
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = f"{HELP}\n\n{DESCRIPTION}"
    p.add_argument("--source", metavar="NAME|PATH",
                   help="corpus to read instead of corpus.source (see 'sources' above)")
    p.add_argument("--part", type=int, metavar="N", help="melody part of multi-part files (corpus.part)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="parser processes (corpus.workers; 0: one per core)")
    p.add_argument("--no-cache", action="store_true",
                   help="parse again even when a cached copy exists (the cache is then rewritten)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="also print the first N tunes' names, keys and opening symbols")
    p.add_argument("--out", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--write-midi", metavar="DIR",
                   help="write the source's tunes as MIDI files under DIR instead (see --write-midi above)")
    p.add_argument("--harmony", action="store_true",
                   help="report on the harmony model's chorales instead (see 'harmony' above)")


def _config(args: argparse.Namespace, cfg: Config) -> Config:
    # validated like the config file; an error names the option
    keys = {k: f"corpus.{k}" for k in ("source", "part", "workers")}
    if getattr(args, "harmony", False):
        keys["source"] = "harmony_training.source"
    values = {k: getattr(args, k) for k in keys}
    source = values["source"]
    if not getattr(args, "harmony", False) and source and "," in source and not os.path.exists(source):
        values["source"] = tuple(part.strip() for part in source.split(",") if part.strip())  # several sources
    return options.apply(cfg, {f"--{k}": (key, values[k]) for k, key in keys.items()})


def run(args: argparse.Namespace, cfg: Config) -> int:
    from jamd.training.corpus import load_corpus

    cfg = _config(args, cfg)
    options.check_number(args.show, "--show", lo=0)
    out = check_output_file(args.out, "--out") if args.out is not None else None  # before the parse
    if args.harmony:
        return _harmony(args, cfg, out)
    if args.write_midi:
        return _write_midi(args, cfg)
    t0 = time.perf_counter()
    corpus = load_corpus(cfg.corpus, progress=not args.no_progress, cache=not args.no_cache,
                         input_channels=cfg.live.input_channels)
    elapsed = time.perf_counter() - t0
    s = corpus.stats
    train, val = corpus.split()
    lo, hi = corpus.vocab.pitch_range
    lines = [
        f"source        {corpus.source}",
        f"files         {s['files']}",
        f"tunes         {s['tunes_seen']} seen, {s['kept']} kept, "
        f"{sum(s['dropped'].values())} dropped, {len(s['parse_errors'])} unreadable",
    ]
    lines += [f"  dropped     {n:5d}  {reason}" for reason, n in s["dropped"].items()]
    lines += _listed("unreadable", s["parse_errors"], args.out)
    lines += _listed("skipped", s.get("skipped", []), args.out)
    lines += [f"MIDI keys     {n:5d}  {source}" for source, n in s.get("midi_keys", {}).items()]
    lines += _shares(s.get("sources", {}))
    lines += [
        f"vocabulary    {len(corpus.vocab)} symbols, pitches {lo}-{hi}",
        f"tokens        {corpus.n_tokens} (16th steps)",
        f"split         {len(train)} train / {len(val)} validation tunes "
        f"(fraction {cfg.corpus.validation_fraction:g}, seed {cfg.corpus.split_seed})",
        "meters        " + ", ".join(f"{m} {n}" for m, n in s["meters"].items()),
        f"              {s['pickups']} tunes start with a pickup, {s['meter_changes']} change meter",
        f"parse time    {s['parse_seconds']:.1f} s ({s['workers']} workers, "
        f"{s.get('parsed_files', 0)} files parsed this run, {s.get('shards', 0)} shards)",
        ("loaded from   " if s.get("cached") else "cached in     ") + s.get("cache_file", "(not cached)"),
        f"this run      {elapsed:.2f} s",
    ]
    for t in corpus.tunes[: args.show]:
        lines.append(f"  {t.name}  {t.key} ({t.shift:+d})  {t.meter}  pickup {t.pickup_steps}: "
                     + " ".join(t.symbols[:32]))
    print("\n".join(lines))
    if out is not None:
        report = dict(s, source=corpus.source, vocabulary=list(corpus.vocab.symbols),
                      train_tunes=len(train), validation_tunes=len(val), seconds=round(elapsed, 3))
        write_text(out, json.dumps(report, indent=2) + "\n", "--out")
    return 0


SHOWN = 10  # names listed per kind; --out's JSON has them all


def _shares(sources: dict) -> list[str]:
    """One line per source of a multi-source corpus: files, kept tunes, tokens and their shares."""
    if len(sources) < 2:
        return []
    tunes = max(sum(v["tunes"] for v in sources.values()), 1)
    tokens = max(sum(v["tokens"] for v in sources.values()), 1)
    return [f"  share       {label:<12} {v['files']:6d} files {v['tunes']:6d} tunes ({100 * v['tunes'] / tunes:5.1f}%) "
            f"{v['tokens']:9d} tokens ({100 * v['tokens'] / tokens:5.1f}%)" for label, v in sources.items()]


def _write_midi(args: argparse.Namespace, cfg: Config) -> int:
    """`jamd corpus --write-midi DIR`: the source's tunes as MIDI files, written by music21."""
    from pathlib import Path

    from jamd.training.corpus_sources import resolve
    from jamd.training.ingest.write_midi import write_midi

    out = Path(args.write_midi).expanduser()
    if out.exists() and not out.is_dir():
        print(f"--write-midi {out}: not a folder")
        return 2
    t0 = time.perf_counter()
    written, failed = write_midi(resolve(cfg.corpus.source), out, cfg.corpus.workers, not args.no_progress)
    print(f"wrote {written} MIDI files under {out} in {time.perf_counter() - t0:.0f} s "
          f"({failed} tunes music21 could not read)")
    return 0


def _listed(kind: str, names: list[str], out: str | None) -> list[str]:
    """Up to SHOWN report lines naming `names`, and a last line saying how many more and where."""
    lines = [f"  {kind:<10}  {name}" for name in names[:SHOWN]]
    if len(names) > SHOWN:
        where = f"all in {out}" if out else "--out FILE lists them all"
        lines.append(f"  {kind:<10}  ... and {len(names) - SHOWN} more ({where})")
    return lines


TOP_CHORDS = 10


def _harmony(args: argparse.Namespace, cfg: Config, out) -> int:
    """`jamd corpus --harmony`: the chorales the harmony model trains on, and their chords."""
    from jamd.music.chords import chord_name
    from jamd.training.harmony_data import load_chorales

    t0 = time.perf_counter()
    corpus = load_chorales(cfg, progress=not args.no_progress, cache=not args.no_cache)
    elapsed = time.perf_counter() - t0
    s = corpus.stats
    train, val = corpus.split()
    beats = max(s["beats"], 1)
    lines = [
        f"source        {corpus.source}",
        f"files         {s['files']}" + (f" ({s['duplicates']} listed twice, read once)" if s["duplicates"] else ""),
        f"chorales      {s['tunes_seen']} seen, {s['kept']} kept, "
        f"{sum(s['dropped'].values())} dropped, {len(s['parse_errors'])} unreadable",
    ]
    lines += [f"  dropped     {n:5d}  {reason}" for reason, n in s["dropped"].items()]
    lines += _listed("unreadable", s["parse_errors"], args.out)
    lines += [
        f"beats         {s['beats']} (quarter notes), {s['no_bass_beats']} with nothing sounding",
        f"split         {len(train)} train / {len(val)} validation chorales "
        f"(fraction {cfg.corpus.validation_fraction:g}, seed {cfg.corpus.split_seed})",
        "meters        " + ", ".join(f"{m} {n}" for m, n in s["meters"].items()),
        "keys          " + ", ".join(f"{m} {n}" for m, n in s["keys"].items()) + f"; {s['pickups']} with a pickup",
        f"chords        {len(s['chords'])} of 49 used; N (no chord) {100 * s['no_chord_share']:.1f}% of beats",
    ]
    lines += [f"  {name:<10}  {n:6d}  {100 * n / beats:5.1f}%" for name, n in list(s["chords"].items())[:TOP_CHORDS]]
    lines += [
        f"parse time    {s['parse_seconds']:.1f} s ({s['workers']} workers, "
        f"{s.get('parsed_files', 0)} files parsed this run, {s.get('shards', 0)} shards)",
        ("loaded from   " if s.get("cached") else "cached in     ") + s.get("cache_file", "(not cached)"),
        f"this run      {elapsed:.2f} s",
    ]
    for t in corpus.tunes[: args.show]:
        lines.append(f"  {t.name}  {t.key} ({t.shift:+d})  {t.beats_per_bar} beats, pickup {t.pickup_beats}: "
                     + " ".join(chord_name(int(c)) for c in t.chords[:16]))
    print("\n".join(lines))
    if out is not None:
        report = dict(s, source=corpus.source, train_chorales=len(train), validation_chorales=len(val),
                      seconds=round(elapsed, 3))
        write_text(out, json.dumps(report, indent=2) + "\n", "--out")
    return 0
