"""Saved state (issue 15 section 4): `jamd.live.saved_state`, its engine hook and `jamd run` across a restart.

Unit tests of the file (round trip, atomic write, every kind of damaged file, precedence at
start), the engine writing it after a CC (in memory, as in test_engine.py, with a fake
time for the one-a-second limit), and `jamd run` over the JACK rig remembering a
temperature and a mode set by CC (marks `jack`, `slow`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest
from test_engine import CC, session

from jamd.config import Config, StateConfig
from jamd.errors import ModelError
from jamd.live import saved_state
from jamd.live.saved_state import CorruptState, Restored, StateSaver, restore

FULL = {"mode": "accompany", "model": "gan", "temperature": 0.7, "bpm": 100.0, "answer_bars": 4}


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "jamd.live.saved_state" and r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def _info(caplog):
    caplog.set_level(logging.INFO, logger="jamd.live.saved_state")


def infos_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jamd.live.saved_state" and r.levelno == logging.INFO]


def two_models(**sets) -> Config:
    return Config().replace(**{"model.name": "lstm", "model.models": ["lstm", "gan"], **sets})


def accept(_name: str) -> None:
    """A model resolver that finds every model (the unit tests need no .onnx file)."""


# -- where the file lives ------------------------------------------------------
def test_the_path_is_state_path_else_xdg_state_home_else_local_state(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert saved_state.state_path(StateConfig(path="~/s.json"), {}) == tmp_path / "home" / "s.json"
    assert saved_state.state_path(StateConfig(), {"XDG_STATE_HOME": "/x/state"}) == Path("/x/state/jamd/state.json")
    local = tmp_path / "home" / ".local" / "state" / "jamd" / "state.json"
    assert saved_state.state_path(StateConfig(), {}) == local
    # the XDG spec: a relative path in $XDG_STATE_HOME is invalid and ignored
    assert saved_state.state_path(StateConfig(), {"XDG_STATE_HOME": "rel/state"}) == local


def test_the_tests_never_touch_the_users_state_file(private_state_home):
    assert os.environ["XDG_STATE_HOME"] == str(private_state_home)
    assert saved_state.state_path(StateConfig()) == private_state_home / "jamd" / "state.json"


# -- the file ------------------------------------------------------------------
def test_write_then_read_round_trips_and_the_file_is_one_sorted_json_line(tmp_path):
    path = tmp_path / "new" / "folder" / "state.json"
    saved_state.write(path, FULL)
    assert saved_state.read(path) == FULL
    assert path.read_text() == ('{"answer_bars": 4, "bpm": 100.0, "mode": "accompany", "model": "gan", '
                                '"temperature": 0.7}\n')
    assert os.listdir(path.parent) == ["state.json"]


def test_no_file_yet_is_no_state_and_no_warning(tmp_path, caplog):
    assert saved_state.load(tmp_path / "state.json") == {}
    assert warnings_of(caplog) == []


def test_unknown_keys_are_dropped_and_missing_ones_are_fine(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"mode": "continuous", "version": 7, "colour": "blue"}')
    assert saved_state.read(path) == {"mode": "continuous"}


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_write_failing_midway_leaves_the_old_file_whole_and_no_temp_file(tmp_path, monkeypatch, step):
    path = tmp_path / "state.json"
    saved_state.write(path, FULL)
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    if step == "write":
        real_fdopen = os.fdopen

        class HalfFile:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[:5])  # half the bytes reach the temp file, then the disk is full
                self.f.flush()
                boom()

        monkeypatch.setattr(saved_state.os, "fdopen", lambda *a, **k: HalfFile(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(saved_state.os, step, boom)
    with pytest.raises(OSError, match="No space left"):
        saved_state.write(path, {**FULL, "mode": "continuous"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert saved_state.read(path) == FULL
    assert os.listdir(tmp_path) == ["state.json"]


CORRUPT = {
    "not JSON": b"mode: accompany\n",
    "truncated": b'{"mode": "accompany", "temperat',
    "empty": b"",
    "not UTF-8": b'{"mode": "\xff\xfe"}',
    "a list": b'["accompany", 0.7]',
    "a number": b"42",
    "temperature a string": b'{"temperature": "hot"}',
    "answer_bars a float": b'{"answer_bars": 2.5}',
    "answer_bars a bool": b'{"answer_bars": true}',
    "mode a number": b'{"mode": 2}',
    "model null": b'{"model": null}',
    "too big": b'{"mode": "' + b"a" * (70 * 1024) + b'"}',
}


@pytest.mark.parametrize("kind", [*CORRUPT, "a directory", "a FIFO", "unreadable"])
def test_a_corrupt_file_costs_one_warning_naming_it_and_jamd_starts_from_the_config(tmp_path, caplog, kind):
    path = tmp_path / "jamd" / "state.json"
    path.parent.mkdir()
    if kind == "a directory":
        path.mkdir()
    elif kind == "a FIFO":
        os.mkfifo(path)  # no writer: an open without O_NONBLOCK would wait for ever
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads a file of mode 000")
        path.write_text(json.dumps(FULL))
        path.chmod(0)
    else:
        path.write_bytes(CORRUPT[kind])
    with pytest.raises(CorruptState):
        saved_state.read(path)
    caplog.clear()
    cfg = two_models(**{"state.path": str(path)})
    got, restored = restore(cfg, set(), accept)
    assert got == cfg
    assert restored.values == {}
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and str(path) in warnings[0] and "starting from the config" in warnings[0], warnings
    assert infos_of(caplog) == []


# -- precedence at start ---------------------------------------------------------
def saved(tmp_path, state: dict, **sets) -> Config:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    return two_models(**{"state.path": str(path), **sets})


def test_the_saved_state_wins_over_config_yaml(tmp_path, caplog):
    cfg = saved(tmp_path, FULL)
    got, restored = restore(cfg, set(), accept)
    assert (got.live.mode, got.model.name, got.model.temperature, got.clock.bpm, got.live.response_bars) == (
        "accompany", "gan", 0.7, 100.0, 4)
    assert got == cfg.replace(**{"live.mode": "accompany", "model.name": "gan", "model.temperature": 0.7,
                                 "clock.bpm": 100.0, "live.response_bars": 4})
    assert infos_of(caplog) == [f"restored from {tmp_path / 'state.json'}: mode accompany, model gan, "
                                "temperature 0.7, tempo 100 BPM, answers 4 bars"]
    assert warnings_of(caplog) == []
    assert restored.before == {"live.mode": "call-response", "model.name": "lstm", "model.temperature": 0.9,
                               "clock.bpm": 120.0, "live.response_bars": 0}


def test_command_line_options_win_over_the_saved_state(tmp_path, caplog):
    # as `jamd run --mode continuous --set model.temperature=1.5` leaves them in the config
    cfg = saved(tmp_path, FULL, **{"live.mode": "continuous", "model.temperature": 1.5})
    got, restored = restore(cfg, {"live.mode", "model.temperature", "clock.bpm"}, accept)
    assert (got.live.mode, got.model.temperature, got.clock.bpm) == ("continuous", 1.5, 120.0)
    assert (got.model.name, got.live.response_bars) == ("gan", 4)
    assert set(restored.values) == {"model.name", "live.response_bars"}
    assert infos_of(caplog) == [f"restored from {tmp_path / 'state.json'}: model gan, answers 4 bars"]


@pytest.mark.parametrize("state, named", [
    ({"temperature": 9.0}, "saved temperature 9.0 ignored: model.temperature must be between 0 and 5"),
    ({"bpm": 1000}, "saved bpm 1000 ignored: clock.bpm must be between 20 and 300"),
    ({"answer_bars": -1}, "saved answer_bars -1 ignored: live.response_bars must be between 0 and 64"),
    ({"mode": "solo"}, "saved mode 'solo' ignored: live.mode must be one of continuous, call-response, accompany"),
    ({"model": "cgan"}, "saved model 'cgan' ignored: not in model.models (lstm, gan)"),
    ({"temperature": float("nan")}, "saved temperature nan ignored: not a finite number"),
    ({"bpm": float("inf")}, "saved bpm inf ignored: not a finite number"),
])
def test_a_bad_value_is_ignored_with_one_warning_naming_it_and_the_rest_is_restored(tmp_path, caplog, state, named):
    good = {"mode": "accompany"} if "mode" not in state else {"answer_bars": 2}
    got, _ = restore(saved(tmp_path, {**good, **state}), set(), accept)
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"state file {tmp_path / 'state.json'}: {named}"), warnings
    expected = ("accompany", 0) if "mode" not in state else ("call-response", 2)
    assert (got.live.mode, got.live.response_bars) == expected
    assert got.replace(**{"live.mode": "call-response", "live.response_bars": 0}) == Config().replace(
        **{"model.name": "lstm", "model.models": ["lstm", "gan"], "state.path": str(tmp_path / "state.json")})


def test_a_saved_model_that_no_longer_resolves_is_ignored(tmp_path, caplog):
    def gone(name: str) -> None:
        raise ModelError(f"model {name!r} not found")

    got, _ = restore(saved(tmp_path, {"model": "gan"}), set(), gone)
    assert got.model.name == "lstm"
    assert warnings_of(caplog) == [f"state file {tmp_path / 'state.json'}: saved model 'gan' ignored: "
                                   "model 'gan' not found"]


def test_a_shipped_model_resolves_with_the_real_model_store(tmp_path):
    got, _ = restore(saved(tmp_path, {"model": "gan"}), set())
    assert got.model.name == "gan"


def test_the_tempo_is_restored_only_on_jamds_own_clock(tmp_path, caplog):
    got, _ = restore(saved(tmp_path, {"bpm": 100.0}, **{"clock.source": "midi"}), set(), accept)
    assert got.clock.bpm == 120.0
    assert warnings_of(caplog) == [] and infos_of(caplog) == []


def test_state_save_false_neither_reads_nor_writes(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.write_text("not json")
    cfg = two_models(**{"state.path": str(path), "state.save": False})
    got, restored = restore(cfg, set(), accept)
    assert got == cfg and warnings_of(caplog) == []
    assert restored.saver(session()[0].engine) is None


def test_a_reload_keeps_restored_values_unless_config_yaml_changed_that_key(tmp_path):
    cfg = saved(tmp_path, {"temperature": 0.7, "mode": "accompany"})
    _, restored = restore(cfg, set(), accept)
    reloaded = restored.onto(cfg.replace(**{"clock.bpm": 90}))  # the file changed the tempo only
    assert (reloaded.model.temperature, reloaded.live.mode, reloaded.clock.bpm) == (0.7, "accompany", 90)
    edited = restored.onto(cfg.replace(**{"model.temperature": 1.2}))  # the user edited the temperature
    assert (edited.model.temperature, edited.live.mode) == (1.2, "accompany")
    assert Restored().onto(cfg) == cfg


# -- the engine writes it --------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def saving_session(tmp_path):
    s, clock, _out, _models = session()
    now = FakeTime()
    path = tmp_path / "state" / "state.json"
    s.engine.saver = StateSaver(path, saved_state.snapshot(s.engine), now=now)
    return s, clock, now, path


def cc(s, clock, number: int, value: int) -> None:
    s.engine.midi_in([CC, number, value], clock.now_ns())
    s.engine.run_once()


def test_a_cc_change_is_written_at_once_then_at_most_once_a_second(tmp_path):
    s, clock, now, path = saving_session(tmp_path)
    s.engine.run_once()
    assert not path.exists()  # nothing changed yet: nothing written
    cc(s, clock, 21, 127)  # temperature 2.0
    assert path.read_text() == '{"temperature": 2.0}\n'  # only what was changed live
    now.t += 0.4
    cc(s, clock, 22, 127)  # accompany, 0.4 s later: pending
    cc(s, clock, 25, 4)  # answers of 4 bars
    assert path.read_text() == '{"temperature": 2.0}\n'
    assert s.engine.saver.writes == 1
    assert s.engine.saver.due_in_s() == pytest.approx(0.6)
    assert s.engine._wait_s() <= 0.6 + 1e-9  # the engine wakes for it
    now.t += 0.6
    s.engine.run_once()
    assert path.read_text() == '{"answer_bars": 4, "mode": "accompany", "temperature": 2.0}\n'
    assert s.engine.saver.writes == 2
    now.t += 5
    s.engine.run_once()
    assert s.engine.saver.writes == 2  # no change, no write
    assert s.engine.saver.due_in_s() == float("inf")


def test_a_change_pending_at_a_clean_exit_is_written(tmp_path):
    s, clock, now, path = saving_session(tmp_path)
    cc(s, clock, 21, 0)
    now.t += 0.1
    cc(s, clock, 21, 127)
    assert json.loads(path.read_text())["temperature"] == 0.0
    s.close()
    assert json.loads(path.read_text())["temperature"] == 2.0


def test_an_osc_tempo_is_written_and_a_reload_is_not(tmp_path):
    s, _clock, now, path = saving_session(tmp_path)
    s.engine.inbox.put(("osc", "tempo", 96.0, None))
    s.engine.run_once()
    assert path.read_text() == '{"bpm": 96.0}\n'
    now.t += 1
    s.engine.reload(s.engine.cfg.replace(**{"live.response_bars": 2, "model.temperature": 1.5}))
    s.engine.run_once()
    now.t += 1
    s.close()
    assert s.engine.response_bars == 2
    assert path.read_text() == '{"bpm": 96.0}\n'  # config.yaml's values are config.yaml's to keep


def test_values_from_the_command_line_are_never_written(tmp_path):
    """`jamd run --mode accompany --bpm 90`, a temperature changed by OSC: the file holds the
    temperature alone, so a plain `jamd run` next time plays config.yaml's mode and tempo."""
    path = tmp_path / "state.json"
    sets = {"state.path": str(path), "clock.bpm": 90.0, "model.models": ["lstm", "gan"]}
    _cfg, restored = restore(two_models(**sets, **{"live.mode": "accompany"}), {"live.mode", "clock.bpm"}, accept)
    s, _clock, _out, _models = session("accompany", **sets)
    s.engine.saver = restored.saver(s.engine)
    s.engine.inbox.put(("osc", "temperature", 1.3, None))
    s.engine.run_once()
    s.close()
    assert path.read_text() == '{"temperature": 1.3}\n'
    plain, _ = restore(two_models(**{"state.path": str(path)}), set(), accept)
    assert (plain.live.mode, plain.clock.bpm, plain.model.temperature) == ("call-response", 120.0, 1.3)


