"""The one clock: grid arithmetic, no drift, continuous tempo changes."""

from __future__ import annotations

import pytest

from jamd.sync.clock import Clock, ManualClock, step_ns_for


def test_step_length_at_120_bpm_is_125_ms():
    assert step_ns_for(120, 4) == 125_000_000
    # 6/8 counted in eighths: a 16th is half a beat
    assert step_ns_for(120, 8) == 250_000_000


@pytest.mark.parametrize(("beats", "unit", "steps"),
                         [(4, 4, 16), (3, 4, 12), (6, 8, 12), (2, 2, 16), (7, 16, 7)])
def test_steps_per_bar_follow_the_time_signature(beats, unit, steps):
    assert ManualClock(120, beats, unit).steps_per_bar == steps


def test_deadlines_are_start_plus_n_steps_without_accumulation():
    clock = ManualClock(bpm=97.0, start_ns=1_000)
    step = clock.step_ns
    for n in (0, 1, 10, 10_000, 1_000_003):
        assert clock.time_of(n) == round(1_000 + n * step)
    # a step derived from 10,000 additions would have drifted; ours is exact
    assert clock.step_at(clock.time_of(123_456)) == pytest.approx(123_456, abs=1e-6)


def test_quantise_and_bar_lines():
    clock = ManualClock(120)
    assert clock.quantise(clock.time_of(5) + 60_000_000) == 5  # 60 ms late: still step 5
    assert clock.quantise(clock.time_of(5) + 65_000_000) == 6  # past half a step
    assert clock.quantise(clock.time_of(5) - 60_000_000) == 5
    assert clock.next_bar_line(0) == 0
    assert clock.next_bar_line(0.01) == 16
    assert clock.next_bar_line(16) == 16
    assert clock.next_bar_line(17) == 32
    assert clock.bar_of(31.9) == 1


def test_tempo_change_keeps_the_grid_continuous():
    clock = ManualClock(120)
    clock.advance_to_step(8)
    before = clock.time_of(8)
    clock.set_tempo(60)
    assert clock.time_of(8) == before  # where we are does not jump
    assert clock.time_of(9) - clock.time_of(8) == 250_000_000  # the rest is at the new tempo
    assert clock.bpm == 60


def test_odd_time_signature_is_refused():
    with pytest.raises(ValueError):
        Clock(120, 5, 32)
