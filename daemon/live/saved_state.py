"""What `jamd run` remembers between starts: mode, model, temperature, tempo and answer length.

A headless box that reboots plays on as it was left (issue 15).  The state file
(`state.path`; "": ``$XDG_STATE_HOME/jamd/state.json``, else
``~/.local/state/jamd/state.json``) is a small JSON object::

    {"answer_bars": 4, "bpm": 100.0, "mode": "accompany", "model": "lstm", "temperature": 0.7}

The file remembers only what the performer changed live (a CC, an OSC message):
a key is written once it was changed live in some run, and stays in the file
until it is changed live again.  A value that came from config.yaml, a reload
or the command line (``--mode``, ``--bpm``) is never written, so a one-off
option does not stick.  At start `restore` puts the saved values into the
config: an option the user typed (``--mode``, ``--set model.temperature=...``)
wins over the file, the file wins over config.yaml.  While jamd plays,
`StateSaver.poll` (on the engine thread) writes the keys `StateSaver.touch`
marked, at most once a second, atomically (temp file, fsync, ``os.replace``): a
power cut leaves the old file or the new one, never half of one.  A damaged
file is moved aside once (``state.json.corrupt``); it, a value out of range or
a failed write each cost one warning line; none ever stops jamd.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, StateConfig, clip
from ..errors import ConfigError, ModelError

if TYPE_CHECKING:  # the engine imports this module's user, not this module
    from .engine import Engine

log = logging.getLogger(__name__)

# the file's names -> the config keys they stand for
FIELDS = {"mode": "live.mode", "model": "model.name", "temperature": "model.temperature",
          "bpm": "clock.bpm", "answer_bars": "live.response_bars"}
_TYPES: dict[str, tuple[type, ...]] = {"mode": (str,), "model": (str,), "temperature": (int, float),
                                       "bpm": (int, float), "answer_bars": (int,)}
MAX_STATE_BYTES = 64 * 1024  # jamd writes ~100 bytes; more is not its state file
MIN_INTERVAL_S = 1.0  # at most one write a second


class CorruptState(Exception):
    """The state file exists but cannot be used (the message says why).

    `movable`: a regular file whose content is bad (moved aside by `load`); False for a
    folder, a FIFO or an unreadable file, which are someone's doing, not jamd's half-write."""

    def __init__(self, why: str, movable: bool = False):
        super().__init__(why)
        self.movable = movable


def state_path(cfg: StateConfig, environ: Mapping[str, str] | None = None) -> Path:
    """`state.path`, or the XDG state folder's ``jamd/state.json`` when it is "".

    A relative ``$XDG_STATE_HOME`` is ignored, as the XDG Base Directory spec says."""
    if cfg.path:
        return Path(cfg.path).expanduser()
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "jamd" / "state.json"


def read(path: Path) -> dict[str, Any]:
    """The saved values ({} when there is no file yet), keys as in `FIELDS`; unknown keys are dropped.

    Raises CorruptState when the file is a directory or not a regular file, unreadable,
    over MAX_STATE_BYTES, not UTF-8 JSON, not an object, or holds a value of the wrong type.
    Checked on the open file (O_NONBLOCK, fstat), so a FIFO never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise CorruptState("is a directory") from None
    except OSError as exc:
        raise CorruptState(f"cannot be read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CorruptState("is a directory" if stat.S_ISDIR(mode) else "is not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise CorruptState(f"cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_STATE_BYTES:
        raise CorruptState(f"is over {MAX_STATE_BYTES // 1024} KiB", movable=True)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CorruptState("is not valid JSON (cut short or overwritten?)", movable=True) from None
    if not isinstance(data, dict):
        raise CorruptState(f"holds a JSON {type(data).__name__}, not an object", movable=True)
    out = {}
    for name, types in _TYPES.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise CorruptState(f"{name} is {clip(repr(value))}, not {' or '.join(t.__name__ for t in types)}",
                               movable=True)
        out[name] = value
    return out


def load(path: Path) -> dict[str, Any]:
    """`read`, with a damaged file costing one warning line naming `path` and giving {}.

    A regular file with bad content is moved aside to ``<path>.corrupt`` (replacing an older
    one), so the next start neither warns again nor loses it: the line says where it went."""
    try:
        return read(path)
    except CorruptState as exc:
        aside = ""
        if exc.movable:
            corrupt = path.with_name(path.name + ".corrupt")
            try:
                os.replace(path, corrupt)
                aside = f", moved aside to {corrupt}"
            except OSError as move:
                aside = f", and could not be moved aside to {corrupt}: {why_not_written(corrupt, move)}"
        log.warning("state file %s %s: ignored%s, starting from the config", path, exc, aside)
        return {}


def why_not_written(path: Path, exc: BaseException) -> str:
    """The real reason `path` could not be written, for one log line: a path component that
    is not a folder, a folder that takes no new files (/proc), a read-only or full disk;
    else the error's own text.  (mkdir on a file says "File exists", mkstemp in /proc "No
    such file or directory": both name the symptom, not the cause.)"""
    folders = [path.parent, *path.parent.parents][::-1]  # from the root down
    deepest = None
    for folder in folders:
        if not os.path.lexists(folder):
            break
        if not folder.is_dir():
            return f"{folder} is not a folder"
        deepest = folder
    code = getattr(exc, "errno", None)
    if code == errno.EROFS:
        return "read-only file system"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the disk"
    if deepest is not None and not os.access(deepest, os.W_OK):
        return f"{deepest} does not take new files (not writable{'' if os.geteuid() else ', even by root'})"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def write(path: Path, state: Mapping[str, Any]) -> None:
    """Write `state` (JSON, sorted keys, one line) atomically: a temp file beside `path`,
    fsynced, then `os.replace`d onto it, then the folder fsynced.  On any failure the temp
    file is removed, `path` is left as it was, and the OSError is raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(state), sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # the rename itself survives a power cut (a no-op where folders cannot be opened)
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def snapshot(engine: Engine) -> dict[str, Any]:
    """The engine's values worth remembering (tempo only on jamd's own clock: a master's is not ours)."""
    out = {"mode": engine.mode, "model": engine.model_name, "temperature": float(engine.temperature),
           "answer_bars": int(engine.response_bars)}
    if engine.cfg.clock.source == "internal":
        out["bpm"] = float(engine.cfg.clock.bpm)
    return out


def _get(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def _describe(name: str, value: Any) -> str:
    if name == "bpm":
        return f"tempo {value:g} BPM"
    if name == "answer_bars":
        return f"answers {value} bars" if value else "answers as long as the phrase"
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


@dataclass
class Restored:
    """What `restore` did: the path, what the file held, and each config key it set."""

    path: Path | None = None  # None: state.save is false
    saved: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # config key -> the saved value now in force
    before: dict[str, Any] = field(default_factory=dict)  # config key -> the config's value it replaced

    def onto(self, cfg: Config) -> Config:
        """A reloaded config (SIGHUP) with the restored values kept where config.yaml still holds
        the value they replaced: only an edited key of the file takes over."""
        keep = {k: v for k, v in self.values.items() if _get(cfg, k) == self.before[k]}
        return cfg.replace(**keep) if keep else cfg

    def saver(self, engine: Engine) -> StateSaver | None:
        """The engine's saver: the file holds `saved`; what the engine plays now (from config.yaml,
        the command line and the file) is the start that only a live change departs from
        (None when state.save is false)."""
        if self.path is None:
            return None
        return StateSaver(self.path, snapshot(engine), self.saved)


def restore(cfg: Config, explicit: set[str], check_model: Callable[[str], object] | None = None,
            environ: Mapping[str, str] | None = None) -> tuple[Config, Restored]:
    """`cfg` with the saved values of keys not in `explicit` (config keys the command line set).

    A saved model not in model.models (or that `check_model`, by default `model_store.resolve`,
    refuses) or a value out of its config range is ignored with one warning naming it; the
    tempo is restored only on jamd's own clock.  One info line says what was restored."""
    if not cfg.state.save:
        return cfg, Restored()
    path = state_path(cfg.state, environ)
    saved = load(path)
    result = Restored(path, saved)
    done = []
    for name, value in saved.items():
        key = FIELDS[name]
        if key in explicit or (name == "bpm" and cfg.clock.source != "internal"):
            continue
        why = _refused(cfg, name, value, check_model)
        if why is None:
            try:
                new = cfg.replace(**{key: value})
            except ConfigError as exc:
                why = str(exc).removeprefix("override: ")
        if why is not None:
            log.warning("state file %s: saved %s %s ignored: %s", path, name, clip(repr(value)), why)
            continue
        if _get(new, key) == _get(cfg, key):
            continue  # config.yaml says the same: nothing to restore or to tell
        result.values[key], result.before[key] = _get(new, key), _get(cfg, key)
        cfg = new
        done.append(_describe(name, _get(cfg, key)))
    if done:
        log.info("restored from %s: %s", path, ", ".join(done))
    return cfg, result


def _refused(cfg: Config, name: str, value: Any, check_model: Callable[[str], object] | None) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if name != "model":
        return None
    if value not in cfg.model.models:
        return f"not in model.models ({', '.join(cfg.model.models)})"
    if check_model is None:
        from ..inference.model_store import resolve as check_model
    try:
        check_model(value)
    except ModelError as exc:
        return str(exc)
    return None


class StateSaver:
    """Writes the keys the performer changed live: `touch(name)` (CC and OSC actions, on the
    engine thread) marks one; `poll` on the engine thread after each round of input writes
    the file when a marked key's value differs from it, at most once every MIN_INTERVAL_S;
    `flush` at a clean exit.

    `start`: the engine's values at start (`snapshot`); `saved`: what the file holds now.  A
    marked key whose value is still its start value is written only when the file already
    holds that key (the performer went back: the file must not bring the old value back).
    A failed write costs one warning line until a write succeeds again; jamd plays on."""

    def __init__(self, path: Path, start: Mapping[str, Any], saved: Mapping[str, Any] | None = None,
                 every_s: float = MIN_INTERVAL_S, now: Callable[[], float] = time.monotonic):
        self.path = path
        self.every_s = every_s
        self.now = now
        self.start = dict(start)
        self.written = dict(saved or {})
        self.touched: set[str] = set()  # names in FIELDS changed live in this run
        self.writes = 0  # successful writes (tests)
        self._pending: dict[str, Any] | None = None
        self._last = -math.inf  # when the last write was tried
        self._failing = False
        self._lock = threading.Lock()  # `flush` from the main thread after a hung engine thread

    def touch(self, *names: str) -> None:
        """The performer changed these (names in FIELDS) live: from now on they are saved."""
        self.touched.update(names)

    def wanted(self, engine: Engine) -> dict[str, Any]:
        """What the file should hold: what it holds, with each live-changed key's value now."""
        out = dict(self.written)
        now = snapshot(engine)
        for name in self.touched:
            if name in now and (name in out or now[name] != self.start.get(name)):
                out[name] = now[name]
        return out

    def poll(self, engine: Engine, force: bool = False) -> None:
        """Note the engine's state; write it if a live change is not in the file yet and a second
        has passed (or `force`)."""
        if not engine.cfg.state.save:
            return
        with self._lock:
            current = self.wanted(engine)
            self._pending = current if current != self.written else None
            if self._pending is not None and (force or self.now() - self._last >= self.every_s):
                self._write(self._pending)

    def flush(self, engine: Engine) -> None:
        """A clean exit: write what is pending now."""
        self.poll(engine, force=True)

    def due_in_s(self) -> float:
        """Seconds until a pending change may be written (inf: none pending)."""
        if self._pending is None:
            return math.inf
        return max(0.0, self._last + self.every_s - self.now())

    def _write(self, state: dict[str, Any]) -> None:
        self._last = self.now()
        try:
            write(self.path, state)
        except Exception as exc:  # a full or read-only disk must never stop the music
            if not self._failing:
                log.warning("state not saved to %s: %s (jamd plays on; retrying once a second)", self.path,
                            why_not_written(self.path, exc))
            self._failing = True
            return
        if self._failing:
            log.info("state saved to %s again", self.path)
        self._failing = False
        self.written, self._pending = state, None
        self.writes += 1
