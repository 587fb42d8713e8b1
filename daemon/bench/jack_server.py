"""A private JACK server: Debian's `jackd` with the dummy driver, under a name of its own.

Shared by the test rig (tests/jack_rig.py) and the JACK benches
(`jamd.bench.realtime`, `jamd.bench.clock`), so they need no sound card and no
ALSA sequencer, and never touch a server the user runs.  `private_jack_server`
starts one from a pool of names, points JACK_DEFAULT_SERVER at it for this
process and its children, and stops it afterwards.  rtmidi is imported here
only, on first use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from ..midi.ports import quiet_stderr

RATE = 48000


class JackServerError(RuntimeError):
    """No private server could be started; the message says why (jackd's own words)."""


class JackUnavailable(JackServerError):
    """JACK cannot be used here at all: jackd missing, or python-rtmidi built without JACK."""


def server_answers() -> bool:
    """Whether the server JACK_DEFAULT_SERVER names answers a client."""
    import rtmidi

    try:
        with quiet_stderr():  # libjack prints a page when no server runs
            probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="jamd-probe")
            probe.get_ports()
            probe.delete()
    except rtmidi.RtMidiError:
        return False
    return True


def name_in_use(name: str) -> bool:
    """Whether a live server holds `name`.

    Starting a second jackd under a live server's name can unlink that
    server's socket on its way out, cutting off every client of the live one
    (seen when two test modules each started "their" session server), so a
    taken name is skipped rather than tried.
    """
    before = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        return server_answers()
    finally:
        _restore_env(before)


def _restore_env(value: str | None) -> None:
    if value is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = value


def _die_with_parent() -> None:
    # If the parent is killed (a pytest timeout, Ctrl-C twice) its clean-up never
    # runs; the kernel then ends jackd for us, so no stale server piles up
    # (JACK refuses new servers once too many are active).
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _started(proc: subprocess.Popen, timeout_s: float = 10.0) -> bool:
    """Wait until the server answers a client (a fixed sleep loses the race on a
    busy machine); False if jackd exited instead or never answered."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        if server_answers():
            # a live server of the same name answers too, while ours is still
            # finding that out and about to exit: give it a moment to do so
            time.sleep(0.3)
            break
        time.sleep(0.05)
    return proc.poll() is None and server_answers()


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def private_jack_server(names: Sequence[str], period: int = 256, rate: int = RATE,
                        die_with_parent: bool = False, stop_timeout_s: float = 10.0) -> Iterator[str]:
    """Run `jackd -n NAME --no-realtime -d dummy -r RATE -p PERIOD` under the first
    free name of `names`; yield that name, with JACK_DEFAULT_SERVER set to it in
    this process (so its children inherit it), and stop the server afterwards.

    `names` is a small fixed pool on purpose: JACK's registry holds 8 servers
    and frees the entry of one that died uncleanly (SIGKILL, a killed test run)
    only when a server of the same name starts again.  Unique names would leak
    a slot per crash until jackd refuses with "Too many servers already
    active"; a pool reclaims them, and a name a live server holds (another run)
    is skipped, or makes jackd exit, and the next is tried.

    `die_with_parent` (Linux): the kernel ends jackd when this process dies, so
    a killed caller leaves no server behind.  Raises `JackUnavailable` when
    jackd or rtmidi's JACK support is missing, `JackServerError` when no name
    gave a running server (with the end of jackd's output).
    """
    jackd = shutil.which("jackd")
    if jackd is None:
        raise JackUnavailable("jackd is not installed (Debian: apt-get install jackd2)")
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        raise JackUnavailable("python-rtmidi was built without JACK")
    old = os.environ.get("JACK_DEFAULT_SERVER")
    preexec = _die_with_parent if die_with_parent and sys.platform.startswith("linux") else None
    # jackd's chatter goes to a file: an unread pipe fills up and blocks the
    # server, and every client with it; on failure its end says why.
    with tempfile.TemporaryFile() as log:
        proc = None
        try:
            for name in names:
                if name_in_use(name):
                    continue
                os.environ["JACK_DEFAULT_SERVER"] = name
                # `jackd -n NAME ` first: tests find the server by that command line
                proc = subprocess.Popen([jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", str(rate),
                                         "-p", str(period)], stdout=log, stderr=log, preexec_fn=preexec)
                if _started(proc):
                    break
                # the name is taken by a live server (jackd exits by itself), or
                # jackd hangs without answering: either way, try the next
                _stop(proc, stop_timeout_s)
                proc = None
            if proc is None:
                log.seek(0)
                raise JackServerError(f"jackd did not start under any of {', '.join(names)} (in use, or it "
                                      f"failed): {log.read().decode(errors='replace')[-500:]}")
            yield name
        finally:
            if proc is not None:
                _stop(proc, stop_timeout_s)
            _restore_env(old)
