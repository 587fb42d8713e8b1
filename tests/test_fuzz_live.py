"""Property-based fuzzing of the live input path (issue 13 section 8): random bytes and event
sequences into the MIDI decoder, the phrase capture and the whole engine on the in-memory port.

What a musician's world sends: running status, truncated messages, SysEx, clock, Song Position
Pointer, every CC and every pitch on every channel, and mode and model switches and stops among
them.  The properties, after `close()`: no exception escaped (nor killed the engine thread), every
note-on sent got its note-off, and no note on jamd's channel left output.note_min..note_max.

A few hundred examples each (CI stays fast).  A failure prints its example and
`--hypothesis-seed N` reruns the same draw; `@reproduce_failure` pins one exactly.
"""

from __future__ import annotations

import pytest
from fakes import FakeGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jamd.config import Config
from jamd.inference.bar_source import LstmBars
from jamd.inference.gan import GanBars
from jamd.live.phrase import Decoder, PhraseCapture
from jamd.live.session import LiveSession
from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock
from jamd.sync.clock_follower import FollowedClock
from jamd.tokens import Vocabulary

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ON, OFF, CC = 0x90, 0x80, 0xB0

data_byte = st.integers(0, 127)
channel = st.one_of(st.just(0), st.integers(0, 15))  # channel 1 (every default's) half the time
# a few pitches often (so note-offs meet their note-ons), and the ends of the keyboard, where a move
# to C/Am can leave 0-127
pitch = st.one_of(st.integers(57, 64), st.integers(118, 127), st.integers(0, 9), data_byte)
small = st.one_of(st.integers(0, 3), data_byte)  # CC values that pick each model and each end of a range


@st.composite
def message(draw) -> list[int]:
    """One MIDI message as an input port might hand it over, whole, cut short or run together."""
    kind = draw(st.sampled_from(["on", "off", "on", "off", "cc", "control", "control", "control", "sysex",
                                 "realtime", "spp", "common", "running", "truncated", "bytes"]))
    ch = draw(channel)
    if kind == "on":
        return [ON | ch, draw(pitch), draw(st.one_of(st.just(0), data_byte))]  # velocity 0: a note-off
    if kind == "off":
        return [OFF | ch, draw(pitch), draw(data_byte)]
    if kind == "cc":
        return [CC | ch, draw(data_byte), draw(data_byte)]
    if kind == "control":  # jamd's own CCs (config defaults): temperature, mode, start/stop, panic, length, model
        return [CC | ch, draw(st.sampled_from([26, 22, 23, 24, 25, 21])), draw(small)]
    if kind == "sysex":
        body = draw(st.lists(data_byte, max_size=12))
        return [0xF0, *body] + ([0xF7] if draw(st.booleans()) else [])
    if kind == "realtime":  # clock, start, continue, stop, active sensing, reset
        return [draw(st.sampled_from([0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF]))]
    if kind == "spp":
        return [0xF2, draw(data_byte), draw(data_byte)]
    if kind == "common":  # MTC quarter frame, song select, tune request, undefined
        status = draw(st.sampled_from([0xF1, 0xF3, 0xF6, 0xF4, 0xF5, 0xF9, 0xFD]))
        return [status, *draw(st.lists(data_byte, max_size=2))]
    if kind == "running":  # data bytes for the last status (running status), perhaps with a clock inside
        body = draw(st.lists(data_byte, min_size=1, max_size=6))
        if draw(st.booleans()):
            body.insert(draw(st.integers(0, len(body))), 0xF8)
        return body
    if kind == "truncated":
        status = draw(st.sampled_from([ON, OFF, CC, 0xA0, 0xC0, 0xD0, 0xE0])) | ch
        return [status, *draw(st.lists(data_byte, max_size=1))]
    return draw(st.lists(st.integers(0, 255), max_size=8))


@given(st.lists(st.one_of(message(), st.lists(st.integers(0, 255), max_size=16)), max_size=40))
@FUZZ
def test_decoder_reads_any_byte_stream_into_well_formed_events(chunks):
    decoder = Decoder()
    for chunk in chunks:
        for ev in decoder.decode(chunk):
            assert ev.kind in ("on", "off", "cc") and 1 <= ev.channel <= 16
            assert 0 <= ev.a <= 127 and 0 <= ev.b <= 127
            assert ev.kind != "on" or ev.b > 0


