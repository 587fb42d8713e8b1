"""One music21 score -> one `Tune` in the seed's 16th-note encoding.

This is appendix A.1.1 of the seed (filter by duration, transpose to C major /
A minor, encode as a time series) with the changes the issue asks for: ties
are merged, chords and overlapping voices are refused, every refusal has a
reason, and the meter and pickup are kept for per-bar models.

The functions here run inside the parser processes and return plain data.
They import music21 only when they first need it (an ABC, Humdrum or
MusicXML tune): a worker that reads only MIDI files (symusic) never pays
music21's second of import.  The data types live in `jamd.training.corpus`,
which loads a cached corpus without importing music21 at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING

from tqdm import tqdm

from jamd.config import LiveConfig
from jamd.errors import DataError
from jamd.midi.midifile_read import NoNotes, read_midi_file
from jamd.music.keys import PITCH_CLASS_NAMES, Key, detect_key
from jamd.tokens import STEPS_PER_QUARTER, Note, notes_to_symbols

from .corpus import ACCEPTABLE_DURATIONS, SkipTune, Tune
from .corpus_sources import MIDI_SUFFIXES, Unit
from .ingest.midi import read_fast

if TYPE_CHECKING:
    from music21 import key, stream

# Bounded work per unit (one file, or one ABC tune): a file over either limit is
# skipped, named in the report, and the rest of the corpus goes on.
MAX_UNIT_BYTES = 4 * 1024 * 1024
MAX_UNIT_SECONDS = 60.0
# A tune longer than this many 16ths (1,024 bars of 4/4) is dropped before it is
# laid on the grid: a MIDI file's 2^28-tick gap would otherwise be a list of 2^30 steps.
MAX_TUNE_STEPS = 16 * 1024
_STEP_DURATIONS = {round(d * STEPS_PER_QUARTER) for d in ACCEPTABLE_DURATIONS}

# Modes whose relative key is minor: they share their key signature with it.
_MINORISH_MODES = ("minor", "dorian", "phrygian", "aeolian", "locrian")


def _pick_part(score: stream.Stream, part: int) -> stream.Stream:
    from music21 import stream
    if isinstance(score, stream.Opus):
        raise ValueError("encode_score takes one score: iterate opus.scores")
    parts = list(score.parts) if isinstance(score, stream.Score) else []
    if not parts:
        if part != 0:
            raise SkipTune("missing part")
        return score
    if part >= len(parts):
        raise SkipTune("missing part")
    return parts[part]


def _original_key(melody: stream.Stream) -> key.Key:
    """The written key when there is one, else music21's key analysis."""
    from music21 import key
    written = melody.recurse().getElementsByClass(key.KeySignature).first()
    if isinstance(written, key.Key):
        return written
    analysed = melody.analyze("key")
    if written is None or analysed.sharps == written.sharps:
        return analysed
    # A bare key signature fixes the shift but not the mode: take the mode from the analysis.
    return written.asKey("minor" if analysed.mode == "minor" else "major")


def _shift(k: key.Key) -> int:
    from music21 import key
    # Modal keys (G dorian...) move with the major/minor key of the same signature.
    mode = "minor" if k.mode in _MINORISH_MODES else "major"
    relative = k if k.mode in ("major", "minor") else key.KeySignature(k.sharps).asKey(mode)
    # The seed transposes by the interval from the tonic to C or A as music21 spells it,
    # which can move a tune by up to 11 semitones; the smallest shift (-6..+5) keeps every
    # tune near the register it was written in, so the vocabulary stays narrow.
    return Key(relative.tonic.pitchClass, mode).shift_to_normal()


def _steps(ql: float | Fraction, what: str) -> int:
    steps = Fraction(ql) * STEPS_PER_QUARTER
    if steps.denominator != 1:
        raise SkipTune(f"off-grid {what}")
    return int(steps)


def _meter_and_pickup(melody: stream.Stream) -> tuple[str, int, bool]:
    from music21 import meter, stream
    signatures = list(melody.recurse().getElementsByClass(meter.TimeSignature))
    # music21 (and MIDI) assume 4/4 when no time signature is written.
    ts = signatures[0] if signatures else meter.TimeSignature("4/4")
    changes = len({s.ratioString for s in signatures}) > 1
    pickup = 0
    first = melody.getElementsByClass(stream.Measure).first()
    if first is not None:
        content = first.highestTime
        if 0 < content < ts.barDuration.quarterLength:
            pickup = _steps(content, "pickup")
    return ts.ratioString, pickup, changes


