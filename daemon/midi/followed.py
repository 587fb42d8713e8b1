"""The ports `jamd run` follows (`hotplug`): a synth's output that drops what is sent while
the device is gone and ends every note it may hold when it is back; a keyboard's input
that arms its callback again after a reconnect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from .closing import close_input_port
from .outputs import ALL_NOTES_OFF, CC, NOTE_OFF, NOTE_ON, Output, RtMidiOutput

# After connecting, the output sends nothing for this long: a JACK server takes a new
# connection into its graph at the start of a later cycle, and what a client writes
# before that goes nowhere (on the rig's loaded non-realtime server a whole burst of
# All Notes Off sent at once was lost in 2 runs of 10).  Several periods at 1024 frames.
SETTLE_S = 0.2
ALL_SOUND_OFF = 120


class FollowedOutput:
    """The `Output` on a followed device: sends while connected, drops while not.

    `send` runs on the sender thread; `connect`, `lose` and `list_ports` on the
    engine and watcher threads; one lock orders them all.
    """

    def __init__(self, midiout, pattern: str, port_name: str, settle_s: float = SETTLE_S):
        """`pattern`: `midi.connect_output`; `port_name`: jamd's own port (`midi.output_port`)."""
        self._out = midiout
        self.pattern = pattern
        self.port_name = port_name  # jamd's own port, as patchbays show it
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._sink: Output = RtMidiOutput(midiout, port_name)
        self.connected: str | None = None
        self.ever_connected = False
        self.dropped = 0  # messages sent while the device was gone
        self._sounding: set[tuple[int, int]] = set()  # (channel 0-15, pitch) delivered and not ended
        # (channel, pitch) whose end (note-off, CC 123/120) was sent but not confirmed: the
        # device was not seen since.  Unplugged, a port still takes what is sent until the
        # watcher notices (up to POLL_S), and that goes nowhere: the synth may hold the note.
        # Each stamped with the mark (`mark`) current when sent.
        self._unconfirmed: dict[tuple[int, int], int] = {}
        self._mark = 0

    @property
    def description(self) -> str:
        return self.connected or f"(waiting for {self.pattern!r})"

    def wrap_sink(self, wrap: Callable[[Output], Output]) -> None:
        """Put `wrap` around what really reaches the port (`SentLog`: not what was dropped)."""
        with self._lock:
            self._sink = wrap(self._sink)

    def send(self, message: Sequence[int]) -> None:
        with self._lock:
            if self.connected is None:
                self.dropped += 1
                return
            self._sink.send(message)
            self._track(message)

    def _track(self, m: Sequence[int]) -> None:
        kind, ch = m[0] & 0xF0, m[0] & 0x0F
        if kind == NOTE_ON and len(m) > 2 and m[2] > 0:
            self._sounding.add((ch, m[1]))
        elif kind in (NOTE_ON, NOTE_OFF) and len(m) > 1:
            self._sounding.discard((ch, m[1]))
            self._unconfirmed[(ch, m[1])] = self._mark
        elif kind == CC and len(m) > 1 and m[1] in (ALL_NOTES_OFF, ALL_SOUND_OFF):
            self._unconfirmed.update((s, self._mark) for s in self._sounding if s[0] == ch)
            self._sounding = {s for s in self._sounding if s[0] != ch}

    def possibly_hanging(self) -> list[tuple[int, int]]:
        """(channel 0-15, pitch) the device may still sound: delivered and not ended, or
        ended since the device was last seen (`list_ports`), sorted."""
        with self._lock:
            return sorted(self._sounding | self._unconfirmed.keys())

    def mark(self) -> int:
        """A mark between what was sent so far and what comes next, for `confirm`."""
        with self._lock:
            self._mark += 1
            return self._mark

    def confirm(self, mark: int) -> None:
        """The device was there after `mark` was taken: every note end sent before it
        reached it (JACK: no port went in the poll period since, `DeviceWatcher`)."""
        with self._lock:
            self._unconfirmed = {note: m for note, m in self._unconfirmed.items() if m >= mark}

    def panic(self, channels: Iterable[int]) -> None:
        for ch in channels:
            self.send([CC | (ch - 1), ALL_NOTES_OFF, 0])

    def list_ports(self) -> list[str]:
        """The ports this output could connect to (rtmidi's destinations).  The connected
        device listed confirms every note end sent before: it reached a port still there."""
        with self._lock:
            names = list(self._out.get_ports())
            if self.connected is not None and self.connected in names:
                self._unconfirmed.clear()
            return names

    def connect(self, name: str, channels: Iterable[int] = (), silence: bool = True) -> bool:
        """Connect jamd's port to `name`; False if no such port is listed now.

        `silence`: then, before anything else, a note-off for every note the
        device may still hold (`possibly_hanging`: its note-off dropped, or sent
        after the device was last seen) and CC 123 and CC 120 on each of
        `channels` (1-16).
        Blocks the calling thread `settle_s` (SETTLE_S) while the connection
        settles; what is sent meanwhile is dropped.  Raises rtmidi's error when
        the MIDI system refuses.
        """
        with self._lock:
            names = list(self._out.get_ports())
            if name not in names:
                return False
            self.connected = None
            if self._out.is_port_open():
                self._out.close_port()
            self._out.open_port(names.index(name), self.port_name)
        time.sleep(self.settle_s)  # the lock free: the sender drops meanwhile, never waits
        with self._lock:
            self.connected, self.ever_connected = name, True
            if silence:
                for ch, pitch in sorted(self._sounding | self._unconfirmed.keys()):
                    self._sink.send((NOTE_OFF | ch, pitch, 0))
                for ch in sorted(set(channels)):
                    for number in (ALL_NOTES_OFF, ALL_SOUND_OFF):
                        self._sink.send((CC | (ch - 1), number, 0))
            # sent to a port listed just now, before the sender could send anything
            self._sounding.clear()
            self._unconfirmed.clear()
            return True

    def lose(self) -> None:
        """The device went: drop what is sent until it is back.  The notes it may still
        hold (a JACK bridge restarted, the synth still on) get their note-offs then."""
        with self._lock:
            self.connected = None

    def close(self) -> None:
        with self._lock:
            self.connected = None
            try:
                self._out.close_port()
            finally:
                self._out.delete()


class FollowedInput:
    """jamd's input on a followed device.  `on_open` arms the callback again after a reconnect."""

    def __init__(self, midiin, pattern: str, port_name: str):
        self._in = midiin
        self.pattern = pattern
        self.port_name = port_name
        self._lock = threading.Lock()
        self.connected: str | None = None
        self.ever_connected = False
        self.on_open: Callable[[], None] | None = None

    @property
    def description(self) -> str:
        return self.connected or f"(waiting for {self.pattern!r})"

    def list_ports(self) -> list[str]:
        """The ports this input could connect to (rtmidi's sources)."""
        with self._lock:
            return list(self._in.get_ports())

    def connect(self, name: str, channels: Iterable[int] = (), silence: bool = True) -> bool:
        """Connect jamd's input to `name`; False if no such port is listed now (`channels`
        and `silence` are the output's; an input has nothing to silence)."""
        with self._lock:
            names = list(self._in.get_ports())
            if name not in names:
                return False
            self.connected = None
            if self._in.is_port_open():
                close_input_port(self._in)  # its callbacks drained first (jamd.midi.closing)
            self._in.open_port(names.index(name), self.port_name)
            self.connected, self.ever_connected = name, True
            if self.on_open is not None:
                self.on_open()
            return True

    def lose(self) -> None:
        with self._lock:
            self.connected = None
