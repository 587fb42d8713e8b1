"""tf.distribute for `jamd train`: one device, a machine's GPUs, or a cluster of machines.

training.strategy picks it:

* auto: `MultiWorkerMirroredStrategy` when a cluster is given (``--cluster`` /
  training.cluster, or the TF_CONFIG environment variable), else
  `MirroredStrategy` when TensorFlow sees more than one GPU, else one device;
* default / mirrored / multi-worker: that one.

The batch size is per replica: one step trains on training.batch_size *
replicas windows (the global batch), so the learning rate's meaning per window
stays the same when machines are added.

A cluster is written ``chief=host:port,worker=host:port[,worker=...]``, the
same on every machine; each is told its role with ``--task chief:0`` /
``--task worker:0`` (TF_CONFIG's "cluster" and "task").  Without a "chief"
job, worker 0 is the chief.  The chief alone writes the run folder's files
(state.json, last.keras, best.keras, loss.png, the export); every worker keeps
a `keras.callbacks.BackupAndRestore` backup (the chief in DIR/backup, worker i
in DIR/backup/worker-i, so workers sharing a folder never write the same file),
and at each start the chief's epoch, weights and optimiser state are sent to
every worker, so a cluster restarted after losing a worker resumes where the
chief's last finished epoch left it, with all workers agreeing.  TensorFlow's
collectives need every worker back: restart the lost one and the others.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jamd.errors import ConfigError, DataError, UsageError

log = logging.getLogger(__name__)

JOBS = ("chief", "worker")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def free_local_ports(n: int) -> list[int]:
    """`n` TCP ports free on localhost now, for a cluster of workers on one machine (tests, the
    train bench); the OS may hand one out again before a worker binds it, which is rare."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def parse_cluster(text: str, name: str = "--cluster") -> dict[str, list[str]]:
    """``"chief=h1:2222,worker=h2:2222"`` -> {"chief": ["h1:2222"], "worker": ["h2:2222"]}.

    Jobs: chief (at most one) and worker; addresses host:port (port 1-65535),
    each once.  Raises UsageError (flag) / ConfigError (config key) naming `name`.
    """
    err = UsageError if name.startswith("--") else ConfigError
    cluster: dict[str, list[str]] = {}
    for item in (p.strip() for p in str(text).split(",")):
        job, eq, address = item.partition("=")
        if not eq or job.strip() not in JOBS:
            raise err(f"{name} {text!r}: {item!r} is not JOB=HOST:PORT with JOB chief or worker "
                      "(e.g. chief=10.0.0.1:2222,worker=10.0.0.2:2222)")
        m = _ADDRESS.match(address.strip())
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise err(f"{name} {text!r}: {address.strip()!r} is not HOST:PORT (port 1-65535)")
        cluster.setdefault(job.strip(), []).append(address.strip())
    if len(cluster.get("chief", [])) > 1:
        raise err(f"{name} {text!r}: more than one chief")
    if "worker" not in cluster and "chief" not in cluster:
        raise err(f"{name} {text!r}: no tasks")
    addresses = [a for job in cluster.values() for a in job]
    if len(set(addresses)) != len(addresses):
        raise err(f"{name} {text!r}: an address appears twice")
    return cluster


def parse_task(text: str, cluster: dict[str, list[str]], name: str = "--task") -> tuple[str, int]:
    """``"worker:1"`` -> ("worker", 1), checked against `cluster`; UsageError names `name`."""
    job, colon, index = str(text).partition(":")
    if job not in JOBS or not colon or not index.isdigit():
        raise UsageError(f"{name} {text!r}: write JOB:INDEX with JOB chief or worker (e.g. worker:0)")
    if int(index) >= len(cluster.get(job, [])):
        raise UsageError(f"{name} {text!r}: the cluster has {len(cluster.get(job, []))} {job} task(s) "
                         f"({', '.join(cluster.get(job, [])) or 'none'})")
    return job, int(index)


