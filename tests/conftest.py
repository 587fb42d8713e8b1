"""Shared fixtures. Heavy fixtures (the JACK rig) live in their own modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ start-up chatter is noise in test logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def jack_server():
    """One private JACK server (dummy driver) for the whole session; see jack_rig.py."""
    from jack_rig import private_jack_server

    with private_jack_server() as name:
        yield name


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shipped_lstm() -> Path:
    from jamd.model_store import shipped_models_dir

    path = shipped_models_dir() / "lstm.onnx"
    assert path.is_file(), f"the shipped model is missing: {path}"
    return path
