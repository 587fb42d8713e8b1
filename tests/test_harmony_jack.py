"""Chords and bass from `jamd run --mode accompany` through real JACK ports, with the shipped
models and a real folk tune.

A player plays the first four bars of an Erk tune (music21's essenFolksong/erk10.abc, tune 528:
4/4, quarter notes) in G major into jamd; a recorder hears jamd's output.  As in
test_daemon_jack.py, jamd is judged on what it sent (its own record) once the rig's delivery
is checked, and a phrase the rig did not deliver is a skip, not a failure.
"""

from __future__ import annotations

import signal
import time

import pytest
from jack_rig import Daemon, judge_delivery, note_pairs, witnesses
from test_daemon_jack import BAR_NS, LATE_OK_NS, STEP_NS, _model, bar_time, next_bar, note_ons, phrase_messages

from jamd.tokens import Note, symbols_to_notes

pytestmark = [pytest.mark.jack, pytest.mark.slow, pytest.mark.flaky(reruns=2, reruns_delay=1)]

BEAT_NS = 4 * STEP_NS
G_MAJOR = {(7 + i) % 12 for i in (0, 2, 4, 5, 7, 9, 11)}
CHORDS, BASS = 2, 3  # harmony.chords_channel, harmony.bass_channel (defaults)

witness = pytest.fixture(witnesses, name="witness")


@pytest.fixture(scope="module")
def g_tune() -> list[Note]:
    """Four bars of a real Erk tune, moved from the corpus's C major to G major (down a fourth)."""
    import music21

    from jamd.training.corpus_encode import encode_score

    opus = music21.converter.parse(music21.corpus.getWork("essenFolksong/erk10.abc"))
    tune = encode_score(opus.scores[528], 0)
    assert tune.meter == "4/4" and tune.pickup_steps == 0
    return [Note(n.start, n.pitch - 5, n.duration) for n in symbols_to_notes(tune.symbols[:64])]


def accompany(jamd_rig, *extra: str):
    return jamd_rig("--model", _model(), "--api", "jack", "--bpm", "120", "--set", "midi.client_name=jamd",
                    "--mode", "accompany", "--set", "harmony.temperature=0", *extra)


def on_channel(events, channel: int):
    return [(t, m) for t, m in events if m[0] & 0x0F == channel - 1]


def chords_of(d: Daemon, sent) -> dict[int, list[int]]:
    """{beat index: chord pitches struck there} from the note-ons sent on the chords channel."""
    found: dict[int, list[int]] = {}
    for t, m in note_ons(on_channel(sent, CHORDS)):
        found.setdefault(round((t - d.origin_ns) / BEAT_NS), []).append(m[1])
    return found


def play_tune(d, player, witness, tune):
    seen = witness()
    bar = next_bar(d)
    player.play(phrase_messages(d, bar, tune))
    return seen, bar


def require_delivered(d, seen, bar, tune):
    from test_daemon_jack import require_phrase

    require_phrase(d, seen.snapshot(), bar, tune)