def test_keys_changed_live_in_an_earlier_run_stay_until_changed_again(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"mode": "accompany", "temperature": 0.5}\n')
    sets = {"state.path": str(path), "model.temperature": 0.5}  # as restored
    _cfg, restored = restore(two_models(**{"state.path": str(path), "live.mode": "continuous"}), {"live.mode"},
                             accept)
    s, clock, _out, _models = session("continuous", **sets)
    s.engine.saver = restored.saver(s.engine)
    cc(s, clock, 25, 2)  # answers of 2 bars
    s.engine.inbox.put(("osc", "mode", "continuous", None))  # the --mode value, now chosen live
    s.engine.run_once()
    s.close()
    assert path.read_text() == '{"answer_bars": 2, "mode": "continuous", "temperature": 0.5}\n'


def test_a_value_changed_live_back_to_its_start_value_is_written_only_over_an_older_one(tmp_path):
    s, clock, now, path = saving_session(tmp_path)
    start = s.engine.temperature
    cc(s, clock, 21, 127)
    now.t += 1
    s.engine.inbox.put(("osc", "temperature", start, None))
    s.engine.run_once()
    assert json.loads(path.read_text()) == {"temperature": start}  # not 2.0: that would come back
    s2, clock2, _now2, path2 = saving_session(tmp_path / "other")
    cc(s2, clock2, 25, 0)  # answers as long as the phrase: the start value, and no older one saved
    s2.close()
    assert not path2.exists()


