"""The generation engine on an in-memory output, with a fake model and a manual clock.

Each test plays MIDI bytes into the engine at exact grid times, lets the
engine work, then flushes the scheduler and compares the exact event list.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from fakes import PATTERN, FakeGenerator, fake_model

from jamd.config import Config
from jamd.inference.bar_source import LstmBars
from jamd.live.change_log import ChangeLog
from jamd.live.session import LiveSession
from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock
from jamd.tokens import Note

ON, OFF, CC = 0x90, 0x80, 0xB0
C_PHRASE = [Note(0, 60, 2), Note(2, 62, 2), Note(4, 64, 2), Note(6, 65, 2), Note(8, 67, 4), Note(12, 60, 4)]


def session(mode="call-response", pattern=PATTERN, **sets):
    cfg = Config().replace(**{"live.mode": mode, **sets})
    clock = ManualClock(120)
    out = MemoryOutput(clock.now_ns)
    models = fake_model(pattern)
    s = LiveSession(cfg, out, models, clock=clock)
    s.player = []
    return s, clock, out, models


def play(s, clock, notes, offset=0, channel=1, velocity=100):
    """Queue the player's notes; `run_to` hands each to the engine when its time comes."""
    for n in notes:
        s.player.append((clock.time_of(n.start), [ON | (channel - 1), n.pitch + offset, velocity]))
        s.player.append((clock.time_of(n.end), [OFF | (channel - 1), n.pitch + offset, 0]))
    s.player.sort(key=lambda e: e[0])


def run_to(s, clock, step):
    """Move time to grid position `step` a 16th at a time, as the threads would:
    the player's messages arrive, the engine works, the sender sends what is due."""
    here = clock.now_step()
    while here < step:
        here = min(step, int(here) + 1)
        limit = clock.time_of(here)
        while s.player and s.player[0][0] <= limit:
            t, m = s.player.pop(0)
            clock.t_ns = t
            s.engine.midi_in(m, t)
        clock.advance_to_step(here)
        s.engine.run_once()
        s.scheduler.flush_until(here)


def timeline(clock, out):
    return [(round(clock.step_at(t), 3), m) for t, m in out.sent]


def test_call_response_answers_on_the_next_bar_line_with_exact_events():
    s, clock, out, models = session()
    play(s, clock, C_PHRASE)
    run_to(s, clock, 20)
    assert s.engine.phrases == []
    run_to(s, clock, 31)  # silence deadline is step 32 (bar line): declared within the lead
    assert len(s.engine.phrases) == 1
    run_to(s, clock, 64)
    # the fake plays PATTERN; gate 0.9; in C, so no transposition
    assert timeline(clock, out) == [
        (32, (ON, 60, 90)), (33.8, (OFF, 60, 0)), (34, (ON, 62, 90)), (35.8, (OFF, 62, 0)),
        (36, (ON, 64, 90)), (39.6, (OFF, 64, 0)), (40, (ON, 65, 90)), (41.8, (OFF, 65, 0)),
        (44, (ON, 67, 90)), (47.6, (OFF, 67, 0)),
    ]
    assert s.engine.answers[0][0] == 32
    # the model was primed with the phrase, bar-aligned, in C
    assert models.made[0].gen.primed[-1] == ["60", "_", "62", "_", "64", "_", "65", "_",
                                             "67", "_", "_", "_", "60", "_", "_", "_"]


def test_a_phrase_a_tone_higher_primes_the_same_and_answers_a_tone_higher():
    answers = []
    for offset in (0, 2):
        s, clock, out, models = session()
        play(s, clock, C_PHRASE, offset=offset)
        run_to(s, clock, 64)
        answers.append([n.pitch for n in s.engine.answers[0][1]])
        primed = models.made[0].gen.primed[-1]
        assert primed[0] == "60"  # moved to C before reaching the model
        assert s.engine.last_key is not None and s.engine.last_key.tonic == offset
    assert [p + 2 for p in answers[0]] == answers[1]


def test_response_length_follows_config_and_cc():
    s, clock, out, _ = session(**{"live.response_bars": 2})
    play(s, clock, C_PHRASE)
    run_to(s, clock, 31)
    assert s.engine.answers[0][1][-1].start >= 48  # two bars of answer
    s.engine.midi_in([CC, 25, 1], clock.now_ns())
    play(s, clock, [Note(n.start + 96, n.pitch, n.duration) for n in C_PHRASE])
    run_to(s, clock, 96 + 31)
    start, notes = s.engine.answers[1]
    assert start == 128 and max(n.end for n in notes) <= 144


