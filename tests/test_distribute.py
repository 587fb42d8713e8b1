"""Training on several machines: the cluster flags, and two real workers on localhost (CPU).

The workers are two `jamd train` processes joined by --cluster/--task or TF_CONFIG (TensorFlow's
MultiWorkerMirroredStrategy over gRPC on free local ports), each with its own run
folder as two machines would have, training a 16-unit LSTM for a few steps on the 27
tunes of music21's erk5.abc.  Both must finish with the same weights (each worker's
BackupAndRestore backup is its weights file), the chief alone writes the run folder,
and its export passes the ONNX parity check.  A worker killed mid-run and the cluster
started again resume from the last epoch.
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

from jamd.cli import main
from jamd.errors import ConfigError, UsageError
from jamd.training.distribute import Role, backup_dir, free_local_ports, parse_cluster, parse_task, tf_config

TINY = ["corpus.workers=1", "training.units=16", "training.batch_size=8", "training.max_steps_per_epoch=3",
        "training.sequence_length=16", "corpus.validation_fraction=0.2"]


def test_parse_cluster_exact():
    assert parse_cluster("chief=10.0.0.1:2222,worker=10.0.0.2:2222, worker=host-b.lan:3000") == {
        "chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "host-b.lan:3000"]}
    assert parse_cluster("worker=[::1]:5000,worker=localhost:5001") == {"worker": ["[::1]:5000", "localhost:5001"]}


@pytest.mark.parametrize("text, says", [
    ("boss=h:1", "'boss=h:1' is not JOB=HOST:PORT"),
    ("chief=h", "'h' is not HOST:PORT"),
    ("worker=h:99999", "'h:99999' is not HOST:PORT (port 1-65535)"),
    ("chief=a:1,chief=b:1", "more than one chief"),
    ("worker=a:1,worker=a:1", "an address appears twice"),
    ("", "'' is not JOB=HOST:PORT"),
])
def test_parse_cluster_errors_name_the_value(text, says):
    with pytest.raises(UsageError) as err:
        parse_cluster(text)
    assert str(err.value).startswith(f"--cluster {text!r}: ") and says in str(err.value)
    with pytest.raises(ConfigError, match="^training.cluster "):
        parse_cluster(text, "training.cluster")


def test_parse_task_exact_and_errors():
    jobs = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert parse_task("worker:1", jobs) == ("worker", 1) and parse_task("chief:0", jobs) == ("chief", 0)
    with pytest.raises(UsageError, match=r"^--task 'worker:2': the cluster has 2 worker task\(s\) \(b:1, c:1\)$"):
        parse_task("worker:2", jobs)
    with pytest.raises(UsageError, match="^--task 'w0': write JOB:INDEX"):
        parse_task("w0", jobs)


def test_tf_config_is_checked(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(ConfigError, match="^TF_CONFIG: not a cluster and task"):
        tf_config()
    monkeypatch.setenv("TF_CONFIG", "")
    assert tf_config() is None


def test_backup_folders_differ_per_worker(tmp_path):
    assert backup_dir(tmp_path, Role(None, "multi-worker", True, ("chief", 0), 3)) == tmp_path / "backup"
    assert backup_dir(tmp_path, Role(None, "multi-worker", False, ("worker", 1), 3)) == tmp_path / "backup/worker-1"


def test_a_backup_that_cannot_serve_is_removed(tmp_path):
    h5py = pytest.importorskip("h5py")
    from jamd.training.distribute import drop_stale_backup

    def backup(epoch: int, damaged: bool = False) -> Path:
        folder = tmp_path / f"b{epoch}{damaged}"
        (folder / "worker-1").mkdir(parents=True)
        (folder / "training_metadata.json").write_text(json.dumps({"epoch": epoch, "batch": 0}))
        with h5py.File(folder / "latest.weights.h5", "w") as f:
            f["w"] = np.zeros(3)
        if damaged:
            data = (folder / "latest.weights.h5").read_bytes()
            (folder / "latest.weights.h5").write_bytes(data[: len(data) // 3])
        return folder

    def files(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())

    kept = backup(2)
    drop_stale_backup(kept, 2)  # the chief's state is from epoch 2: its backup serves
    drop_stale_backup(kept, None)  # a worker's sound backup
    assert files(kept) == ["latest.weights.h5", "training_metadata.json", "worker-1"]
    ahead = backup(3)
    drop_stale_backup(ahead, 2)  # killed between the backup and the state
    assert files(ahead) == ["worker-1"]  # another worker's folder is left alone
    damaged = backup(2, damaged=True)
    drop_stale_backup(damaged, None)
    assert files(damaged) == ["worker-1"]
    drop_stale_backup(tmp_path / "none", 0)  # no backup yet: nothing to do


@pytest.mark.parametrize("args, says", [
    (["--cluster", "chief=h"], "jamd: --cluster 'chief=h': 'h' is not HOST:PORT (port 1-65535)"),
    (["--cluster", "chief=h:1"], "jamd: --cluster needs --task"),
    (["--cluster", "chief=h:1", "--task", "worker:0"], "jamd: --task 'worker:0': the cluster has 0 worker task(s)"),
    (["--cluster", "chief=h:1", "--task", "chief:0", "--model", "gan"], "jamd: --cluster and --task train the LSTM"),
])
def test_bad_cluster_flags_are_one_line(args, says, capsys):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(says), err


@pytest.mark.train
def test_mirrored_strategy_trains_and_resumes(tmp_path, sets, capsys):
    """training.strategy=mirrored on this machine's one device: the distributed dataset, the model
    built under the strategy and a checkpoint copied into it at resume."""
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--no-progress", *sets, "--set", "training.strategy=mirrored"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2"]) == 0
    err = capsys.readouterr().err
    assert "strategy mirrored (1 replica(s))" in err and "resuming from" in err, err[-2000:]
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2 and all(np.isfinite(state["history"]["loss"]))
    assert not (run / "backup").exists()  # BackupAndRestore is for clusters


# -- two real workers --------------------------------------------------------------------------

def start(tmp: Path, sets: list[str], epochs: int, tag: str, worker_tf_config: bool = False
          ) -> dict[str, subprocess.Popen]:
    """The chief (--cluster/--task) and the worker (the same, or TF_CONFIG) as two processes."""
    chief_port, worker_port = free_local_ports(2)
    cluster = f"chief=localhost:{chief_port},worker=localhost:{worker_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    tf_config_env = {**env, "TF_CONFIG": json.dumps({
        "cluster": {"chief": [f"localhost:{chief_port}"], "worker": [f"localhost:{worker_port}"]},
        "task": {"type": "worker", "index": 0}})}
    procs = {}
    for task, folder in (("chief:0", "chief"), ("worker:0", "worker")):
        log = open(tmp / f"{folder}-{tag}.log", "w")
        by_env = worker_tf_config and folder == "worker"
        procs[folder] = subprocess.Popen(
            [sys.executable, "-m", "jamd.cli", "train", "--epochs", str(epochs), "--out", str(tmp / folder),
             "--no-progress", *([] if by_env else ["--cluster", cluster, "--task", task]), *sets],
            stdout=log, stderr=subprocess.STDOUT, env=tf_config_env if by_env else env)
    return procs


def finish(procs: dict[str, subprocess.Popen], tmp: Path, tag: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    for name, p in procs.items():
        try:
            p.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            pytest.fail(f"{name} hung: " + (tmp / f"{name}-{tag}.log").read_text()[-3000:])
    for name, p in procs.items():
        log = (tmp / f"{name}-{tag}.log").read_text()
        assert p.returncode == 0 and "Traceback" not in log, f"{name}: {log[-3000:]}"


def weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_weights(tmp: Path) -> None:
    chief = weights(tmp / "chief" / "backup" / "latest.weights.h5")
    worker = weights(tmp / "worker" / "backup" / "worker-0" / "latest.weights.h5")
    assert set(chief) == set(worker) and any(k.startswith("layers/lstm") for k in chief)
    for k in chief:
        np.testing.assert_array_equal(chief[k], worker[k], err_msg=k)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    return [a for o in [*TINY, *erk5_folder(tmp)] for a in ("--set", o)]


@pytest.mark.train
def test_two_workers_train_alike_and_the_chief_exports(tmp_path, sets):
    pytest.importorskip("tf2onnx")
    assert main(["corpus", *sets]) == 0  # parse once, not in both workers at once
    finish(start(tmp_path, sets, 2, "run", worker_tf_config=True), tmp_path, "run")
    assert_same_weights(tmp_path)
    chief_log = (tmp_path / "chief-run.log").read_text()
    assert "strategy multi-worker (2 replica(s), task chief:0 of 2 workers); global batch 16 windows" in chief_log
    # the worker found its place in TF_CONFIG alone
    assert "task worker:0 of 2 workers" in (tmp_path / "worker-run.log").read_text()
    state = json.loads((tmp_path / "chief" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
    # both workers logged the same losses: one model, trained in step
    losses = [[line.split("loss ")[1].split(",")[0] for line in (tmp_path / f"{w}-run.log").read_text().splitlines()
               if "train_lstm: epoch " in line] for w in ("chief", "worker")]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    # the chief alone writes the run folder; the worker keeps only its backup
    assert sorted(p.name for p in (tmp_path / "worker").iterdir()) == ["backup"]
    meta = json.loads((tmp_path / "chief" / "lstm.json").read_text())
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4
    assert meta["training"]["figures"]["replicas"] == 2 and meta["training"]["strategy"] == "auto"


@pytest.mark.train
@pytest.mark.slow
def test_a_killed_worker_and_a_restart_resume_from_the_last_epoch(tmp_path, sets):
    assert main(["corpus", *sets]) == 0
    procs = start(tmp_path, sets, 200, "first")
    meta = tmp_path / "worker" / "backup" / "worker-0" / "training_metadata.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and procs["worker"].poll() is None:
        try:
            if json.loads(meta.read_text())["epoch"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    procs["worker"].send_signal(signal.SIGKILL)
    procs["worker"].wait()
    # the chief's collectives lose their peer: it stops with one line (a scheduler restarts both)
    try:
        code = procs["chief"].wait(90)
    except subprocess.TimeoutExpired:
        procs["chief"].kill()
        pytest.fail("the chief did not notice the lost worker in 90 s")
    chief_log = (tmp_path / "chief-first.log").read_text()
    assert code == 4 and "Traceback" not in chief_log, chief_log[-3000:]
    assert "jamd: training stopped: another task of the cluster (the chief or a worker) stopped answering (" \
        in chief_log, chief_log[-3000:]
    assert ":)" not in chief_log  # no bare label with a dangling colon in the reason
    done = json.loads((tmp_path / "chief" / "state.json").read_text())["epoch"]
    assert done >= 3
    finish(start(tmp_path, sets, done + 2, "again"), tmp_path, "again")
    again = (tmp_path / "chief-again.log").read_text()
    assert f"resuming from {tmp_path / 'chief'}" in again and f"epoch {done + 1}/{done + 2}" in again
    assert f"epoch {done}/" not in again  # no finished epoch trained twice
    worker_again = (tmp_path / "worker-again.log").read_text()
    assert f"epoch {done + 1}/{done + 2}" in worker_again and "epoch 1/" not in worker_again
    state = json.loads((tmp_path / "chief" / "state.json").read_text())
    assert state["epoch"] == done + 2 and len(state["history"]["loss"]) == done + 2
    assert_same_weights(tmp_path)


def test_the_lost_task_reason_skips_tensorflows_bare_labels():
    from jamd.training.distribute import _reason

    class UnavailableError(Exception):
        pass

    assert _reason(UnavailableError("Graph execution error:\n\nDetected at node x\nSocket closed")) == \
        "UnavailableError: Detected at node x"
    assert _reason(UnavailableError("Graph execution error:")) == "UnavailableError: Graph execution error"
    assert _reason(UnavailableError("")) == "UnavailableError"
    assert _reason(UnavailableError("x" * 300)) == "UnavailableError: " + "x" * 120