def tf_config() -> dict[str, Any] | None:
    """TF_CONFIG from the environment (None: unset or empty); ConfigError if it is not JSON with
    a "cluster" of chief/worker address lists and a "task"."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
            raise TypeError("cluster is not a mapping of address lists")
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise ValueError(f"task {task} is not in the cluster")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG: not a cluster and task ({str(exc)[:80]}); "
                          'e.g. {"cluster": {"worker": ["h1:2222", "h2:2222"]}, '
                          '"task": {"type": "worker", "index": 0}}') from None
    return conf


@dataclass
class Role:
    """This process's place in training: the strategy, whether it is the chief, its task
    (None on one machine), the cluster's worker count (input pipelines)."""

    strategy: Any
    kind: str  # "default", "mirrored" or "multi-worker"
    is_chief: bool = True
    task: tuple[str, int] | None = None
    workers: int = 1

    @property
    def replicas(self) -> int:
        """Replicas in sync over the whole cluster (global batch = batch_size * replicas)."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def local_replicas(self) -> int:
        return max(1, self.replicas // self.workers)

    def describe(self) -> str:
        where = "" if self.task is None else f", task {self.task[0]}:{self.task[1]} of {self.workers} workers"
        return f"strategy {self.kind} ({self.replicas} replica(s){where})"


def resolve(strategy: str, cluster: str | None = None, task: str | None = None,
            cluster_name: str = "--cluster") -> Role:
    """The strategy to train with (see the module text).  A cluster string (flag or config)
    with `task` is written to TF_CONFIG before TensorFlow starts its collectives; without one,
    TF_CONFIG is read.  Must run before any other TensorFlow op of the process."""
    if cluster:
        jobs = parse_cluster(cluster, cluster_name)
        if task is None:
            raise UsageError(f"{cluster_name} needs --task to say which of its tasks this machine is "
                             "(e.g. --task worker:0)")
        job, index = parse_task(task, jobs)
        os.environ["TF_CONFIG"] = json.dumps({"cluster": jobs, "task": {"type": job, "index": index}})
    elif task is not None:
        raise UsageError(f"--task {task!r} needs a cluster: --cluster or training.cluster")
    conf = tf_config()
    if strategy == "default" and conf is not None:
        raise ConfigError("training.strategy default trains on one machine, but a cluster is given "
                          "(--cluster, training.cluster or TF_CONFIG); use auto or multi-worker")

    import tensorflow as tf

    if strategy == "multi-worker" or (strategy == "auto" and conf is not None):
        if conf is not None:  # the first collective waits for every task: say so before it does
            t = conf["task"]
            log.info("cluster: this is %s:%s of %s; training starts when every task has joined",
                     t["type"], t["index"], ", ".join(f"{j} {' '.join(a)}" for j, a in conf["cluster"].items()))
        s = tf.distribute.MultiWorkerMirroredStrategy()
        if conf is None:
            return Role(s, "multi-worker")
        jobs, t = conf["cluster"], conf["task"]
        has_chief = bool(jobs.get("chief"))
        chief = t["type"] == "chief" or (not has_chief and t["type"] == "worker" and int(t["index"]) == 0)
        workers = sum(len(jobs.get(j, [])) for j in JOBS)
        return Role(s, "multi-worker", chief, (t["type"], int(t["index"])), workers)
    if strategy == "mirrored" or (strategy == "auto" and len(tf.config.list_physical_devices("GPU")) > 1):
        return Role(tf.distribute.MirroredStrategy(), "mirrored")
    return Role(tf.distribute.get_strategy(), "default")


def backup_dir(out: Path, role: Role) -> Path:
    """Where this worker's BackupAndRestore backup lives: DIR/backup (the chief), DIR/backup/JOB-I."""
    if role.is_chief or role.task is None:
        return out / "backup"
    return out / "backup" / f"{role.task[0]}-{role.task[1]}"


def from_chief(strategy: Any, values: np.ndarray) -> np.ndarray:
    """The chief's `values` (1-D float64), on every worker: an all-reduce (sum) in which every
    replica but the first (which the chief holds) contributes zeros.  Every worker must call it
    at the same point; on one replica it returns `values`."""
    if strategy.num_replicas_in_sync == 1:
        return values
    import tensorflow as tf

    @tf.function
    def reduce(x):
        def replica(v):
            ctx = tf.distribute.get_replica_context()
            keep = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float64)
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, v * keep)
        return strategy.run(replica, args=(x,))

    out = reduce(tf.constant(np.asarray(values, dtype=np.float64)))
    return strategy.experimental_local_results(out)[0].numpy()


def sync_from_chief(strategy: Any, variables: list) -> None:
    """Give every worker the chief's values of `variables` (weights, optimiser state): one
    all-reduce over all of them flattened to float64 (exact for float32 and int counters)."""
    if strategy.num_replicas_in_sync == 1 or not variables:
        return
    arrays = [np.asarray(v.numpy()) for v in variables]
    flat = from_chief(strategy, np.concatenate([a.ravel().astype(np.float64) for a in arrays]))
    start = 0
    for v, a in zip(variables, arrays, strict=True):
        v.assign(flat[start:start + a.size].reshape(a.shape).astype(a.dtype))
        start += a.size