def test_every_note_on_gets_its_note_off_and_held_notes_cross_bar_lines():
    pattern = ["72"] + ["_"] * 23  # a note 24 steps long: it crosses a bar line
    s, clock, out, _ = session(mode="continuous", pattern=pattern, **{"output.gate": 1.0})
    for step in range(0, 97, 4):
        run_to(s, clock, step)
    s.close()
    ons = [(t, m) for t, m in timeline(clock, out) if m[0] == ON]
    offs = [(t, m) for t, m in timeline(clock, out) if m[0] == OFF]
    # continuous starts on the first bar line after start-up, from the default seed
    assert ons[0][0] == 16
    for (t_on, _), (t_off, _) in zip(ons, offs, strict=False):
        if t_off != offs[-1][0]:
            assert t_off - t_on == 24  # held across the bar line, not cut into two notes
    assert len(offs) == len(ons) >= 3  # close() ended the last one
    assert out.messages[-1] == (CC, 123, 0)


def test_panic_cc_silences_everything_and_drops_the_rest_of_the_answer():
    s, clock, out, _ = session(**{"live.response_bars": 4})
    play(s, clock, C_PHRASE)
    run_to(s, clock, 37)  # the answer's third note (64 at step 36) is sounding
    assert s.scheduler.sounding() == [(1, 64)]
    out.sent.clear()
    s.engine.midi_in([CC, 24, 127], clock.now_ns())
    s.engine.run_once()
    run_to(s, clock, 200)
    assert out.messages == [(OFF, 64, 0), (CC, 123, 0)]


def test_stop_and_start_cc_in_continuous_mode():
    s, clock, out, _ = session(mode="continuous")
    run_to(s, clock, 21)
    s.engine.midi_in([CC, 23, 0], clock.now_ns())
    run_to(s, clock, 22)
    n = len(out.sent)
    assert out.messages[-1] == (CC, 123, 0) and s.scheduler.sounding() == []
    run_to(s, clock, 80)
    assert len(out.sent) == n  # stopped: nothing more
    s.engine.midi_in([CC, 23, 127], clock.now_ns())
    run_to(s, clock, 112)
    assert clock.step_at(out.sent[n][0]) == 96  # resumes on the next bar line


def test_mode_cc_switches_mode_with_a_panic():
    s, clock, out, _ = session(mode="continuous")
    run_to(s, clock, 17)
    s.engine.midi_in([CC, 22, 64], clock.now_ns())  # 43-85: call-response
    run_to(s, clock, 18)
    assert s.engine.mode == "call-response"
    assert out.messages[-1] == (CC, 123, 0) and s.scheduler.sounding() == []
    n = len(out.sent)
    run_to(s, clock, 80)
    assert len(out.sent) == n  # call-response waits for a phrase


def test_temperature_cc_and_controls_only_on_their_channel():
    s, clock, out, _ = session(**{"control.channel": 2})
    s.engine.midi_in([CC, 21, 127], clock.now_ns())  # channel 1: not ours
    s.engine.run_once()
    assert s.engine.temperature == 0.9
    s.engine.midi_in([CC | 1, 21, 127], clock.now_ns())
    s.engine.run_once()
    assert s.engine.temperature == 2.0


def test_our_own_output_echoed_back_is_not_a_phrase():
    s, clock, out, _ = session(mode="continuous")
    for step in range(0, 64):
        run_to(s, clock, step)
        for t, m in out.sent:  # the patchbay loop: everything we send comes back 3 ms later
            if clock.time_of(step - 1) < t <= clock.time_of(step):
                s.engine.midi_in(list(m), t + 3_000_000)
    run_to(s, clock, 64)
    assert s.engine.phrases == [] and not s.engine.capture.active
    assert s.echo.dropped > 0


def test_model_select_cc_loads_the_model_and_panics():
    s, clock, out, models = session(mode="continuous", **{"model.models": ["lstm", "other"]})
    run_to(s, clock, 17)
    s.engine.midi_in([CC, 26, 127], clock.now_ns())
    run_to(s, clock, 18)
    assert s.engine.model_name == "other" and models.made[-1].name == "other"
    assert out.messages[-1] == (CC, 123, 0)


def test_accompany_plays_while_the_player_plays_and_follows_their_bars():
    s, clock, out, models = session(mode="accompany", **{"harmony.parts": ["melody"]})
    run_to(s, clock, 8)
    assert out.sent == []
    phrase = [Note(16 + 2 * i, 62 + (i % 5), 2) for i in range(16)]  # two bars, from bar 1
    play(s, clock, phrase)
    for step in range(8, 120, 2):
        run_to(s, clock, step)
    ons = [clock.step_at(t) for t, m in out.sent if m[0] == ON]
    assert ons and ons[0] == 32  # from the first bar line after the player started
    assert len(models.made[0].gen.primed) >= 3  # default seed, then the player's bars
    assert max(ons) < 100  # stopped after the player's silence
    assert s.scheduler.sounding() == []


