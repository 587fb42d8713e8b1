"""A tiny harmony training run on six real Bach chorales, end to end: train, resume, export, load.

CI does not retrain the shipped model; this trains an 8-unit harmony LSTM
for a few epochs through `jamd train --model harmony`, checks that its loss
falls, that a stopped run resumes where it was (a second command, and a
process killed with SIGKILL after its first checkpoint), and that the export
passes its parity check and loads as `jamd.inference.harmony.HarmonyModel`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from cli_checks import run_cli  # noqa: E402
from music21.corpus import getWork  # noqa: E402

from jamd.inference.harmony import INPUTS, OUTPUTS, Harmonizer, HarmonyModel  # noqa: E402
from jamd.music import chords  # noqa: E402

CHORALES = ("bwv269", "bwv347", "bwv86.6", "bwv267", "bwv311", "bwv363")
TINY = ["harmony_training.units=8", "harmony_training.batch_size=2", "harmony_training.learning_rate=0.01",
        "harmony_training.patience=0", "corpus.validation_fraction=0.2", "corpus.workers=1"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("harmony")
    folder = tmp / "chorales"
    folder.mkdir()
    for name in CHORALES:
        shutil.copy(getWork(f"bach/{name}"), folder / f"{name}.mxl")
    overrides = [*TINY, f"harmony_training.source={folder}", f"corpus.cache_dir={tmp / 'cache'}"]
    return [a for o in overrides for a in ("--set", o)]


def train_cli(capsys, run_dir, model, epochs, sets):
    code, _, err = run_cli(capsys, "train", "--model", "harmony", "--epochs", epochs, "--out", run_dir,
                           "--export", model, "--no-progress", *sets)
    assert code == 0, err


@pytest.mark.train
def test_train_resume_export_load(tmp_path, sets, capsys):
    run_dir, model = tmp_path / "run", tmp_path / "tiny.onnx"
    train_cli(capsys, run_dir, model, 3, sets)
    state = json.loads((run_dir / "state.json").read_text())
    hist = state["history"]
    assert state["epoch"] == 3 and len(hist["loss"]) == 3
    assert hist["loss"][-1] < hist["loss"][0] and hist["val_loss"][-1] < hist["val_loss"][0]
    assert (run_dir / "loss.png").stat().st_size > 5000
    figures = json.loads((run_dir / "figures.json").read_text())
    assert figures["training_chorales"] == 5 and figures["validation_chorales"] == 1
    for key in ("val_chord_accuracy_online", "val_chord_accuracy_lookahead"):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["val_chord_nll_online"] > 0 and figures["epochs_run"] == 3

    # one more epoch: it resumes after epoch 3 instead of starting over
    train_cli(capsys, run_dir, model, 4, sets)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 4 and state["history"]["loss"][:3] == hist["loss"]

    import onnx

    proto = onnx.load(str(model))
    assert [i.name for i in proto.graph.input] == INPUTS
    assert [o.name for o in proto.graph.output] == OUTPUTS
    assert "LSTM" in {n.op_type for n in proto.graph.node}
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["kind"] == "harmony-step" and meta["units"] == 8 and meta["step_features"] == 117
    assert meta["chords"] == chords.chord_table()
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4 and meta["export"]["parity_beats"] > 8
    assert meta["training"]["figures"]["epochs_run"] == 4
    embedded = json.loads({p.key: p.value for p in proto.metadata_props}["jamd"])
    assert embedded["chords"] == meta["chords"] and embedded["units"] == 8

    harmony = HarmonyModel.load(str(model))
    chord, bass, melody = harmony.step(chords.step_input(None, 0, None, None, 0))
    assert (chord.shape, bass.shape, melody.shape) == ((49,), (12,), (13,))
    assert harmony.h.any()  # the state moved
    h = Harmonizer(harmony).decide(None, 0, True)
    assert h.chord != chords.NO_CHORD and h.bass in chords.chord_tones(h.chord)


@pytest.mark.train
def test_export_fails_and_writes_nothing_when_parity_breaks(tmp_path, sets, capsys, monkeypatch):
    import jamd.export.harmony_onnx as ho
    from jamd.export.lstm_onnx import ExportError

    run_dir, model = tmp_path / "run", tmp_path / "tiny.onnx"
    train_cli(capsys, run_dir, model, 1, sets)
    model.unlink()
    model.with_suffix(".json").unlink()
    monkeypatch.setattr(ho, "parity", lambda path, keras_model, x: 0.5)
    from jamd.config import load

    with pytest.raises(ExportError, match="parity failed"):
        ho.export_harmony_run(run_dir, model, load(None, sets[1::2]))
    assert not model.exists() and not model.with_suffix(".json").exists()


@pytest.mark.train
@pytest.mark.slow
def test_a_killed_run_resumes(tmp_path, sets):
    run_dir, model = tmp_path / "run", tmp_path / "tiny.onnx"
    cmd = [sys.executable, "-m", "jamd.cli", "train", "--model", "harmony", "--epochs", "40", "--out",
           str(run_dir), "--export", str(model), "--no-progress", *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "state.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (run_dir / "state.json").is_file(), "no checkpoint within 2 minutes"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)  # wherever it is: mid-epoch or mid-save
    finally:
        proc.wait()
    killed_at = json.loads((run_dir / "state.json").read_text())["epoch"]
    assert 1 <= killed_at < 40 and not model.exists()

    cmd[cmd.index("--epochs") + 1] = str(killed_at + 2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stderr
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == killed_at + 2 and len(state["history"]["loss"]) == killed_at + 2
    assert np.isfinite(state["history"]["val_loss"]).all() and model.is_file()
