"""A SIGHUP reload that changes `midi.connect_*` (or any midi.*, osc.*, clock source/send/port):
jamd cannot follow it live, so it says so in one line naming each changed key and keeps
the running values, while what a reload does change (tempo, mode, velocity) changes."""

from __future__ import annotations

import logging

from test_engine import session

from jamd.config import Config
from jamd.live.controls import needs_restart


def test_a_reload_names_each_key_that_needs_a_restart_and_keeps_its_running_value(caplog):
    caplog.set_level(logging.INFO, logger="jamd.live.controls")
    s, clock, _out, _ = session("continuous", **{"midi.connect_output": "reface", "midi.connect_input": "reface"})
    running = s.engine.cfg
    reloaded = running.replace(**{
        "midi.connect_output": "synth*", "midi.connect_input": "keys", "midi.client_name": "other",
        "osc.port": running.osc.port + 1, "clock.send": not running.clock.send,
        "clock.bpm": 100.0, "output.velocity": 77})
    s.engine.reload(reloaded)
    s.engine.run_once()  # applied on the engine thread
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "config reload: midi.client_name, midi.connect_output, midi.connect_input, osc.port, clock.send changed, "
        "which only a restart of jamd run applies; the running value(s) stay in force until then"]
    cfg = s.engine.cfg
    assert cfg.midi == running.midi and cfg.osc == running.osc and cfg.clock.send == running.clock.send
    assert (cfg.midi.connect_output, cfg.midi.connect_input) == ("reface", "reface")
    assert cfg.clock.bpm == 100.0 and clock.bpm == 100.0 and cfg.output.velocity == 77  # the live keys did change


def test_a_reload_without_such_a_change_says_nothing_of_restarts(caplog):
    caplog.set_level(logging.INFO, logger="jamd.live.controls")
    s, _clock, _out, _ = session("continuous")
    s.engine.reload(s.engine.cfg.replace(**{"clock.bpm": 90.0}))
    s.engine.run_once()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert needs_restart(Config(), Config()) == []
