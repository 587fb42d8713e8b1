"""systemd's service notification protocol (sd_notify): READY, STATUS, STOPPING and the watchdog.

Under a `Type=notify` unit systemd passes `NOTIFY_SOCKET`, the address of a
datagram socket; a service tells it how it is doing with one datagram of
newline-separated `KEY=value` lines.  `jamd run` sends READY=1 once its ports
are open and its model loaded, STATUS= lines on the way, STOPPING=1 as it
stops, and, under `WatchdogSec=`, WATCHDOG=1 from the engine thread
(`live.loop`), so that a hung engine stops the pings and systemd restarts jamd.
Outside systemd (no `NOTIFY_SOCKET`) every call returns at once.

Why its own few lines rather than the `sdnotify` package: sdnotify (0.3.2)
reads neither `WATCHDOG_USEC` nor `WATCHDOG_PID` and hides every error in a
bare `except`; what is left (one socket, one `sendto`) is shorter than a
dependency.  Why here, in `sync/` (layer 3): the watchdog is a deadline kept by
jamd's time-critical threads, beside the clock and the sender; the engine loop
(`live`, layer 4) and `commands.run` (5) call it, so it must sit below both,
and a subpackage of its own for one module would add more map than matter.

The rules followed are systemd's (sd_notify(3), sd_watchdog_enabled(3)):
an address starting with '/' is a path, one starting with '@' an abstract
socket name (the '@' becomes a NUL byte); the watchdog is on when
`WATCHDOG_USEC` is a positive integer (microseconds) and `WATCHDOG_PID`, when
set, is this process's id; a service pings every half of that timeout.  Like
sd_notify's `unset_environment`, the three variables are removed from the
environment once read, so a child process (a JACK server that libjack starts)
does not speak for jamd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

ENV_SOCKET, ENV_USEC, ENV_PID = "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"


def socket_address(value: str | None) -> str | bytes | None:
    """The `sendto` address for a `NOTIFY_SOCKET` value: a path ('/...') as is, an abstract
    name ('@name') as b'\\0name'; None when unset, empty or of a kind jamd does not speak
    (systemd's 'vsock:' addresses, used only inside virtual machines)."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def watchdog_usec(environ: MutableMapping[str, str], pid: int) -> int | None:
    """The watchdog timeout in microseconds that systemd set for process `pid`, or None
    (sd_watchdog_enabled's rules: `WATCHDOG_USEC` a positive integer, `WATCHDOG_PID`
    unset or equal to `pid`).  A malformed value logs one warning and counts as unset."""
    usec, for_pid = environ.get(ENV_USEC), environ.get(ENV_PID)
    if not usec:
        return None
    try:
        timeout = int(usec)
        if timeout <= 0:
            raise ValueError
    except ValueError:
        log.warning("%s=%r is not a positive number of microseconds; no watchdog pings", ENV_USEC, usec)
        return None
    if for_pid:
        try:
            if int(for_pid) != pid:
                return None  # meant for another process (jamd's parent, say)
        except ValueError:
            log.warning("%s=%r is not a process id; no watchdog pings", ENV_PID, for_pid)
            return None
    return timeout


class Notifier:
    """Sends sd_notify datagrams; a no-op without an address.

    `Notifier.from_environ()` is the one systemd gives this process.  `send` never
    raises and never blocks: a full or missing socket costs a warning (once) and
    the message, never the daemon.
    """

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None):
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False
        if address is not None and hasattr(socket, "AF_UNIX"):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)  # the engine thread pings: never wait on systemd
        self.watchdog = Watchdog(self, watchdog_usec) if self._sock is not None and watchdog_usec else None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                     unset: bool = True) -> Notifier:
        """The notifier `environ` (default: os.environ) describes for process `pid` (default:
        this one); `unset` removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from it."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_SOCKET)
        address = socket_address(raw)
        if raw and address is None:
            log.warning("%s=%r is not a socket path or @name jamd can use; systemd is not told "
                        "when jamd is ready", ENV_SOCKET, raw)
        usec = watchdog_usec(env, os.getpid() if pid is None else pid)
        if unset:
            for key in (ENV_SOCKET, ENV_USEC, ENV_PID):
                env.pop(key, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        """Send `lines` ('READY=1', 'STATUS=...') as one datagram; True if it went."""
        sock = self._sock  # one read: `close` may run on another thread
        if sock is None:
            return False
        try:
            sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            # Once: a listener gone or a full queue repeats at every ping.
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(level, "could not tell systemd %r: %s", lines[0], exc)
            self._warned = True
            return False
        return True

    def status(self, text: str) -> bool:
        """STATUS=: one line of what jamd is doing, shown by `systemctl status`."""
        return self.send("STATUS=" + " ".join(text.split()))

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (ports open, model loaded), with a STATUS= line when given."""
        return self.send("READY=1", *(["STATUS=" + " ".join(status.split())] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.watchdog = None


class Watchdog:
    """WATCHDOG=1 every half of systemd's timeout, from whichever thread calls `ping`.

    The caller's loop calls `ping()` on each pass and waits no longer than
    `due_in_s()`: a loop that stops passing stops the pings, which is the point.
    """

    def __init__(self, notifier: Notifier, timeout_usec: int):
        self.notifier = notifier
        self.timeout_s = timeout_usec / 1e6
        self.interval_s = self.timeout_s / 2  # systemd's advice: ping every half of the timeout
        self._next = -float("inf")

    def due_in_s(self) -> float:
        """Seconds until the next ping is due (0 when it is due now)."""
        return max(0.0, self._next - time.monotonic())

    def ping(self) -> bool:
        """Send WATCHDOG=1 if it is due; True if one was sent."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return self.notifier.send("WATCHDOG=1")
