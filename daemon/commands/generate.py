"""`jamd generate`: headless generation to a standard MIDI file."""

from __future__ import annotations

import argparse
import logging
import re
from typing import TYPE_CHECKING

import numpy as np

from ..config import Config
from ..errors import ConfigError, UsageError
from ..inference import gan, model_store
from ..inference.harmony import Harmonizer, HarmonyModel
from ..inference.harmony_track import BarHarmonizer
from ..inference.lstm import LstmGenerator
from ..music.keys import detect_key, transpose_notes
from ..music.voicing import Voicer
from ..tokens import HOLD, Note, fit_pitch_to_vocab, is_pitch, notes_to_symbols, parse_seed, symbols_to_notes
from . import options
from .paths import check_input_file, check_output_file, writing

if TYPE_CHECKING:
    from ..midi.midifile import Track
    from ..midi.midifile_read import MidiRead

log = logging.getLogger(__name__)

HARMONY_SEED_STREAM = 14  # the harmony's random stream: [random_seed, 14] (issue 14), apart from the melody's

HELP = "generate a melody from a seed into a MIDI file, no MIDI ports needed"
EXAMPLE = ('jamd generate --model lstm --bars 16 --seed "67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _" '
           "--temperature 0.9 --random-seed 1 --out out.mid")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME|PATH", help="shipped model name or .onnx path (default: model.name)")
    p.add_argument("--bars", type=int, help="bars to generate after the seed (default: generate.bars)")
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--seed", metavar="SYMBOLS",
                      help="seed melody, one symbol per 16th note: MIDI pitch, '_' hold, 'r' rest, "
                           "already in C major / A minor (default: generate.seed)")
    seed.add_argument("--seed-midi", metavar="FILE",
                      help="seed phrase from a MIDI file in any key: its key is detected, the model "
                           "plays in C/Am, and the result is moved back to the phrase's key (a model "
                           "trained in all keys plays in the phrase's key directly)")
    p.add_argument("--meter", metavar="N/D",
                   help="time signature of the answer, e.g. 3/4 (default: a --seed-midi file's own, "
                        "else clock.beats_per_bar/clock.beat_unit)")
    p.add_argument("--temperature", type=float, help="sampling temperature; 0 = argmax (default: model.temperature)")
    p.add_argument("--random-seed", type=int, help="make the output reproducible (default: model.random_seed)")
    p.add_argument("--bpm", type=float, help="tempo written to the file (default: clock.bpm)")
    p.add_argument("--out", metavar="FILE.mid", required=True, help="the MIDI file to write")
    p.add_argument("--harmony", action="store_true",
                   help="also write chords and bass from the harmony model under the melody, as tracks "
                        "'chords' and 'bass' on harmony.chords_channel / harmony.bass_channel (config harmony.*)")
    p.add_argument("--harmony-model", metavar="NAME|PATH",
                   help="shipped harmony model name or .onnx path (default: harmony.model)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    # jamd.midi.midifile imports mido: here, not at module level, because the parser
    # imports every command, so `jamd run` paid for it at start-up (~50-85 ms
    # and 4 MB, of which 0.3 MB stay once music21 has brought the same stdlib)
    from ..midi.midifile import Track, read_midi_file, write_midi_tracks

    out = check_output_file(args.out, "--out")  # before the model loads: a bad path costs nothing
    cfg = options.apply(cfg, {"--temperature": ("model.temperature", args.temperature),
                              "--random-seed": ("model.random_seed", args.random_seed),
                              "--bpm": ("clock.bpm", args.bpm), "--bars": ("generate.bars", args.bars),
                              "--model": ("model.name", args.model),
                              "--harmony-model": ("harmony.model", args.harmony_model)})
    if args.seed_midi is not None:
        check_input_file(args.seed_midi, "--seed-midi")
    seed = read_midi_file(args.seed_midi, cfg.live.is_melody_channel) if args.seed_midi else None
    cfg = _with_meter(cfg, args.meter, seed)
    path = model_store.resolve(cfg.model.name)
    kind = model_store.load_info(path).kind
    if kind in gan.KINDS:
        gen = gan.BarGenerator.load(str(path), cfg.model)
    else:
        gen = LstmGenerator.load(str(path), cfg.model)
    # before any generating: a missing or broken harmony model costs one line and no wait
    harmony = HarmonyModel.load(cfg.harmony.model, cfg.model) if args.harmony else None
    vocab = gen.vocab
    shift = 0  # semitones the model's melody is moved from the phrase's key
    to_normal = 0  # semitones from the phrase's key to C/Am, where the harmony model chooses
    steps_per_bar = cfg.clock.beats_per_bar * 16 // cfg.clock.beat_unit
    if seed is not None:
        notes, origin = seed_window(seed, steps_per_bar, cfg.live.max_phrase_bars)
        key = detect_key(notes)
        to_normal = key.shift_to_normal()
        # a model trained in all 12 keys hears the phrase and answers in the phrase's own key
        all_keys = getattr(gen, "transpose", "c") == "all-keys"
        shift = 0 if all_keys else to_normal
        shifted = transpose_notes(notes, shift)
        moved = [Note(n.start, fit_pitch_to_vocab(n.pitch, vocab), n.duration) for n in shifted]
        folded = sum(a.pitch != b.pitch for a, b in zip(shifted, moved, strict=True))
        if folded:  # the model cannot play them where they are: say so, the seed bars are not the file's
            lo, hi = vocab.pitch_range
            log.info("seed %s: %d of its %d notes moved by octaves into the model's range (MIDI %d-%d)",
                     args.seed_midi, folded, len(notes), lo, hi)
        # from the bar line before the phrase, so the model hears where it sits in the bar
        seed_symbols = notes_to_symbols(moved, offset=origin)
        if all_keys:
            log.info("seed %s: %d notes in %s, played in its own key (a model trained in all keys)",
                     args.seed_midi, len(notes), key.name)
        else:
            log.info("seed %s: %d notes in %s, moved %+d semitones to %s", args.seed_midi, len(notes), key.name,
                     shift, "C major" if key.mode == "major" else "A minor")
    else:
        seed_symbols = parse_seed(cfg.generate.seed if args.seed is None else args.seed, vocab)
    rng = np.random.default_rng(cfg.model.random_seed)
    if isinstance(gen, gan.BarGenerator):
        # per-bar models: the seed is held to its bar line, then whole bars follow
        seed_symbols = seed_symbols + [HOLD] * (-len(seed_symbols) % steps_per_bar)
        continuation = gan.continue_melody(gen, seed_symbols, cfg.generate.bars, steps_per_bar,
                                           cfg.model.temperature, rng)
    else:
        gen.reset(0, steps_per_bar)  # the seed starts on a bar line (a model reading the metric position hears so)
        gen.prime(seed_symbols)
        continuation = gen.generate(cfg.generate.bars * steps_per_bar, cfg.model.temperature, rng)
    symbols = seed_symbols + continuation
    melody = transpose_notes(symbols_to_notes(symbols), -shift)
    # a melody alone is written as before --harmony existed (one track named "jamd")
    tracks = [Track("melody" if harmony is not None else "jamd", melody, cfg.output.channel, cfg.output.velocity)]
    if harmony is not None:
        # the harmony chooses in C/Am: an all-keys melody is moved there, and the chords back
        moved = symbols if to_normal == shift else [str(int(s) + to_normal - shift) if is_pitch(s) else s
                                                     for s in symbols]
        tracks += _harmony_tracks(harmony, moved, -to_normal, cfg)
    with writing(out, "--out"):
        path = write_midi_tracks(tracks, out, bpm=cfg.clock.bpm,
                                 time_signature=(cfg.clock.beats_per_bar, cfg.clock.beat_unit))
    repeat = getattr(gen, "repeat", None)  # bar repetition (jamd.inference.repeat): say how often it played
    log.info("wrote %s: %d notes, %d bars after a %d-step seed%s, %.0f BPM", path, len(melody),
             cfg.generate.bars, len(seed_symbols),
             "" if repeat is None else f" ({repeat.repeats} of them an earlier bar again)", cfg.clock.bpm)
    print(path)
    return 0


def _harmony_tracks(model: HarmonyModel, symbols: list[str], transpose: int, cfg: Config) -> list[Track]:
    """Tracks "chords" and "bass" under melody `symbols` (C/Am, from a bar line), moved by `transpose`.

    The melody is known whole, so each chord hears its whole span (the lookahead
    path, `harmony_track.BarHarmonizer`).  The chord choice samples from its own
    generator, seeded from model.random_seed, so the melody is the same with or
    without --harmony.  Logs the chords per bar in the sounding key.
    """
    from ..midi.midifile import Track

    h = cfg.harmony
    seed = cfg.model.random_seed
    rng = np.random.default_rng(None if seed is None else [seed, HARMONY_SEED_STREAM])
    bars = BarHarmonizer(Harmonizer(model, h.temperature, h.melody_fit, rng), Voicer(h.chords_lowest, h.chords_highest),
                         h, cfg.clock.beats_per_bar, steps_per_beat=16 // cfg.clock.beat_unit)
    parts = bars.run(symbols, transpose)
    log.info("chords (%s rhythm, %s): %s", h.rhythm, h.pattern, bars.lead_sheet(transpose))
    return [Track("chords", parts["chords"], h.chords_channel, h.chords_velocity, gate=h.gate),
            Track("bass", parts["bass"], h.bass_channel, h.bass_velocity, gate=h.gate)]


def _with_meter(cfg: Config, meter: str | None, seed: MidiRead | None) -> Config:
    """The answer's meter: --meter, else the seed file's time signature, else the config's."""
    if meter is not None:
        m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", meter)
        if not m:
            raise UsageError(f"--meter {meter[:80]!r}: write it as N/D, e.g. 3/4 or 6/8")
        wanted, origin = (int(m.group(1)), int(m.group(2))), "--meter"
    elif seed is not None and seed.time_signature is not None:
        wanted, origin = seed.time_signature, f"the time signature of {seed.path}"
    else:
        return cfg
    try:
        return cfg.replace(**{"clock.beats_per_bar": wanted[0], "clock.beat_unit": wanted[1]})
    except ConfigError as exc:
        if origin == "--meter":
            raise UsageError(f"--meter {meter}: {str(exc).replace('override: ', '')}") from None
        log.warning("%s, %d/%d, is not a meter jamd plays (%s); answering in %d/%d", origin, *wanted, exc,
                    cfg.clock.beats_per_bar, cfg.clock.beat_unit)
        return cfg


def seed_window(seed: MidiRead, steps_per_bar: int, max_bars: int) -> tuple[list[Note], int]:
    """The seed notes the model hears and the bar line they count from (16th steps).

    The phrase starts at the bar line before its first note (the file's bar
    lines, after a written pickup bar if there is one), so a pickup stays a
    pickup.  A seed longer than `max_bars` (live.max_phrase_bars, the longest
    phrase the live engine answers) is cut to its last bars, with a log line:
    the work stays bounded whatever gap the file holds.
    """
    notes = seed.notes
    origin = seed.bar_line_before(notes[0].start, steps_per_bar)
    end = max(n.end for n in notes)
    limit = max_bars * steps_per_bar
    if end - origin > limit:
        bars = -(-(end - origin) // steps_per_bar)
        cut = seed.bar_line_before(end - limit, steps_per_bar)
        cut += steps_per_bar if end - cut > limit else 0
        # a note held across the cut is heard from the cut on
        kept = [n if n.start >= cut else Note(cut, n.pitch, n.end - cut) for n in notes if n.end > cut]
        log.info("seed %s is %d bars long; the model uses its last %d bars (%d of %d notes)", seed.path, bars,
                 max_bars, len(kept), len(notes))
        # leading silence of the window is no music: start at the bar of its first note
        notes, origin = kept, max(cut, seed.bar_line_before(kept[0].start, steps_per_bar))
    pickup = seed.pickup_steps(steps_per_bar) if origin == seed.bar_line_before(seed.notes[0].start,
                                                                                steps_per_bar) else 0
    if pickup:
        log.info("seed %s starts with a pickup of %d 16ths", seed.path, pickup)
    return notes, origin
