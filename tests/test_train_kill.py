"""Training survives being killed: at any instant of a save, and with a damaged checkpoint.

Two kinds of proof.  In-process, every step of the LSTM's `save_checkpoint`
is made the last one (an exception stops the save there, as SIGKILL would,
leaving the files as they are) and the run folder must resume from a
consistent (state, checkpoint) pair.  End to end, a real ``jamd train`` is
killed with SIGKILL in the middle of writing its checkpoint, then at random
instants, and a last ``jamd train`` resumes and finishes; a truncated
``last.keras`` is reported in one line and training falls back to
``previous.keras``.  Tiny settings (a 16-unit LSTM on the 27 tunes of
music21's erk5.abc, as tests/test_train_export.py), so it stays near a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from corpora import erk5_folder

pytest.importorskip("tensorflow")

from jamd.cli import main  # noqa: E402

TINY = ["corpus.workers=1", "training.units=16", "training.batch_size=8", "training.max_steps_per_epoch=2",
        "training.sequence_length=16", "corpus.validation_fraction=0.2",
        # TODO(issue 16 merge): drop once the export reads the metric-position input
        "training.metric_position=false"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    return [a for o in [*TINY, *erk5_folder(tmp)] for a in ("--set", o)]


def _state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


class Crash(BaseException):
    """Stands for SIGKILL: the save stops here and nothing after it runs."""


@pytest.mark.train
def test_a_save_stopped_at_any_step_resumes_from_a_consistent_pair(tmp_path, monkeypatch):
    import keras

    import jamd.training.train_lstm as tl
    from jamd.training import checkpoints
    from jamd.training.lstm_model import build_training_model

    vocab = ["/", "r", "_", "60", "62"]

    def model_with(value: float):
        model = build_training_model(len(vocab), 4, 0.0, 1e-3)
        model.set_weights([np.full_like(w, value) for w in model.get_weights()])
        return model

    def weight(model) -> float:
        return float(model.get_weights()[0].flat[0])

    def fresh_run(run: Path) -> None:
        for epoch in (1, 2):  # two good saves: a last and a previous pair
            tl.save_checkpoint(model_with(epoch), {"epoch": epoch, "vocabulary": vocab, "best_epoch": 0}, run)

    # count the steps of one save: every rename, fsync, state copy and state write
    counter = {"n": 0}
    real = {"os.replace": os.replace, "atomic_copy": checkpoints.atomic_copy,
            "atomic_json": checkpoints.atomic_json, "fsync_file": checkpoints.fsync_file}

    def patch(stop_at: int | None) -> None:
        counter["n"] = 0

        def step(name, fn):
            def wrapped(*a, **k):
                counter["n"] += 1
                if stop_at is not None and counter["n"] == stop_at:
                    raise Crash(name)
                return fn(*a, **k)
            return wrapped

        monkeypatch.setattr(checkpoints.os, "replace", step("os.replace", real["os.replace"]))
        monkeypatch.setattr(checkpoints, "atomic_copy", step("atomic_copy", real["atomic_copy"]))
        monkeypatch.setattr(checkpoints, "fsync_file", step("fsync_file", real["fsync_file"]))
        monkeypatch.setattr(tl, "atomic_json", step("atomic_json", real["atomic_json"]))

    fresh_run(tmp_path / "count")
    patch(None)
    tl.save_checkpoint(model_with(3), {"epoch": 3, "vocabulary": vocab, "best_epoch": 0}, tmp_path / "count")
    total = counter["n"]
    assert total >= 5
    for stop_at in range(1, total + 2):
        run = tmp_path / f"stop{stop_at}"
        monkeypatch.undo()
        fresh_run(run)
        patch(stop_at)
        try:
            tl.save_checkpoint(model_with(3), {"epoch": 3, "vocabulary": vocab, "best_epoch": 0}, run)
        except Crash:
            pass
        monkeypatch.undo()
        state, model = tl.resume(run, vocab)
        # whichever epoch it resumes from, the weights are that epoch's
        assert state["epoch"] in (2, 3) and weight(model) == state["epoch"], (stop_at, state["epoch"])
        if stop_at > total:
            assert state["epoch"] == 3
        assert isinstance(model, keras.Model)


@pytest.mark.train
@pytest.mark.slow
def test_sigkill_during_training_then_resume(tmp_path, sets):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "jamd.cli", "train", "--out", str(run), "--no-progress", *sets]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = np.random.default_rng(0)
    killed_mid_save = 0
    for attempt in range(4):
        proc = subprocess.Popen([*cmd, "--epochs", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        # the first two: the instant a checkpoint's temp file exists (mid-save); then at random
        start_epoch = _state(run)["epoch"] if (run / "state.json").exists() else 0
        random_after = float(rng.uniform(0.05, 1.5))
        t_first = None
        while proc.poll() is None and time.monotonic() < deadline:
            saving = any(p.name.startswith(".last.") for p in run.glob(".*")) if run.exists() else False
            progressed = (run / "state.json").exists() and _state_epoch(run) > start_epoch
            if t_first is None and progressed:
                t_first = time.monotonic()
            if attempt < 2 and saving and progressed:
                killed_mid_save += 1
                break
            if attempt >= 2 and t_first is not None and time.monotonic() - t_first > random_after:
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0].decode(errors="replace")
        assert "Traceback" not in out, out[-3000:]
    assert killed_mid_save >= 1
    # damage the newest checkpoint as a cut-short copy would
    last = run / "last.keras"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    epoch_before = _state(run)["epoch"]
    proc = subprocess.run([*cmd, "--epochs", str(epoch_before + 2)], capture_output=True, env=env, timeout=300)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    damaged = [line for line in err.splitlines() if "last.keras" in line and "damaged" in line]
    assert len(damaged) == 1 or "missing or damaged" in err, err[-3000:]
    state = _state(run)
    assert state["epoch"] == epoch_before + 2
    assert len(state["history"]["loss"]) == state["epoch"] and all(np.isfinite(state["history"]["loss"]))


def _state_epoch(run: Path) -> int:
    try:
        return int(_state(run)["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.train
def test_no_usable_checkpoint_is_one_line(tmp_path, sets, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--no-progress", *sets]) == 0
    (run / "last.keras").write_bytes(b"PK\x03\x04 cut short")
    code = main(["train", "--epochs", "2", "--out", str(run), "--no-progress", *sets])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("jamd: ")]
    assert code == 4 and len(lines) == 1 and "Traceback" not in err, err
    assert "--fresh" in lines[0]
    assert main(["train", "--epochs", "1", "--fresh", "--out", str(run), "--no-progress", *sets]) == 0
    state = _state(run)
    assert state["epoch"] == 1


GAN_TINY = ["gan.latent_dim=4", "gan.generator_units=[8]", "gan.lstm_units=4", "gan.dense_units=[8]",
            "gan.batch_size=8", "gan.n_critic=2", "gan.monitor_bars=20", "gan.monitor_every=1",
            "gan.checkpoint_every=1", "gan.compile=false", "gan.pretrain_steps=1", "gan.critic_warmup=1"]


@pytest.mark.train
@pytest.mark.slow
def test_gan_falls_back_from_a_damaged_checkpoint(tmp_path, sets, capsys):
    """A damaged newest GAN checkpoint (or one written after its state: a kill between the
    two) is reported in one line and the run resumes from the state and checkpoint before."""
    run = tmp_path / "gan"
    args = ["train", "--model", "wgan", "--out", str(run), "--no-progress", *sets,
            *[a for o in GAN_TINY for a in ("--set", o)]]
    assert main([*args, "--steps", "3"]) == 0
    assert _state(run)["step"] == 3 and json.loads((run / "previous_state.json").read_text())["step"] == 2
    for data in (run / "ckpt").glob("ckpt-3.data-*"):
        data.write_bytes(data.read_bytes()[:10])
    capsys.readouterr()
    assert main([*args, "--steps", "4"]) == 0
    err = capsys.readouterr().err  # the CLI's log goes to stderr
    assert len([line for line in err.splitlines() if "ckpt-3 is unusable" in line]) == 1, err
    assert "from step 2" in err and "Traceback" not in err, err
    state = _state(run)
    assert state["step"] == 4 and len(state["history"]["d_loss"]) == 4
