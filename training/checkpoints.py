"""Files of a training run that survive a kill at any instant.

Every file a run writes goes through `atomic_write`: the bytes go to a temp
file in the same folder, are fsynced, and `os.replace` puts them in place (a
rename within one file system is atomic on POSIX), then the folder is
fsynced so the rename itself survives a power cut.  A reader therefore sees
the old file or the new one, never half of one.

A run's state (``state.json``) names the checkpoint it belongs to by its
SHA-256, and the state and checkpoint before it are kept
(``previous_state.json``, and the checkpoint files the trainer rotates), so
a checkpoint that is damaged anyway (a disk fault, a copy cut short) is found
at resume and the run falls back to the one before, in one log line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE = "state.json"
PREVIOUS_STATE = "previous_state.json"


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` to write to; on success it is fsynced and renamed onto `path`.

    The temp name keeps `path`'s suffix (Keras insists on ``.keras``, matplotlib
    picks the format from it).  On an exception the temp file is removed and
    `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file 0600; what a run writes (the .onnx a daemon running as another user
    # loads) gets the mode any new file gets: 0666 less the umask
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def current_umask() -> int:
    """The process's umask (read by setting it and back: there is no getter before Python 3.13's os)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# the temp names `atomic_path` makes: "." + the target's stem + "." + mkstemp's 8 random
# characters + ".tmp" + the target's suffix
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9_]+)?")


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove temp files of `atomic_path`'s naming left in `folder` by a killed run (at a run's start,
    when no write of this run is under way); returns what was removed, each named at debug level."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if _TEMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except OSError as exc:
                log.debug("could not remove stale temp file %s: %s", p, exc)
                continue
            log.debug("removed stale temp file %s (left by a killed run)", p)
            removed.append(p)
    return removed


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (str: UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1) + "\n")


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> None:
    """`save(tmp_path)` (``model.save``, ``fig.savefig``...), then rename onto `path`."""
    with atomic_path(path) as tmp:
        save(tmp)


def atomic_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def sha256(path: Path) -> str | None:
    """The file's SHA-256 (hex), or None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def read_states(out: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The run's states, newest first (``state.json``, then ``previous_state.json``), each
    that parses; one that does not is reported in a log line and skipped."""
    found = []
    for name in (STATE, PREVIOUS_STATE):
        path = out / name
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            log.warning("%s is damaged (%s); ignoring it", path, str(exc)[:80])
            continue
        found.append((path, state))
    return found


def rotate_state(out: Path) -> None:
    """Keep the current state as ``previous_state.json`` before a new one is written."""
    current = out / STATE
    if current.is_file():
        atomic_copy(current, out / PREVIOUS_STATE)
