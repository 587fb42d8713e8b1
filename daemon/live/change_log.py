"""Coalesced log lines for live controls: a fader sweep is one line a second, not fifty.

A knob or an OSC fader sends tens of values a second; each used to cost an INFO line
(a 4 s sweep of two faders: 401 lines).  `ChangeLog.note` logs a control's first change
at once; later changes within `every_s` of its last line only replace the pending text,
and one line at the end of that second says the latest value and how many changes it
covers.  So the final value of a sweep is always logged, at most `every_s` after it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

Later = Callable[[float, Callable[[], None]], None]


def timer(delay_s: float, fn: Callable[[], None]) -> None:
    """`fn` after `delay_s` seconds on a daemon timer thread (`jamd run`'s `ChangeLog.later`)."""
    # not a "jamd-" thread: `jamd run` waits for those at exit, and a log line is not worth it
    t = threading.Timer(delay_s, fn)
    t.name, t.daemon = "control-log", True
    t.start()


class ChangeLog:
    """At most one line per control per `every_s` seconds (default 1), the latest value last.

    `logger`: where the lines go (INFO); `now`: seconds (monotonic); `later(delay_s, fn)`:
    runs `fn` after `delay_s` seconds, for the pending line (`timer`, as `jamd run` has it);
    None: a pending line goes out with the next change of any control, or `flush_all`.
    Thread-safe: `note` runs on the engine thread, the pending line's flush on the timer's."""

    def __init__(self, logger: logging.Logger, every_s: float = 1.0, now: Callable[[], float] = time.monotonic,
                 later: Later | None = None):
        self.logger = logger
        self.every_s = every_s
        self.now = now
        self.later = later
        self._last: dict[str, float] = {}  # control -> when its last line went out
        self._pending: dict[str, tuple[str, int]] = {}  # control -> (latest text, changes it covers)
        self._lock = threading.Lock()

    def note(self, control: str, text: str) -> None:
        """`control` changed; `text` says to what (e.g. "temperature 1.40")."""
        with self._lock:
            t = self.now()
            for other in [c for c in self._pending if c != control and t - self._last[c] >= self.every_s]:
                self._flush(other)  # without a timer, or a timer that is late
            last = self._last.get(control, -math.inf)
            entry = self._pending.get(control)
            if entry is None and t - last >= self.every_s:
                self._last[control] = t
                self.logger.info("%s", text)
                return
            if entry is not None and t - last >= self.every_s:
                self._flush(control)
                entry, last = None, t
            if entry is None and self.later is not None:
                self.later(max(0.0, last + self.every_s - t), lambda: self.flush(control))
            self._pending[control] = (text, (entry[1] if entry else 0) + 1)

    def flush(self, control: str) -> None:
        """Log `control`'s pending line now, if any (the timer calls this)."""
        with self._lock:
            self._flush(control)

    def _flush(self, control: str) -> None:
        entry = self._pending.pop(control, None)
        if entry is None:
            return
        self._last[control] = self.now()
        text, count = entry
        self.logger.info("%s", text if count == 1 else f"{text} (the latest of {count} changes)")

    def flush_all(self) -> None:
        """Log every pending line now (at the end of a run)."""
        for control in list(self._pending):
            self.flush(control)