def encode_score(score: stream.Stream, part: int = 0, in_place: bool = False) -> Tune:
    """Encode one score's melody part; raises SkipTune(reason) for tunes the corpus drops.

    in_place=True lets it merge the ties inside `score` instead of a deep copy
    (a quarter of the encoding time): the parser owns its scores.
    """
    from music21 import chord, harmony, note
    melody = _pick_part(score, part)
    # Chord symbols (ABC "C", lead sheets) are labels, not sounding notes.
    events = [e for e in melody.flatten().notesAndRests if not isinstance(e, harmony.Harmony)]
    if not any(isinstance(e, note.NotRest) for e in events):
        raise SkipTune("empty")
    if any(isinstance(e, chord.Chord) for e in events):
        raise SkipTune("chords")
    if any(not isinstance(e, note.Note | note.Rest) for e in events):
        raise SkipTune("unpitched")
    # The seed's filter, on the notes as written (before ties are merged).
    if any(float(e.quarterLength) not in ACCEPTABLE_DURATIONS for e in events):
        raise SkipTune("durations")

    k = _original_key(melody)
    shift = _shift(k)
    notes: list[Note] = []
    end = 0
    # A tied note is one sounding note: merge ties, then read the notes' absolute offsets.
    if in_place:
        melody.stripTies(inPlace=True)
        merged = melody
    else:
        merged = melody.stripTies()
    for e in merged.flatten().notesAndRests:
        if isinstance(e, harmony.Harmony):
            continue
        start = _steps(e.offset, "offset")
        length = _steps(e.quarterLength, "duration")
        end = max(end, start + length)
        if isinstance(e, note.Note):
            if notes and start < notes[-1].end:
                raise SkipTune("polyphonic")
            notes.append(Note(start, e.pitch.midi + shift, length))
    pitches = [n.pitch for n in notes]
    if min(pitches) < 0 or max(pitches) > 127:
        raise SkipTune("pitch range")
    meter_name, pickup, changes = _meter_and_pickup(melody)
    return Tune(
        name=str(getattr(melody, "id", "")),
        symbols=notes_to_symbols(notes, n_steps=end),
        key=f"{k.tonic.name} {k.mode}",
        shift=shift,
        meter=meter_name,
        pickup_steps=pickup,
        meter_changes=changes,
    )


# -- worker side --------------------------------------------------------------
# A result is (name, tune, reason, error): a kept Tune, or a drop reason, or a
# parse error message; with a tune, the 4th field says where a MIDI file's key
# came from, and with a reason, the detail of a limit that was hit.
# Plain tuples keep the traffic between processes small.
Result = tuple[str, "Tune | None", "str | None", "str | None"]


@contextlib.contextmanager
def _no_beaming() -> Iterator[None]:
    """Skip music21's beaming while reading: it is engraving we never read, and half the
    time of an ABC import (the ABC reader beams every bar).  Restored on the way out."""
    from music21 import stream
    original = stream.Stream.makeBeams
    stream.Stream.makeBeams = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        stream.Stream.makeBeams = original


def parse_unit(unit: Unit) -> list[tuple[str, stream.Stream]]:
    from music21 import converter, stream
    if unit.text is not None:
        with _no_beaming():
            parsed = converter.parseData(unit.text, format="abc")
    else:
        # forceSource: our own cache replaces music21's pickles in its scratch folder
        with _no_beaming():
            parsed = converter.parse(unit.path, forceSource=True)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if len(scores) == 1:
            return [(unit.name, scores[0])]
        return [(f"{unit.name}#{i}", s) for i, s in enumerate(scores, start=1)]
    return [(unit.name, parsed)]


