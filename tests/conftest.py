"""Shared fixtures. Heavy fixtures (the JACK rig) live in their own modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ start-up chatter is noise in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def private_state_home(tmp_path_factory, monkeypatch) -> Path:
    """XDG_STATE_HOME in a fresh folder for each test: a `jamd run` (in-process or a
    subprocess, which inherits os.environ) never reads or writes the user's real saved
    state (~/.local/state/jamd/state.json), nor another test's."""
    home = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def jack_server():
    """One private JACK server (dummy driver) for the whole session; see jack_rig.py."""
    from jack_rig import private_jack_server

    with private_jack_server() as name:
        yield name


@pytest.fixture
def jamd_rig(request):
    """start(*jamd_run_args) -> (daemon, player, recorder) over the session's JACK server.

    One jamd at a time (a second one's ports would be renamed jamd-01); every
    daemon and client is stopped at the end of the test, or when the next starts.
    """
    request.getfixturevalue("jack_server")
    from jack_rig import Daemon, Player, Recorder

    made: list[list] = []

    def stop_all() -> None:
        while made:
            d, player, recorder = made.pop()
            d.stop()
            for client in (player, recorder):
                if client is not None:
                    client.close()

    def start(*args: str, player: str = "jamd-in:jamd in", recorder: str = "jamd:jamd out",
              record_timing: bool = False):
        stop_all()
        d = Daemon(*args)
        # registered before its clients connect: if connecting fails, the
        # daemon is still stopped (a leaked one kept running after its server)
        entry = [d, None, None]
        made.append(entry)
        entry[1] = Player(player)
        entry[2] = Recorder(recorder, timing=record_timing)
        return d, entry[1], entry[2]

    yield start
    stop_all()


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shipped_lstm() -> Path:
    from jamd.inference.model_store import shipped_models_dir

    path = shipped_models_dir() / "lstm.onnx"
    assert path.is_file(), f"the shipped model is missing: {path}"
    return path