def test_a_failing_write_costs_one_warning_and_jamd_plays_on(tmp_path, caplog):
    s, clock, now, _ = saving_session(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    s.engine.saver.path = blocker / "state.json"  # its folder is a file: every write fails
    for value in (10, 20, 30):
        cc(s, clock, 21, value)
        now.t += 1.5
        s.engine.run_once()
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and str(blocker / "state.json") in warnings[0] and "plays on" in warnings[0]
    assert s.engine.error is None and s.engine.temperature == round(30 / 127 * 2, 3)
    s.engine.saver.path = tmp_path / "ok" / "state.json"  # the disk has room again
    now.t += 1.5
    s.engine.run_once()
    assert json.loads(s.engine.saver.path.read_text())["temperature"] == round(30 / 127 * 2, 3)
    assert infos_of(caplog)[-1].startswith("state saved to")


# -- jamd run, restarted -----------------------------------------------------------
@pytest.mark.jack
@pytest.mark.slow
def test_jamd_run_remembers_a_temperature_and_mode_set_by_cc(jamd_rig, private_state_home):
    from test_daemon_jack import common

    path = private_state_home / "jamd" / "state.json"
    d, player, _ = jamd_rig(*common())
    player.send([CC, 21, 89])  # temperature 1.402
    player.send([CC, 22, 127])  # accompany
    assert d.wait_log("mode accompany", 10), d.log()
    assert d.wait_log("temperature 1.40", 2), d.log()
    assert d.stop(signal.SIGTERM) == 0, d.log()
    state = json.loads(path.read_text())
    assert (state["mode"], state["temperature"]) == ("accompany", 1.402), state
    d, _, _ = jamd_rig(*common())
    assert f"restored from {path}: mode accompany, temperature 1.402" in d.log(), d.log()
    assert ", mode accompany, model " in d.log(), d.log()  # the ready line
    # --mode given: the command line wins; the saved temperature still comes back
    d, _, _ = jamd_rig(*common("--mode", "continuous"))
    assert f"restored from {path}: temperature 1.402" in d.log(), d.log()
    assert ", mode continuous, model " in d.log(), d.log()


# -- the one line says the real reason --------------------------------------------
def test_a_corrupt_file_is_moved_aside_once_replacing_an_older_one(tmp_path, caplog):
    path = tmp_path / "state.json"
    aside = tmp_path / "state.json.corrupt"
    aside.write_text("an older damaged file\n")
    path.write_bytes(b'{"mode": "accomp')
    cfg = two_models(**{"state.path": str(path)})
    assert restore(cfg, set(), accept)[0] == cfg
    assert warnings_of(caplog) == [f"state file {path} is not valid JSON (cut short or overwritten?): ignored, "
                                   f"moved aside to {aside}, starting from the config"]
    assert not path.exists() and aside.read_bytes() == b'{"mode": "accomp'
    caplog.clear()
    assert restore(cfg, set(), accept)[0] == cfg
    assert warnings_of(caplog) == []  # the next start is quiet


def test_a_folder_in_the_state_files_place_is_left_where_it_is(tmp_path, caplog):
    path = tmp_path / "state.json"
    path.mkdir()
    restore(two_models(**{"state.path": str(path)}), set(), accept)
    assert warnings_of(caplog) == [f"state file {path} is a directory: ignored, starting from the config"]
    assert path.is_dir() and not (tmp_path / "state.json.corrupt").exists()


def _failed_save(path: Path, caplog) -> list[str]:
    saver = StateSaver(path, {"temperature": 1.0})
    s, _clock, _out, _models = session()
    s.engine.temperature = 1.5
    saver.touch("temperature")
    saver.flush(s.engine)
    assert saver.writes == 0
    return warnings_of(caplog)


def test_a_path_through_a_file_says_that_file_is_not_a_folder(tmp_path, caplog):
    blocker = tmp_path / "passwd"
    blocker.write_text("root:x:0:0\n")
    path = blocker / "state.json"  # as state.path=/etc/passwd/state.json
    assert _failed_save(path, caplog) == [f"state not saved to {path}: {blocker} is not a folder "
                                          "(jamd plays on; retrying once a second)"]
    deeper = blocker / "jamd" / "state.json"  # mkdir's "Not a directory", the same cause
    caplog.clear()
    assert _failed_save(deeper, caplog) == [f"state not saved to {deeper}: {blocker} is not a folder "
                                            "(jamd plays on; retrying once a second)"]


@pytest.mark.skipif(not Path("/proc/1").is_dir(), reason="needs /proc")
def test_a_folder_that_takes_no_files_is_named(caplog):
    path = Path("/proc/1/state.json")
    warning, = _failed_save(path, caplog)
    assert warning.startswith(f"state not saved to {path}: /proc/1 does not take new files (not writable"), warning
    assert "No such file" not in warning


@pytest.mark.jack
@pytest.mark.slow
def test_jamd_run_with_a_one_off_mode_and_bpm_saves_only_the_live_change(jamd_rig, private_state_home):
    from test_daemon_jack import common

    path = private_state_home / "jamd" / "state.json"
    d, player, _ = jamd_rig(*common("--mode", "accompany"))  # common() gives --bpm too
    player.send([CC, 21, 89])  # temperature 1.402
    assert d.wait_log("temperature 1.40", 10), d.log()
    assert d.stop(signal.SIGTERM) == 0, d.log()
    assert path.read_text() == '{"temperature": 1.402}\n'  # neither the --mode nor the --bpm