def patch_keras_multi_worker() -> None:
    """Make Keras 3's fit work under MultiWorkerMirroredStrategy.

    Keras 3 (3.15) reduces each step's metric values across workers with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on the scalar values
    ("Invalid reduction dimension 0 for input with 0 dimensions";
    keras-team/keras#20585, tensorflow/tensorflow#72388, open upstream).  The mean
    over replicas (axis=None) is what is meant; every other case is Keras's own.
    Idempotent; touches only TensorFlow-backend Keras.
    """
    from keras.src.backend.tensorflow import trainer as kt

    if getattr(kt.reduce_per_replica, "jamd_patched", False):
        return
    original = kt.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strategy):
            from keras.src import tree

            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.jamd_patched = True  # type: ignore[attr-defined]
    kt.reduce_per_replica = reduce_per_replica


def distributed(role: Role, make: Callable[[int, int], Any]) -> Any:
    """make(shard, shards) -> tf.data.Dataset, given to the strategy one input pipeline per worker."""
    if role.kind == "default":
        return make(0, 1)
    return role.strategy.distribute_datasets_from_function(
        lambda ctx: make(ctx.input_pipeline_id, ctx.num_input_pipelines))


def sync_callback(role: Role, epoch_box: list[int]) -> Any:
    """on_train_begin, after BackupAndRestore restored this worker's backup: every worker takes the
    chief's weights and optimiser state, and fit starts at the run's epoch (not the backup's)."""
    import keras

    class SyncFromChief(keras.callbacks.Callback):
        def on_train_begin(self, logs=None) -> None:
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            sync_from_chief(role.strategy, [*self.model.weights, *self.model.optimizer.variables])
            self.model._initial_epoch = epoch_box[0]  # read by Keras's fit after on_train_begin

    return SyncFromChief()


def build_for_strategy(model: Any, role: Role, x: Any, y: Any) -> None:
    """Build the optimiser and metrics under the strategy from one local batch, and stop fit from
    doing it: Keras 3's fit draws a batch from the distributed dataset for that and reduces it
    across replicas, which fails under MultiWorkerMirroredStrategy ("Attempt to convert a value
    (PerReplica...)", keras-team/keras#20585) and, under any strategy, loses that batch."""
    if role.kind == "default":
        return
    if role.kind == "multi-worker":
        patch_keras_multi_worker()
    with role.strategy.scope():
        model._symbolic_build(data_batch=(x, y))
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def copy_state(src: Any, dst: Any) -> None:
    """Weights and optimiser state of a loaded checkpoint into the same model built under a strategy."""
    dst.set_weights(src.get_weights())
    mine, theirs = dst.optimizer.variables, src.optimizer.variables
    if [tuple(v.shape) for v in mine] == [tuple(v.shape) for v in theirs]:
        for v, w in zip(mine, theirs, strict=True):
            v.assign(w)
    else:
        log.warning("the checkpoint's optimiser state does not fit the model; the optimiser starts afresh")


def drop_stale_backup(folder: Path, epoch: int | None) -> None:
    """Remove this worker's BackupAndRestore backup when it cannot serve: on the chief when it is
    not from `epoch`, the epoch its state.json names (a kill between the two saves leaves it one
    ahead); on any worker when its weights file does not open (a kill mid-write).  A worker's
    weights come from the chief at every start anyway, so its backup is a copy, never the only one.
    Only files: the folders in the chief's backup are other workers' backups."""
    if not folder.is_dir():
        return
    meta, weights = folder / "training_metadata.json", folder / "latest.weights.h5"
    if not meta.is_file() and not weights.is_file():
        return
    try:
        saved = json.loads(meta.read_text())["epoch"] if meta.is_file() else epoch
        if weights.is_file():
            import h5py

            with h5py.File(weights, "r"):
                pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        saved, why = None, f"damaged ({type(exc).__name__})"
    else:
        why = f"from epoch {saved}, the run from epoch {epoch}"
    if epoch is not None and saved != epoch or saved is None:
        log.info("backup %s is %s: not using it", folder, why)
        for f in folder.iterdir():
            if f.is_file():
                f.unlink()


def lost_worker(exc: Exception, role: Role) -> None:
    """A collective that failed because a worker went away: one line saying what to do."""
    import tensorflow as tf

    if role.kind == "multi-worker" and isinstance(exc, tf.errors.OpError):
        raise DataError(f"training stopped: another task of the cluster (the chief or a worker) stopped "
                        f"answering ({_reason(exc)}); start every task again with the same command: they "
                        "resume from the last epoch") from None


def _reason(exc: Exception) -> str:
    """The error's type and its first line that says something (TensorFlow's first line is often a
    bare label such as "Graph execution error:")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    said = next((ln for ln in lines if not ln.endswith(":")), lines[0].rstrip(":") if lines else "")
    return f"{type(exc).__name__}: {said[:120]}" if said else type(exc).__name__
