"""MIDI devices that come and go: `midi.connect_output` / `midi.connect_input` followed while jamd runs.

On a headless box a USB keyboard or synth is plugged in after `jamd run`
started, or pulled out by accident and plugged back.  `jamd run` then waits
for a port matching the pattern (one log line), plays on meanwhile on its own
clock, connects when the port appears and reconnects when it comes back.

* `DeviceWatcher`: one thread that looks at the port lists every `POLL_S` and
  only enqueues `("device", devices, side, name_or_None)` when the port that
  matches a pattern appears, goes or changes.  It acts on nothing.
* The engine thread hands that item to `Devices.apply`, which opens or drops
  the connection and logs the change in one line (`ChangeLog`: rate-limited).
* `FollowedOutput` drops what is sent while its device is gone, so nothing
  queued meanwhile reaches a synth later; when it connects again it first
  sends a note-off for every note it delivered whose note-off it dropped,
  then All Notes Off and All Sound Off (CC 123, CC 120) on jamd's channels,
  all under the lock that every send takes, so nothing the sender thread sends
  can come between the reconnect and them.
* `FollowedInput` reconnects and arms its callback again (python-rtmidi's
  `close_port` cancels it).

The port lists come from the rtmidi objects jamd already has, under each
one's lock: on the ALSA sequencer one handle must not be used from two
threads at once, and on JACK a lister of its own would be one more client.
A device unplugged and plugged back within one poll, under the same name, is
not seen (USB enumeration alone takes longer).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from .outputs import ALL_NOTES_OFF, CC, NOTE_OFF, NOTE_ON, Output, RtMidiOutput

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the watcher lists the ports: a replug is followed within ~0.5 s
# After connecting, the output sends nothing for this long: a JACK server takes a new
# connection into its graph at the start of a later cycle, and what a client writes
# before that goes nowhere (on the rig's loaded non-realtime server a whole burst of
# All Notes Off sent at once was lost in 2 runs of 10).  Several periods at 1024 frames.
SETTLE_S = 0.2
ALL_SOUND_OFF = 120
GLOB_CHARS = frozenset("*?[")
# The change log's token bucket, per followed port: a normal unplug and replug after a
# start that waited (waiting, connected, lost, reconnected) fits BURST; a flapping device
# then costs a line every REFILL_S at most, each counting the changes it did not log.
BURST, REFILL_S = 6, 5.0


def matches(pattern: str, name: str) -> bool:
    """Whether port `name` matches `pattern`, case-insensitively.

    A pattern with a glob character (`*`, `?`, `[`) is a glob on the whole
    name (`synth*:in*`); any other is a part of the name (`keystation`).
    """
    p, n = pattern.casefold(), name.casefold()
    if GLOB_CHARS & set(p):
        return fnmatch.fnmatchcase(n, p)
    return p in n


def first_match(names: Sequence[str], pattern: str) -> str | None:
    """The first port in `names` that `pattern` matches (`matches`), or None."""
    return next((n for n in names if matches(pattern, n)), None)


class ChangeLog:
    """Lines about followed ports, rate-limited per port (a token bucket of
    `burst` lines refilled one every `refill_s` seconds) and thread-safe.

    A line refused is counted; the next one let through says how many went
    unlogged, and `owed(key)` tells the watcher when a token is back for a
    port whose last change went unlogged, so the log never ends on a stale state.
    """

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S,
                 now: Callable[[], float] = time.monotonic):
        self.burst, self.refill_s, self._now = burst, refill_s, now
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._skipped: dict[str, int] = {}

    def _level(self, key: str) -> float:
        tokens, then = self._tokens.get(key, (float(self.burst), self._now()))
        now = self._now()
        level = min(float(self.burst), tokens + (now - then) / self.refill_s)
        self._tokens[key] = (level, now)
        return level

    def line(self, key: str, text: str) -> str | None:
        """`text` (with the count of changes not logged since), or None when rate-limited."""
        with self._lock:
            level = self._level(key)
            if level < 1.0:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return None
            self._tokens[key] = (level - 1.0, self._tokens[key][1])
            skipped = self._skipped.pop(key, 0)
        return text + (f" ({skipped} earlier change(s) not logged: the device flaps)" if skipped else "")

    def owed(self, key: str) -> bool:
        """Whether changes of `key` went unlogged and a line may be logged now."""
        with self._lock:
            return self._skipped.get(key, 0) > 0 and self._level(key) >= 1.0


class FollowedOutput:
    """The `Output` on a followed device: sends while connected, drops while not.

    `send` runs on the sender thread; `connect`, `lose` and `list_ports` on the
    engine and watcher threads; one lock orders them all.
    """

    def __init__(self, midiout, pattern: str, port_name: str, settle_s: float = SETTLE_S):
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
        elif kind == CC and len(m) > 1 and m[1] in (ALL_NOTES_OFF, ALL_SOUND_OFF):
            self._sounding = {s for s in self._sounding if s[0] != ch}

    def panic(self, channels: Iterable[int]) -> None:
        for ch in channels:
            self.send([CC | (ch - 1), ALL_NOTES_OFF, 0])

    def list_ports(self) -> list[str]:
        """The ports this output could connect to (rtmidi's destinations)."""
        with self._lock:
            return list(self._out.get_ports())

    def connect(self, name: str, channels: Iterable[int] = (), silence: bool = True) -> bool:
        """Connect jamd's port to `name`; False if no such port is listed now.

        `silence`: then, before anything else, a note-off for every note whose
        note-off was dropped and CC 123 and CC 120 on each of `channels` (1-16).
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
                for ch, pitch in sorted(self._sounding):
                    self._sink.send((NOTE_OFF | ch, pitch, 0))
                for ch in sorted(set(channels)):
                    for number in (ALL_NOTES_OFF, ALL_SOUND_OFF):
                        self._sink.send((CC | (ch - 1), number, 0))
                self._sounding.clear()
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
                self._in.close_port()
            self._in.open_port(names.index(name), self.port_name)
            self.connected, self.ever_connected = name, True
            if self.on_open is not None:
                self.on_open()
            return True

    def lose(self) -> None:
        with self._lock:
            self.connected = None


KEYS = {"output": "midi.connect_output", "input": "midi.connect_input"}


class Devices:
    """The followed ports of one `jamd run` ("output", "input"), their watcher and their log."""

    def __init__(self, where: str, output: FollowedOutput | None = None, inp: FollowedInput | None = None,
                 changes: ChangeLog | None = None):
        """`where`: the MIDI system's name for the log lines ("JACK")."""
        self.where = where
        self.sides: dict[str, FollowedOutput | FollowedInput] = {
            side: port for side, port in (("output", output), ("input", inp)) if port is not None}
        self.changes = changes or ChangeLog()
        self.watcher: DeviceWatcher | None = None

    def _log(self, side: str, text: str, level: int = logging.INFO) -> None:
        line = self.changes.line(side, f"{KEYS[side]}: {text}")
        if line is not None:
            log.log(level, "%s", line)

    def open(self, side: str) -> str | None:
        """At start: connect `side` to its matching port if there is one (no silencing: the
        session silences the output first thing), else log that jamd waits for it."""
        port = self.sides[side]
        name = first_match(port.list_ports(), port.pattern)
        if name is not None and port.connect(name, silence=False):
            self._log(side, f"connected to {name!r}")
            return name
        self._log(side, f"waiting for a port matching {port.pattern!r} on {self.where}; "
                        "jamd plays on and connects when it appears")
        return None

    def apply(self, side: str, name: str | None, channels: Iterable[int] = ()) -> str | None:
        """On the engine thread: the watcher saw the port matching `side`'s pattern become
        `name` (None: gone).  Connects or forgets it and logs one line; returns the change,
        "connected", "reconnected" or "lost", or None when nothing changed."""
        port = self.sides[side]
        if name is None:
            if port.connected is None:
                return None
            gone = port.connected
            port.lose()
            self._log(side, f"lost {gone!r}; waiting for it to come back", logging.WARNING)
            return "lost"
        if name == port.connected:
            return None
        again = port.ever_connected
        try:
            ok = port.connect(name, channels)
        except Exception as exc:  # rtmidi refused: try again at the next poll
            ok = False
            self._log(side, f"cannot connect to {name!r}: {exc}", logging.WARNING)
        if not ok:
            if self.watcher is not None:
                self.watcher.forget(side)
            return None
        if again:
            self._log(side, f"reconnected to {name!r}" + (", all notes off" if side == "output" else ""))
            return "reconnected"
        self._log(side, f"connected to {name!r}")
        return "connected"

    def report_owed(self) -> None:
        """Log the state of a port whose last changes the rate limit held back (watcher thread)."""
        for side, port in self.sides.items():
            if self.changes.owed(side):
                self._log(side, f"connected to {port.connected!r}" if port.connected is not None
                          else f"waiting for a port matching {port.pattern!r}")

    def start(self, enqueue: Callable[[tuple], None], poll_s: float = POLL_S) -> None:
        """Start watching: `enqueue` (the engine's inbox) gets ("device", self, side, name)."""
        if self.sides and self.watcher is None:
            self.watcher = DeviceWatcher(self, enqueue, poll_s)
            self.watcher.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


class DeviceWatcher:
    """Lists the ports every `poll_s` and enqueues each change of a followed port's match."""

    def __init__(self, devices: Devices, enqueue: Callable[[tuple], None], poll_s: float = POLL_S):
        self.devices = devices
        self._enqueue = enqueue
        self.poll_s = poll_s
        self._seen: dict[str, str | None] = {side: p.connected for side, p in devices.sides.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jamd-devices", daemon=True)

    def poll(self) -> list[tuple]:
        """One look at the ports; the items enqueued (also returned, for tests)."""
        items = []
        for side, port in self.devices.sides.items():
            try:
                names = port.list_ports()
            except Exception as exc:  # the MIDI system hiccuped: look again next time
                log.debug("listing %s ports failed: %s", side, exc)
                continue
            seen = self._seen.get(side)
            if seen is not None and seen in names:
                continue
            now = first_match(names, port.pattern)
            if now != seen:
                self._seen[side] = now
                items.append(("device", self.devices, side, now))
        for item in items:
            self._enqueue(item)
        return items

    def forget(self, side: str) -> None:
        """The engine could not connect: report the port again at the next poll."""
        self._seen[side] = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()
            self.devices.report_owed()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