def test_accompany_plays_chords_and_bass_in_the_player_s_key_on_the_beat(jamd_rig, witness, g_tune):
    d, player, rec = accompany(jamd_rig)
    seen, bar = play_tune(d, player, witness, g_tune)
    end = bar_time(d, bar + 5) + 300_000_000
    rec.wait_for(lambda _ev: time.perf_counter_ns() > end, 12)
    assert d.stop(signal.SIGTERM) == 0, d.log()
    require_delivered(d, seen, bar, g_tune)
    sent = judge_delivery(d, rec.snapshot(), since_ns=d.origin_ns + 1_200_000_000)
    struck = chords_of(d, sent)
    assert struck, f"no chord sent:\n{d.log()}"
    assert all(len(p) >= 3 for p in struck.values()), struck
    assert note_ons(on_channel(sent, BASS)), "no bass sent"
    assert not note_ons(on_channel(sent, 1)), "a melody part was played (harmony.parts is chords and bass)"
    notes = [p for ps in struck.values() for p in ps]
    in_key = sum(p % 12 in G_MAJOR for p in notes) / len(notes)
    assert in_key >= 0.85, f"only {in_key:.0%} of the chord notes in G major: {struck}"
    assert len({frozenset(p % 12 for p in ps) for ps in struck.values()}) >= 2, f"the chord never changed: {struck}"
    first_beat = (bar_time(d, bar) - d.origin_ns) // BEAT_NS
    assert min(struck) >= first_beat and max(struck) <= first_beat + 4 * 4 + 8
    # every chord note-on on a beat (what jamd sent: the sender's precision)
    offsets = sorted(abs((t - d.origin_ns + BEAT_NS // 2) % BEAT_NS - BEAT_NS // 2)
                     for t, _ in note_ons(on_channel(sent, CHORDS)))
    assert offsets[len(offsets) // 2] <= 2_000_000 and offsets[-1] <= LATE_OK_NS, offsets[-5:]
    pairs, sounding = note_pairs(sent)
    assert not sounding, f"left sounding after SIGTERM: {sounding}"
    tail = [m for _, m in sent[-6:]]
    assert (0xB0 | (CHORDS - 1), 123, 0) in tail and (0xB0 | (BASS - 1), 123, 0) in tail, tail


def test_stop_cc_mid_chord_leaves_nothing_sounding(jamd_rig, witness, g_tune):
    d, player, rec = accompany(jamd_rig, "--set", "harmony.pattern=sustained")
    seen, bar = play_tune(d, player, witness, g_tune)
    chord_heard = rec.wait_for(lambda ev: any(c == CHORDS - 1 for c, _ in note_pairs(ev)[1]), 12)
    t_stop = time.perf_counter_ns()
    player.send([0xB0, 23, 0])  # control.start_stop_cc: stop
    took = d.wait_log("stop", 3)
    time.sleep(BAR_NS * 1.5 / 1e9)
    assert d.stop() == 0, d.log()
    require_delivered(d, seen, bar, g_tune)
    assert chord_heard, f"no chord was heard sounding:\n{d.log()}"
    if not took:
        if not any(m == (0xB0, 23, 0) for _, m in seen.snapshot()):
            pytest.skip("the rig's JACK server lost the player's stop CC: jamd was not tested, rerun")
        raise AssertionError(f"the stop CC reached jamd's port, and jamd did not take it:\n{d.log()}")
    sent = judge_delivery(d, rec.snapshot(), since_ns=d.origin_ns + 1_200_000_000)
    cut = [i for i, (t, m) in enumerate(sent) if t >= t_stop and m == (0xB0 | (CHORDS - 1), 123, 0)]
    assert cut, "no CC 123 on the chords channel after the stop"
    pairs, sounding = note_pairs(sent[:cut[0] + 3])
    assert not sounding, f"notes left sounding at the stop: {sounding}"
    assert not note_ons(sent[cut[0]:]), "notes sent after the stop"


def test_continuous_with_harmony_plays_chords_below_its_melody_on_the_beat(jamd_rig):
    d, player, rec = jamd_rig("--model", _model(), "--api", "jack", "--bpm", "120", "--set", "midi.client_name=jamd",
                              "--mode", "continuous", "--set", "harmony.under_melody=true",
                              "--set", "model.random_seed=5")
    end = time.perf_counter_ns() + 4 * BAR_NS
    rec.wait_for(lambda _ev: time.perf_counter_ns() > end, 10)
    assert d.stop(signal.SIGTERM) == 0, d.log()
    assert "chords and bass from harmony" in d.log()
    sent = judge_delivery(d, rec.snapshot(), since_ns=d.origin_ns + 1_200_000_000)
    melody, struck = note_ons(on_channel(sent, 1)), chords_of(d, sent)
    assert melody and struck and note_ons(on_channel(sent, BASS)), f"melody, chords and bass expected:\n{d.log()}"
    assert all(len(p) >= 3 for p in struck.values()), struck
    offsets = sorted(abs((t - d.origin_ns + BEAT_NS // 2) % BEAT_NS - BEAT_NS // 2)
                     for t, _ in note_ons(on_channel(sent, CHORDS)))
    assert offsets[len(offsets) // 2] <= 2_000_000 and offsets[-1] <= LATE_OK_NS, offsets[-5:]
    # below the melody of their bar wherever the melody leaves room above harmony.chords_lowest (48) + an octave
    for beat, pitches in struck.items():
        bar_melody = [m[1] for t, m in melody if (t - d.origin_ns) // BAR_NS == beat // 4]
        if bar_melody and min(bar_melody) > 60:
            assert max(pitches) < min(bar_melody), (beat, pitches, bar_melody)
    assert not note_pairs(sent)[1], "left sounding after SIGTERM"