@pytest.mark.parametrize("lookahead", [1, 2])
def test_accompany_stopped_and_started_within_the_lookahead_writes_no_bar_twice(lookahead):
    """Found by the live fuzzer: the player's phrase ends (max length) while bars are queued
    ahead, they go on playing, and the accompaniment restarted on a bar it had already
    written, striking its note again while it sounded.  It now goes on where the queued
    bars end, one bar per bar line."""
    pattern = ["_"] * 13 + ["60", "_", "_"]  # one note a bar, on its 14th 16th
    s, clock, out, _ = session(mode="accompany", pattern=pattern, **{
        "live.max_phrase_bars": 2, "clock.lookahead_bars": lookahead, "harmony.parts": ["melody"]})
    play(s, clock, [Note(1, 57, 60), Note(62, 57, 30)])  # a phrase cut at 2 bars, then more
    for step in range(0, 160, 1):
        run_to(s, clock, step)
    s.close()
    ons = [clock.step_at(t) for t, m in out.sent if m[0] == ON]
    assert len(ons) == len(set(ons)) >= 4, ons  # no bar written twice
    assert all(on % 16 == 13 for on in ons), ons  # each bar's note on its own 14th 16th
    assert s.scheduler.sounding() == []


def test_song_end_symbol_becomes_a_rest_and_re_primes():
    gen = FakeGenerator(["60", "/", "_", "62"])
    bars = LstmBars(gen)
    bars.reseed(["64", "_"])
    assert bars.next_bar(4, 1.0, np.random.default_rng(0)) == ["60", "r", "60", "/"][:2] + ["60", "r"]
    assert gen.primed == [["64", "_"], ["64", "_"], ["64", "_"]]


def test_an_engine_crash_is_reported_and_close_still_silences():
    s, clock, out, models = session(mode="continuous")
    errors = []
    s.on_error(errors.append)
    run_to(s, clock, 17)
    clock.advance_to_step(40)  # now the engine thread has bars to generate

    def boom(*a, **k):
        raise RuntimeError("model exploded")

    models.made[0].next_bar = boom
    s.engine.start()  # the real thread this time
    s.engine.inbox.put(())  # wake it
    s.engine._thread.join(2)
    assert isinstance(errors[0], RuntimeError)
    s.close()
    assert out.messages[-1] == (CC, 123, 0) and s.scheduler.sounding() == []


@pytest.mark.parametrize("garbage", [[0xF0, 1, 2, 3, 0xF7], [0xFF], [], [0x90], [300, 1, 2]])
def test_bad_input_costs_nothing(garbage):
    s, clock, out, _ = session()
    s.engine.midi_in(garbage, clock.now_ns())
    s.engine.run_once()
    assert s.engine.error is None and not s.engine.capture.active


# -- notes that leave 0-127 on the way to C/Am, and on the way back out (issue 13 section 2) --

class FakeBarGenerator:
    """The `BarGenerator` interface `GanBars` drives: a fixed bar, and a previous bar
    that must encode in the vocabulary, as the real one's `encode_bar` demands."""

    def __init__(self, pattern=PATTERN, pitches=range(55, 84)):
        from jamd.tokens import Vocabulary

        self.vocab = Vocabulary.from_pitches(pitches)
        self.steps_per_bar = 16
        self.bar = list(pattern)
        self.prevs: list[list[str]] = []

    def next_bar(self, prev, temperature, rng, first_note=False):
        if prev is not None:
            self.vocab.encode(prev)  # KeyError for a symbol outside the vocabulary
            self.prevs.append(list(prev))
        return list(self.bar)


def gan_model(pattern=PATTERN):
    from jamd.inference.gan import GanBars

    made = []

    def open_model(name):
        made.append(GanBars(FakeBarGenerator(pattern), name))
        return made[-1]

    open_model.made = made
    return open_model


def test_a_phrase_at_the_top_of_the_keyboard_is_folded_into_the_model_not_fatal():
    """127 121 124 117 is A major: moved up 3 to C, 127 would be 130 (the issue's case)."""
    s, clock, out, models = session(**{"live.response_bars": 1})
    play(s, clock, [Note(2 * i, p, 2) for i, p in enumerate([127, 121, 124, 117])])
    run_to(s, clock, 40)
    assert s.engine.error is None
    assert s.engine.last_key.name == "A major" and s.engine.transpose == -3
    primed = models.made[0].gen.primed[-1]
    # G C# E A moved up 3 is Bb E G C: 130 folds to 118, and all fit the vocabulary (55-83) by octaves
    assert primed[:8] == ["82", "_", "76", "_", "79", "_", "72", "_"]
    ons = [m[1] for m in out.messages if m[0] == ON]
    assert ons and all(36 <= p <= 96 for p in ons)


