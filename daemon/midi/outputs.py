"""The thin output interface the sender talks to, and an in-memory twin.

An output only needs `send(message)`, `panic(channels)` and `close()`; the
scheduler owns which notes are sounding and sends their note-offs itself, so
`panic` here only adds the channel-wide All Notes Off (CC 123).
`MemoryOutput` records every message with the time it was sent, so unit tests
compare exact event lists without any MIDI system.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

CC = 0xB0
NOTE_ON = 0x90
NOTE_OFF = 0x80
ALL_NOTES_OFF = 123


def all_notes_off(channel: int) -> list[int]:
    """CC 123 on a 1-based channel."""
    return [CC | (channel - 1), ALL_NOTES_OFF, 0]


class Output(Protocol):
    def send(self, message: Sequence[int]) -> None: ...
    def panic(self, channels: Iterable[int]) -> None: ...
    def close(self) -> None: ...


class MemoryOutput:
    """Records `(t_ns, message)` for every message; thread-safe."""

    def __init__(self, now_ns: Callable[[], int] = time.perf_counter_ns):
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self.sent: list[tuple[int, tuple[int, ...]]] = []
        self.closed = False

    def send(self, message: Sequence[int]) -> None:
        if self.closed:
            raise RuntimeError("send on a closed output")
        with self._lock:
            self.sent.append((self._now_ns(), tuple(message)))

    def panic(self, channels: Iterable[int]) -> None:
        for ch in channels:
            self.send(all_notes_off(ch))

    def close(self) -> None:
        self.closed = True

    @property
    def messages(self) -> list[tuple[int, ...]]:
        with self._lock:
            return [m for _, m in self.sent]


class RtMidiOutput:
    """A python-rtmidi `MidiOut` behind the output interface."""

    def __init__(self, midiout, description: str):
        self._out = midiout
        self.description = description

    def send(self, message: Sequence[int]) -> None:
        self._out.send_message(message)

    def panic(self, channels: Iterable[int]) -> None:
        for ch in channels:
            self._out.send_message(all_notes_off(ch))

    def close(self) -> None:
        try:
            self._out.close_port()
        finally:
            del self._out


class SentLog:
    """What jamd's outputs really sent: a text file with a line per message,
    `t_ns b0 b1 ...` (perf_counter_ns as the send began, bytes in hex).

    `jamd run` keeps one when JAMD_SENT_LOG names a file; the JACK test rig sets
    it beside its recorder, so a message the rig's server lost is told apart from
    one jamd never sent.  Buffered; complete once `close()` has run.
    """

    def __init__(self, path: str):
        self._file = open(path, "w", encoding="ascii", buffering=1 << 16)  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def write(self, message: Sequence[int], t: int) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(f"{t} {' '.join(f'{b:02x}' for b in message)}\n")

    def wrap(self, output: Output) -> Output:
        """`output`, each message it sends logged.  A followed device's output
        (`hotplug.FollowedOutput`) logs only what reaches its port, not what it drops."""
        wrap_sink = getattr(output, "wrap_sink", None)
        if wrap_sink is not None:
            wrap_sink(lambda inner: _LoggedOutput(inner, self))
            return output
        return _LoggedOutput(output, self)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _LoggedOutput:
    def __init__(self, inner: Output, sent: SentLog):
        self._inner, self._sent = inner, sent

    def send(self, message: Sequence[int]) -> None:
        t = time.perf_counter_ns()  # before: a busy machine may preempt the thread after the send
        self._inner.send(message)
        self._sent.write(message, t)

    def panic(self, channels: Iterable[int]) -> None:
        for ch in channels:  # what every output's panic sends, logged through `send`
            self.send(all_notes_off(ch))

    def close(self) -> None:
        self._inner.close()
