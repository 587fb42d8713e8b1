"""The engine's thread: wait for input or the next deadline, handle, tick.

`Engine` (in `engine`) says what to do; this base class says when.  The
thread never sleeps on time itself: it waits on the input queue with a
timeout that is the next thing it has to do (`_wait_s`).  Only the sender
thread keeps time.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable

from ..midi.realtime import ask_realtime
from ..sync.notify import Watchdog

log = logging.getLogger("jamd.live.engine")

# Woken by input, the engine lets this long's worth of it gather before handling
# it.  Every message is timestamped in the input callback, so this costs a
# phrase nothing, and a control CC this little; but a flood (10,000 messages/s,
# issue 4 section 8) then wakes the engine a few hundred times a second instead
# of once per message, and the input callback, which runs in the MIDI system's
# own thread (JACK's process cycle), no longer waits for the GIL behind the
# engine for every message.  Measured (`jamd bench --suite realtime --flood`):
# without this the flood delayed the output's arrival by up to tens of ms although
# the sender sent every event on time; with it, within a JACK period of no input.
INPUT_BATCH_S = 0.002


class Throttle:
    """True at most once every `every_s` seconds: a fault that repeats at input rate
    (a flood of bad messages, a machine that cannot keep up) logs a line a second."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self._last = -float("inf")
        self.suppressed = 0  # calls that were not let through since the last one that was

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.suppressed += 1
            return False
        self._last, self.suppressed = now, 0
        return True


class EngineLoop:
    """The thread and its inbox.  Subclasses give `handle(item)`, `tick()`, `_wait_s()`
    and `realtime_priority`; input arrives by `midi_in`, reloads by `reload`."""

    realtime_priority = 0

    def __init__(self, now_ns: Callable[[], int]):
        self.now_ns = now_ns
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self.warm_up: Callable[[], None] | None = None  # run first on the engine thread
        # systemd's watchdog (WatchdogSec=), pinged from this thread's loop and nowhere
        # else: an engine that hangs stops the pings, and systemd restarts jamd
        self.watchdog: Watchdog | None = None
        self._thread: threading.Thread | None = None
        self._stop = False

    def handle(self, item: tuple) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        raise NotImplementedError

    def _wait_s(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="jamd-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def midi_in(self, message: list[int], t_ns: int | None = None) -> None:
        """The input callback's whole job: timestamp and enqueue."""
        self.inbox.put((self.now_ns() if t_ns is None else t_ns, message))

    def reload(self, cfg: object) -> None:
        """A reloaded config, applied on the engine thread (`handle(("config", cfg))`)."""
        self.inbox.put(("config", cfg))

    def _run(self) -> None:
        try:
            ask_realtime(self.realtime_priority, "engine")
            watchdog = self.watchdog
            if watchdog is not None:
                watchdog.ping()  # before the warm-up, whose import can take seconds on a small board
            if self.warm_up is not None:
                # Here, not in a thread of its own: a normal-priority thread
                # holding the GIL through a long import, preempted on a busy
                # machine, would keep the real-time sender waiting for the GIL.
                self.warm_up()
                # All that is loaded by now (music21, ONNX Runtime, numpy) lives as long
                # as the daemon: keep it out of the cyclic collector's full passes, which
                # hold the GIL (and so the sender) for tens of ms over a heap this size
                # and which a flood of input, allocating as it goes, triggers more often.
                gc.freeze()
            while not self._stop:
                wait_s = self._wait_s()
                if watchdog is not None:
                    watchdog.ping()
                    wait_s = min(wait_s, watchdog.due_in_s())
                try:
                    item = self.inbox.get(timeout=wait_s)
                except queue.Empty:
                    item = ()
                if item:  # input: let the rest of a burst arrive first (see INPUT_BATCH_S)
                    time.sleep(INPUT_BATCH_S)
                while True:
                    if item is None:
                        return
                    if item:
                        self.handle(item)
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                self.tick()
        except BaseException as exc:  # any failure must reach the main thread, which silences the port
            self.error = exc
            log.error("engine thread failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if self.on_error is not None:
                self.on_error(exc)

    def run_once(self) -> None:
        """Handle everything queued and tick once, on this thread (tests)."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item:
                self.handle(item)
        self.tick()
