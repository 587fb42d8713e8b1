"""Output paths the user names (--out, --export): checked before the work, written with one-line errors.

Every command that writes a file or a folder goes through here, so they all
behave alike: missing parent folders are created, an existing target of the
wrong kind (a folder where a file goes, a file where a folder goes, a device
or FIFO) is refused, and any failure to write becomes one `UsageError` line
naming the option, the path and the reason (exit 2) instead of a traceback.
The checks run before long work (training, parsing a corpus) so a typo costs
nothing; the write itself is still guarded, since a path can pass the checks
and fail anyway (``/proc/version`` as root: EIO on write).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..config import clip
from ..errors import UsageError


def _fail(option: str, path: str | Path, why: str) -> UsageError:
    return UsageError(f"{option} {clip(repr(str(path)))}: {why}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _make_folder(folder: Path, option: str, path: str | Path) -> None:
    """Create `folder` and its parents; refuse a file in the way or a folder jamd cannot write into."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise _fail(option, path, f"{clip(str(blocker))} is a file, not a folder") from None
    except OSError as exc:
        raise _fail(option, path, f"cannot create folder {clip(str(folder))} ({_reason(exc)})") from None
    if not folder.is_dir():
        raise _fail(option, path, f"{clip(str(folder))} is not a folder")
    try:  # a probe file, removed at once: a read-only folder is found now, not after the work
        fd, probe = tempfile.mkstemp(prefix=".jamd-probe.", dir=folder)
    except OSError as exc:
        raise _fail(option, path, f"cannot write into {clip(str(folder))} ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(probe)


def _given(path: str | Path | None, option: str) -> Path:
    if path is None or not str(path).strip():
        raise UsageError(f"{option} must not be empty (received {clip(repr(path))}): give a path")
    return Path(path)


def check_output_file(path: str | Path, option: str) -> Path:
    """`path` as a file jamd may write (parents created), else one `UsageError` line naming `option`.

    Refused: an empty path, an existing folder, an existing non-regular file
    (device, FIFO, socket: writing there would hang or replace it), a parent
    that is a file or cannot be created or written into.
    """
    p = _given(path, option)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):  # the parents are checked below
        st = None
    except OSError as exc:
        raise _fail(option, path, f"cannot use this path ({_reason(exc)})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise _fail(option, path, "is a folder; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise _fail(option, path, "is not a regular file (a device, FIFO or socket)")
        if not os.access(p, os.W_OK):
            raise _fail(option, path, "the file is not writable")
    _make_folder(p.parent, option, path)
    return p


def check_output_dir(path: str | Path, option: str) -> Path:
    """`path` as a folder jamd may write into (created with its parents), else one `UsageError` line."""
    p = _given(path, option)
    if p.exists() and not p.is_dir():
        raise _fail(option, path, "is a file, not a folder")
    if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        raise _fail(option, path, "the folder is not writable")
    _make_folder(p, option, path)
    return p


def check_input_file(path: str | Path, option: str) -> Path:
    """`path` as a file jamd may read whole: it exists and is a regular file, else one `UsageError` line.

    A device (/dev/urandom: endless) or a FIFO (blocks until a writer comes) would hang the
    read; a folder would fail deep inside a parser.
    """
    p = _given(path, option)
    try:
        st = p.stat()
    except OSError as exc:
        raise _fail(option, path, f"cannot read ({_reason(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(option, path, "is a folder; give a file")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(option, path, "is not a regular file (a device, FIFO or socket)")
    return p


@contextlib.contextmanager
def writing(path: str | Path, option: str) -> Iterator[Path]:
    """Guard the write of `path`: any `OSError` inside becomes one `UsageError` line naming it."""
    try:
        yield Path(path)
    except OSError as exc:
        where = exc.filename if exc.filename not in (None, str(path)) else None
        detail = f"{_reason(exc)}" + (f": {clip(str(where))}" if where else "")
        raise _fail(option, path, f"cannot write ({detail})") from None


def write_text(path: str | Path, text: str, option: str) -> Path:
    """Check `path` (see `check_output_file`) and write `text` to it (UTF-8), one line on failure."""
    p = check_output_file(path, option)
    with writing(p, option):
        p.write_text(text, encoding="utf-8")
    return p
