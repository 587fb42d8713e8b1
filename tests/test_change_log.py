"""Live control changes are logged coalesced (`jamd.live.change_log`): a knob or fader sweep
costs a line a second per control, the final value always last.  Fake clock, exact lines."""

from __future__ import annotations

import logging

import pytest
from test_engine import CC, session

from jamd.live.change_log import ChangeLog

LOGGER = "jamd.live.controls"


class Fake:
    """A fake monotonic clock and a fake timer: `due` holds (when, fn) the timer would run."""

    def __init__(self) -> None:
        self.t = 100.0
        self.due: list[tuple[float, object]] = []

    def __call__(self) -> float:
        return self.t

    def later(self, delay_s: float, fn) -> None:
        self.due.append((self.t + delay_s, fn))

    def advance(self, dt: float) -> None:
        """Move time on, running the timers that fall due, in order."""
        end = self.t + dt
        while True:
            ready = sorted((w, i) for i, (w, _) in enumerate(self.due) if w <= end)
            if not ready:
                break
            when, i = ready[0]
            fn = self.due.pop(i)[1]
            self.t = when
            fn()
        self.t = end


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def fake(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    return Fake()


def test_a_sweep_is_one_line_a_second_and_the_final_value_comes_last(fake, caplog):
    changes = ChangeLog(logging.getLogger(LOGGER), now=fake, later=fake.later)
    for i in range(101):  # 50 a second for 2 s, then nothing
        changes.note("temperature", f"temperature {i / 50:.2f}")
        fake.advance(0.02)
    fake.advance(5)
    assert lines(caplog) == ["temperature 0.00", "temperature 1.00 (the latest of 50 changes)",
                             "temperature 2.00 (the latest of 50 changes)"]


def test_a_single_change_is_logged_at_once_and_controls_do_not_hold_each_other_back(fake, caplog):
    changes = ChangeLog(logging.getLogger(LOGGER), now=fake, later=fake.later)
    changes.note("temperature", "temperature 0.50")
    changes.note("tempo", "tempo 96 BPM")
    fake.advance(0.5)
    changes.note("temperature", "temperature 0.60")
    assert lines(caplog) == ["temperature 0.50", "tempo 96 BPM"]
    fake.advance(0.5)
    assert lines(caplog)[-1] == "temperature 0.60"  # one change pending: its own words
    fake.advance(3)
    changes.note("temperature", "temperature 0.70")  # long after: at once again
    assert lines(caplog)[-1] == "temperature 0.70" and len(lines(caplog)) == 4


def test_a_cc_knob_sweep_and_an_osc_tempo_fader_log_a_few_lines(fake, caplog):
    s, clock, _out, _models = session()
    s.engine.change_log = ChangeLog(logging.getLogger(LOGGER), now=fake, later=fake.later)
    caplog.set_level(logging.INFO, logger="jamd.sync.follow")
    for value in range(128):  # CC 21 from 0 to 127 in 2 s (steps of 1/64 s: exact in binary)
        s.engine.midi_in([CC, 21, value], clock.now_ns())
        s.engine.run_once()
        fake.advance(1 / 64)
    for i in range(50):  # /jamd/tempo 100 -> 149 in 1.56 s
        s.engine.inbox.put(("osc", "tempo", 100.0 + i, None))
        s.engine.run_once()
        fake.advance(1 / 32)
    fake.advance(2)
    # values 1-63 fall in the first second (63 * 2 / 127 = 0.992), 64-127 in the next
    assert lines(caplog) == ["temperature 0.00", "temperature 0.99 (the latest of 63 changes)",
                             "temperature 2.00 (the latest of 64 changes)",
                             "tempo 100 BPM", "tempo 131 BPM (the latest of 31 changes)",
                             "tempo 149 BPM (the latest of 18 changes)"]
    assert [r.getMessage() for r in caplog.records if r.name == "jamd.sync.follow"] == []
    assert s.engine.cfg.clock.bpm == 149.0 and s.engine.temperature == 2.0


def test_without_a_timer_the_pending_line_goes_out_with_the_next_change_or_at_the_end(fake, caplog):
    changes = ChangeLog(logging.getLogger(LOGGER), now=fake)
    changes.note("temperature", "temperature 0.50")
    fake.advance(0.5)
    changes.note("temperature", "temperature 0.60")
    changes.note("temperature", "temperature 0.70")
    fake.advance(1)
    changes.note("tempo", "tempo 90 BPM")  # another control's change: the due line first
    assert lines(caplog) == ["temperature 0.50", "temperature 0.70 (the latest of 2 changes)", "tempo 90 BPM"]
    fake.advance(0.1)
    changes.note("tempo", "tempo 91 BPM")
    changes.flush_all()
    assert lines(caplog)[-1] == "tempo 91 BPM"
