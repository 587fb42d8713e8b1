"""Process plumbing of `jamd run`: waiting for signals on the main thread, and leaving cleanly.

Kept apart from `run` so that module stays about what `jamd run` does, not how a POSIX process
waits and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("jamd.commands.run")

SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")


class Waiter:
    """Waits for the next signal; sigwait on POSIX, handlers + Event elsewhere."""

    def __init__(self) -> None:
        self.signals = {getattr(signal, n) for n in SIGNALS if hasattr(signal, n)}
        self.posix = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")
        self._event = threading.Event()
        self._pending: list[int] = []
        if self.posix:
            signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        else:
            for s in self.signals:
                signal.signal(s, self._handler)

    def _handler(self, signum, _frame) -> None:
        self._pending.append(signum)
        self._event.set()

    def wake_from_thread(self) -> None:
        if self.posix:
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            self._pending.append(-1)
            self._event.set()

    def wait(self, timeout: float | None) -> int | None:
        if self.posix:
            if timeout is None:
                return signal.sigwait(self.signals)
            info = signal.sigtimedwait(self.signals, timeout)
            return info.si_signo if info else None
        self._event.wait(timeout)
        self._event.clear()
        return self._pending.pop(0) if self._pending else None

    def restore(self) -> None:
        if self.posix:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self.signals)


def exit_if_threads_linger(code: int, wait_s: float = 2.0) -> None:
    """Exit now, skipping interpreter teardown, if a jamd thread is still alive.

    Teardown ends daemon threads that want the GIL back with pthread_exit, a
    forced unwind; a thread then inside C++ (ONNX Runtime returning from a
    bar's inference, RtMidi) unwinds through a noexcept frame and the C++
    runtime aborts the process: "terminate called without an active
    exception", exit 134 (seen with `--clock follow` on a loaded machine when
    the engine thread was still generating).  Every port is closed and every
    note ended by now, so nothing is lost by leaving at once.
    """
    deadline = time.monotonic() + wait_s
    for t in threading.enumerate():
        if t.name.startswith("jamd-") and t.is_alive():
            t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threading.enumerate() if t.name.startswith("jamd-") and t.is_alive()]
    if alive:
        log.warning("thread(s) %s still busy at exit; leaving without interpreter teardown", ", ".join(alive))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