@pytest.mark.parametrize("kind", ["lstm", "gan"])
def test_every_pitch_in_every_key_reaches_the_model_and_leaves_in_range(kind, monkeypatch):
    """All 128 pitches, each key's shift to C/Am (forced, so all 24 keys are met), every model
    kind: the model is primed only with its own vocabulary, the answer stays in note_min..note_max."""
    from jamd.music import keys

    pattern = ["83", "_", "55", "_", "83", "r", "55", "_"] * 2  # the vocabulary's ends
    for tonic in range(12):
        for mode in ("major", "minor"):
            monkeypatch.setattr(keys, "detect_key", lambda notes, k=keys.Key(tonic, mode): k)
            cfg = {"live.response_bars": 1, "output.note_min": 50, "output.note_max": 58}
            s, clock, out, _ = session(pattern=pattern, **cfg)
            models = fake_model(pattern) if kind == "lstm" else gan_model(pattern)
            s.engine.open_model = models
            s.engine.set_model("other")
            play(s, clock, [Note(i, i, 1) for i in range(128)])  # 8 bars: max_phrase_bars
            run_to(s, clock, 160)
            assert s.engine.error is None and len(s.engine.answers) == 1, (tonic, mode)
            vocab = models.made[-1].vocab
            seed = models.made[-1].gen.primed[-1] if kind == "lstm" else models.made[-1].gen.prevs[0]
            assert all(x in vocab for x in seed)
            ons = [m[1] for m in out.messages if m[0] == ON]
            assert ons and all(50 <= p <= 58 for p in ons), (tonic, mode, ons)


def test_live_notes_count_only_on_the_melody_channels():
    s, clock, out, _ = session()
    play(s, clock, C_PHRASE, channel=10)  # General MIDI drums: not melody by default
    run_to(s, clock, 64)
    assert s.engine.phrases == [] and out.sent == []
    s, clock, out, _ = session(**{"live.input_channels": [2], "control.channel": 1})
    play(s, clock, C_PHRASE, channel=1)
    run_to(s, clock, 64)
    assert s.engine.phrases == []
    s.engine.midi_in([CC, 21, 127], clock.now_ns())  # CCs keep to control.channel
    play(s, clock, [Note(n.start + 64, n.pitch, n.duration) for n in C_PHRASE], channel=2)
    run_to(s, clock, 128)
    assert s.engine.temperature == 2.0 and len(s.engine.phrases) == 1


def test_start_silences_a_killed_predecessors_notes_before_anything_else():
    """After a SIGKILL the synth still holds jamd's last note: the restart sends All Notes Off
    and All Sound Off on the output's channel, the metronome's and the chords' and bass's, before
    playing."""
    cfg = Config().replace(**{"live.mode": "continuous", "output.channel": 3, "metronome.enabled": True,
                              "clock.bpm": 300, "harmony.chords_channel": 5, "harmony.bass_channel": 6})
    out = MemoryOutput()
    s = LiveSession(cfg, out, fake_model())
    s.start()
    try:
        deadline = time.monotonic() + 5
        while not any(m[0] == ON | 2 for m in out.messages) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        s.close()
    assert out.messages[:8] == [(CC | ch, n, 0) for ch in (2, 4, 5, 9) for n in (123, 120)]
    assert any(m[0] == ON | 2 for m in out.messages[8:])  # then it plays


def test_model_select_value_n_plays_model_n_and_says_so_even_when_unchanged(caplog):
    s, clock, out, models = session(mode="continuous", **{"model.models": ["lstm", "second", "third"]})
    # as if each CC came over a second after the last: quicker ones are coalesced (test_change_log.py)
    s.engine.change_log = ChangeLog(logging.getLogger("jamd.live.controls"), every_s=0)
    picked = []
    for value in (1, 0, 2, 127, 127):
        with caplog.at_level("INFO", logger="jamd.live.controls"):
            caplog.clear()
            s.engine.control(26, value)
        picked.append(s.engine.model_name)
        # one line from the control itself (the engine may log the switch too, at its own level)
        mine = [r for r in caplog.records if r.name == "jamd.live.controls"]
        assert len(mine) == 1
    assert picked == ["second", "lstm", "third", "third", "third"]
    line = mine[0].getMessage()
    assert line == ("model-select CC 26 value 127: model.models[2] third "
                    "(past the end of model.models, 3 long: the last), already playing")