class OverTime(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise OverTime in this thread after `seconds` (SIGALRM: Unix main threads only,
    which the parser processes and the CLI are; elsewhere there is no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise OverTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _unit_size(unit: Unit) -> int:
    if unit.text is not None:
        return len(unit.text)
    try:
        return os.stat(unit.path).st_size
    except OSError:
        return 0  # the parser reports it as unreadable


def encode_unit(job: tuple) -> list[Result]:
    """Parse one unit and encode each score in it, within the size and time limits; never raises.

    job: (unit, part) or (unit, part, input_channels, seconds).
    """
    unit, part, channels, seconds = (*job, (), MAX_UNIT_SECONDS)[:4]
    size = _unit_size(unit)
    if size > MAX_UNIT_BYTES:
        return [(unit.name, None, "over the size limit", f"{size} bytes, at most {MAX_UNIT_BYTES}")]
    try:
        with time_limit(seconds):
            if unit.text is None and unit.path.lower().endswith(MIDI_SUFFIXES):
                return [encode_midi(unit, part, channels)]
            return _encode_scores(unit, part)
    except OverTime:
        return [(unit.name, None, "over the time limit", f"not parsed in {seconds:g} s")]


def encode_midi(unit: Unit, part: int, channels: tuple[int, ...] = (), reader: str = "symusic") -> Result:
    """One MIDI file, read as jamd's own reader (the one `generate --seed-midi` uses) reads it.

    reader="symusic" parses it with symusic (`jamd.training.ingest.midi.read_fast`,
    the same notes, some hundred times faster) and falls back to jamd's reader
    where only that one can say; reader="jamd" always uses jamd's reader.
    Its melody channels, note pairing and bounds are the reader's; part N picks
    the N-th track holding melody.  The key is music21's analysis (computed by
    `jamd.music.keys.detect_key`, which computes it without music21); the result's 4th field says
    whether a written key signature agrees with it (a DAW writes C major by default).
    """
    try:
        read = read_fast(unit.path, part, not channels) if reader == "symusic" else None
        if read is None:
            read = read_midi_file(unit.path, LiveConfig(input_channels=channels).is_melody_channel, track=part)
    except NoNotes:
        return (unit.name, None, "empty", None)
    except DataError as exc:
        return (unit.name, None, None, str(exc).removeprefix(f"{unit.path}: ")[:160])
    notes = read.notes
    try:
        if read.polyphonic:
            raise SkipTune("polyphonic")
        first, end = notes[0].start, max(n.end for n in notes)
        if end - first > MAX_TUNE_STEPS:
            raise SkipTune("too long")
        if any(n.duration not in _STEP_DURATIONS for n in notes):
            raise SkipTune("durations")
        k, key_from = _midi_key(notes, read.key_signature)
        shift = k.shift_to_normal()
        moved = [Note(n.start - first, n.pitch + shift, n.duration) for n in notes]
        if min(n.pitch for n in moved) < 0 or max(n.pitch for n in moved) > 127:
            raise SkipTune("pitch range")
    except SkipTune as skip:
        return (unit.name, None, skip.reason, None)
    num, den = read.time_signature or (4, 4)  # MIDI's (and music21's) default
    tune = Tune(unit.name, notes_to_symbols(moved), k.name, shift, f"{num}/{den}",
                read.pickup_steps(), read.meter_changes)
    return (unit.name, tune, None, key_from)


def _midi_key(notes: list[Note], written: str | None) -> tuple[Key, str]:
    """(key, where it came from): the written key only when the analysis agrees."""
    analysed = detect_key(notes)  # music21's analyze('key'), without building a stream
    if written is None:
        return analysed, "analysed (none written)"
    tonic = written.rstrip("m")
    mode = "minor" if written.endswith("m") else "major"
    names = {n: i for i, n in enumerate(PITCH_CLASS_NAMES)} | {"Db": 1, "D#": 3, "Eb": 3, "Gb": 6, "G#": 8,
                                                              "Ab": 8, "A#": 10, "Bb": 10, "Cb": 11}
    if names.get(tonic) == analysed.tonic and mode == analysed.mode:
        return analysed, "written, analysis agrees"
    return analysed, "analysed (written key disagrees)"


def _encode_scores(unit: Unit, part: int) -> list[Result]:
    try:
        scores = parse_unit(unit)
    except Exception as exc:  # music21 raises many kinds of errors on bad files
        return [(unit.name, None, None, short_reason(exc))]
    results: list[Result] = []
    for name, score in scores:
        try:
            tune = encode_score(score, part, in_place=True)
        except SkipTune as skip:
            results.append((name, None, skip.reason, None))
        except Exception as exc:  # a score music21 read but cannot analyse
            results.append((name, None, None, short_reason(exc)))
        else:
            tune.name = name
            results.append((name, tune, None, None))
    return results


def worker_count(n_jobs: int, workers: int) -> int:
    """Processes to use: `workers` (0: one per core), but none for a handful of jobs,
    where starting a pool costs more than it saves."""
    n = min(workers or os.cpu_count() or 1, n_jobs)
    return n if n_jobs >= 16 else 1


def encode_all(units: Sequence[Unit], part: int, workers: int, progress: bool, label: str,
               input_channels: tuple[int, ...] = (), seconds: float = MAX_UNIT_SECONDS) -> list[Result]:
    """Parse and encode every unit, in parallel when it pays; results keep the units' order.

    Each unit gets `seconds` and MAX_UNIT_BYTES; MIDI files are read on their
    melody channels (`live.input_channels`; empty: all but 10).
    """
    jobs = [(u, part, tuple(input_channels), seconds) for u in units]
    n = worker_count(len(jobs), workers)
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=f"parsing {label}", unit="tune", disable=not progress) as bar:
        if n == 1:
            for job in jobs:
                results += encode_unit(job)
                bar.update()
        else:
            chunk = max(1, min(16, len(jobs) // (n * 8)))
            with ProcessPoolExecutor(n) as pool:
                for res in pool.map(encode_unit, jobs, chunksize=chunk):
                    results += res
                    bar.update()
    return results


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__