@given(st.lists(st.tuples(st.sampled_from(["on", "off", "poll", "cc"]), data_byte,
                          st.integers(0, 3 * 62_500_000)), max_size=80),
       st.floats(0.25, 4), st.integers(1, 4))
@FUZZ
def test_phrase_capture_makes_sound_phrases_of_any_note_sequence(events, silence_bars, max_bars):
    clock = ManualClock(120)
    cfg = Config().replace(**{"live.silence_bars": silence_bars, "live.max_phrase_bars": max_bars}).live
    capture = PhraseCapture(clock, cfg)
    t = 0
    phrases = []
    for kind, pitch, dt in events:
        t += dt
        clock.t_ns = t
        if kind == "on":
            capture.note_on(pitch, t)
        elif kind == "off":
            capture.note_off(pitch, t)
        else:
            phrases.append(capture.poll(t, 0.0, end_cc=kind == "cc"))
    phrases.append(capture.poll(t + 10**12))
    for p in filter(None, phrases):
        assert p.notes and p.start <= min(n.start for n in p.notes)
        assert all(n.duration >= 1 and 0 <= n.pitch <= 127 and n.end <= p.closed_at for n in p.notes)
        assert 1 <= p.bars and p.bars * 16 >= p.end - (p.start // 16) * 16


class FakeBarGenerator:
    """`BarGenerator`'s interface for `GanBars`: a fixed bar; the previous bar must encode."""

    def __init__(self, bar):
        self.vocab = Vocabulary.from_pitches(range(55, 84))
        self.steps_per_bar = 16
        self.bar = list(bar)

    def next_bar(self, prev, temperature, rng, first_note=False):
        if prev is not None:
            self.vocab.encode(prev)
        return list(self.bar)


def open_model(pattern):
    """Model names to fake bar sources: "lstm*" step models, "gan*" per-bar ones."""
    def open_(name):
        if name.startswith("gan"):
            return GanBars(FakeBarGenerator(pattern), name)
        return LstmBars(FakeGenerator(pattern), name)
    return open_


pattern = st.lists(st.one_of(st.sampled_from(["_", "r"]), st.integers(55, 83).map(str)), min_size=16, max_size=16)


@st.composite
def live_config(draw) -> dict:
    lo = draw(st.integers(0, 127))
    return {
        "live.mode": draw(st.sampled_from(["continuous", "call-response", "accompany"])),
        "model.name": draw(st.sampled_from(["lstm", "gan"])),
        "model.models": ["lstm", "gan", "lstm2"],
        "output.channel": draw(st.integers(1, 9)),
        "output.note_min": lo, "output.note_max": draw(st.integers(lo, 127)),
        "output.octave_shift": draw(st.integers(-4, 4)),
        "output.gate": draw(st.sampled_from([0.05, 0.5, 0.9, 1.0])),
        "live.silence_bars": draw(st.sampled_from([0.25, 1.0, 2.0])),
        "live.max_phrase_bars": draw(st.integers(1, 4)),
        "live.response_bars": draw(st.integers(0, 3)),
        "live.end_cc": draw(st.sampled_from([None, 64])),
        "live.input_channels": draw(st.sampled_from([[], [1], [1, 2, 10]])),
        "metronome.enabled": draw(st.booleans()),
        "clock.send": draw(st.booleans()),
        "model.random_seed": 1,
        "harmony.under_melody": draw(st.booleans()),
        "harmony.parts": draw(st.sampled_from([["chords", "bass"], ["melody"], ["bass"],
                                               ["chords", "bass", "melody"]])),
        "harmony.rhythm": draw(st.sampled_from(["beat", "half-bar", "bar"])),
        "harmony.pattern": draw(st.sampled_from(["sustained", "beats"])),
        "harmony.temperature": draw(st.sampled_from([0.0, 1.0])),
        "harmony.chords_channel": 11, "harmony.bass_channel": 12,
    }


def check_output(out: MemoryOutput, cfg: Config) -> None:
    """Every note-on has its own note-off, none is struck again while it sounds, and jamd's
    notes keep to output.note_min..note_max."""
    sounding: dict[tuple[int, int], int] = {}
    for m in out.messages:
        if len(m) != 3 or m[0] & 0xF0 not in (ON, OFF):
            continue
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == ON and m[2] > 0:
            assert sounding.get(key, 0) == 0, f"{key} struck again while sounding"
            sounding[key] = 1
            if key[0] == cfg.output.channel - 1:
                assert cfg.output.note_min <= m[1] <= cfg.output.note_max, m
        else:
            assert sounding.get(key, 0) == 1, f"note-off for {key}, which was not sounding"
            sounding[key] = 0
    assert not any(sounding.values()), {k for k, v in sounding.items() if v}


@given(live_config(), pattern,
       st.lists(st.tuples(st.integers(0, 24), st.lists(message(), max_size=4)), min_size=1, max_size=30),
       st.integers(0, 48))
@FUZZ
def test_the_engine_survives_any_input_and_leaves_nothing_sounding(sets, bar, script, tail):
    """Steps of (16ths to wait, messages arriving then) into a whole session, then `tail` 16ths
    more (an answer plays out, or the session closes in the middle of a note)."""
    cfg = Config().replace(**sets)
    run_script(cfg, ManualClock(120), bar, [(wait, 0, messages) for wait, messages in script], tail)


class ManualFollowedClock(FollowedClock, ManualClock):
    """A followed clock whose time only moves when the test says."""


@given(live_config(), pattern,
       st.lists(st.tuples(st.integers(0, 24), st.sampled_from([0, 6, 6, 6, 5, 7, 12]),
                          st.lists(message(), max_size=4)), min_size=1, max_size=30),
       st.integers(0, 48))
@FUZZ
def test_the_engine_following_midi_clock_survives_any_input(sets, bar, script, tail):
    """The same, with jamd following MIDI clock (clock.source: midi): each 16th the master sends
    `ticks` clocks (6 is in time; 0 a stall; 12 a burst; 5 or 7 a lost or doubled tick) besides
    the random messages, which bring Start, Stop, Continue and Song Position Pointer too."""
    cfg = Config().replace(**{**sets, "clock.source": "midi", "clock.send": False})
    run_script(cfg, ManualFollowedClock(120), bar, [(0, 0, [[0xFA]]), *script], tail, tail_ticks=6)


def run_script(cfg: Config, clock: ManualClock, bar, script, tail: int, tail_ticks: int = 0) -> None:
    """Play `script`, steps of (16ths to wait, MIDI clocks sent in each of them, messages arriving
    first), then `tail` 16ths, through a whole session; then check what it sent (`check_output`).
    Time moves a 16th of the clock's first tempo at a time; a followed clock's grid may move."""
    out = MemoryOutput(clock.now_ns)
    s = LiveSession(cfg, out, open_model(bar), clock=clock)
    follows = isinstance(clock, FollowedClock)
    t_ns, step_ns, step = clock.now_ns(), clock.step_ns, 0
    try:
        for wait, ticks, messages in [*script, (tail, tail_ticks, [])]:
            for m in messages:
                s.engine.midi_in(m, t_ns)
            for _ in range(wait):
                for i in range(ticks):
                    s.engine.midi_in([0xF8], t_ns + int(i * step_ns / ticks))
                if follows:  # the master's time moves on, whatever jamd's grid does
                    t_ns = clock.t_ns = t_ns + int(step_ns)
                else:
                    step += 1
                    clock.advance_to_step(step)
                    t_ns = clock.t_ns
                s.engine.run_once()
                s.scheduler.flush_until(clock.now_step() if follows else step)
            if not wait:
                s.engine.run_once()
            assert s.engine.error is None and s.scheduler.error is None
    finally:
        s.close()
    assert s.error is None
    check_output(out, cfg)


@pytest.mark.parametrize("pitch", [0, 1, 11, 12, 115, 116, 126, 127])
def test_the_engine_survives_extreme_pitches_in_every_mode(pitch):
    """A sample of the all-pitches fuzz as plain examples (the full sweep is in test_engine.py)."""
    for mode in ("continuous", "call-response", "accompany"):
        cfg = Config().replace(**{"live.mode": mode, "live.response_bars": 1})
        clock = ManualClock(120)
        out = MemoryOutput(clock.now_ns)
        s = LiveSession(cfg, out, open_model(["83", "_", "55", "_"] * 4), clock=clock)
        for step in range(0, 64):
            if step < 8:
                s.engine.midi_in([ON if step % 2 == 0 else OFF, pitch, 100], clock.now_ns())
            clock.advance_to_step(step)
            s.engine.run_once()
            s.scheduler.flush_until(step)
        s.close()
        assert s.error is None
        check_output(out, cfg)
