"""MIDI devices that come and go: `midi.connect_output` / `midi.connect_input` followed while jamd runs.

On a headless box a USB keyboard or synth is plugged in after `jamd run`
started, or pulled out by accident and plugged back.  `jamd run` then waits
for a port matching the pattern (one log line), plays on meanwhile on its own
clock, connects when the port appears and reconnects when it comes back.

* `DeviceWatcher`: one thread that looks at the port lists every `POLL_S` (on
  JACK: only when the server says a port came or went, `jack_watch`) and
  only enqueues `("device", devices, side, name_or_None)` when the port that
  matches a pattern appears, goes or changes.  It acts on nothing.
* The engine thread hands that item to `Devices.apply`, which opens or drops
  the connection and logs the change in one line (`ChangeLog`: rate-limited).
* `FollowedOutput` (`followed`) drops what is sent while its device is gone, so nothing
  queued meanwhile reaches a synth later; when it connects again it first
  sends a note-off for every note it may still hold ("possibly hanging": its
  note-off dropped, or sent after the watcher last saw the device, since a port
  unplugged takes what is sent until the next poll notices), then All Notes
  Off and All Sound Off (CC 123, CC 120) on jamd's channels,
  all under the lock that every send takes, so nothing the sender thread sends
  can come between the reconnect and them.
* `FollowedInput` reconnects and arms its callback again (python-rtmidi's
  `close_port` cancels it).

The port lists come from the rtmidi objects jamd already has, under each
one's lock: on the ALSA sequencer one handle must not be used from two
threads at once, and on JACK a lister of its own would be one more client.
A device unplugged and plugged back within one poll, under the same name, is
not seen (USB enumeration alone takes longer).  jamd's own ports (`midi.client_name` and
its suffixed clients) never match a pattern.  On JACK each listing maps the
server's port table again (~66 MB at jackd's default 2048 ports): the watcher
gives those pages back after each look (`Devices.after_listing`), and looks
only when told a port came or went (listing and releasing every 0.5 s cost
~0.9 % of a core: 1.47 % against 0.57 % for `jamd run` following two absent
devices over 30 s, 2-core VM, from /proc/PID/stat).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from .followed import FollowedInput, FollowedOutput

__all__ = ["ChangeLog", "Devices", "DeviceWatcher", "FollowedInput", "FollowedOutput", "first_match", "matches"]

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the watcher lists the ports: a replug is followed within ~0.5 s
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


def client_of(name: str) -> str:
    """The client part of a port name as rtmidi lists it ("jamd" of "jamd:jamd out" on JACK,
    of "jamd:jamd out 128:0" on the ALSA sequencer)."""
    return name.split(":", 1)[0]


def first_match(names: Sequence[str], pattern: str, own: Iterable[str] = ()) -> str | None:
    """The first port in `names` that `pattern` matches (`matches`), or None.

    `own`: jamd's own client names; their ports never match (a pattern such as
    `*` or `out` would otherwise connect jamd's input to its own output)."""
    skip = frozenset(own)
    return next((n for n in names if client_of(n) not in skip and matches(pattern, n)), None)


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


KEYS = {"output": "midi.connect_output", "input": "midi.connect_input"}


class Devices:
    """The followed ports of one `jamd run` ("output", "input"), their watcher and their log."""

    def __init__(self, where: str, output: FollowedOutput | None = None, inp: FollowedInput | None = None,
                 changes: ChangeLog | None = None, own: Iterable[str] = ()):
        """`where`: the MIDI system's name for the log lines ("JACK"); `own`: the names of
        every client jamd opens, whose ports no pattern may match (`first_match`)."""
        self.where = where
        self.sides: dict[str, FollowedOutput | FollowedInput] = {
            side: port for side, port in (("output", output), ("input", inp)) if port is not None}
        self.changes = changes or ChangeLog()
        self.own = frozenset(own)
        self.watcher: DeviceWatcher | None = None
        # told "out 'synth:in', in (waiting for 'keys')" on each change (systemd's STATUS),
        # rate-limited like the lines; called on the engine or the watcher thread
        self.notify: Callable[[str], None] | None = None
        # called on the watcher thread after each look at the ports (JACK: give back the
        # server's shared pages the listing mapped, `jack_memory.JackPages`)
        self.after_listing: Callable[[], None] | None = None

    def match(self, side: str, names: Sequence[str]) -> str | None:
        """The port in `names` that `side`'s pattern names, never one of jamd's own."""
        return first_match(names, self.sides[side].pattern, self.own)

    def describe(self) -> str:
        """Where each followed side is now: "out 'synth:in', in (waiting for 'keys')"."""
        return ", ".join(f"{side[:-3]} {port.connected!r}" if port.connected is not None
                         else f"{side[:-3]} {port.description}" for side, port in self.sides.items())

    def _tell(self) -> None:
        if self.notify is not None and self.changes.line("status", "") is not None:
            self.notify(self.describe())

    def _log(self, side: str, text: str, level: int = logging.INFO) -> None:
        line = self.changes.line(side, f"{KEYS[side]}: {text}")
        if line is not None:
            log.log(level, "%s", line)

    def open(self, side: str) -> str | None:
        """At start: connect `side` to its matching port if there is one (no silencing: the
        session silences the output first thing), else log that jamd waits for it."""
        port = self.sides[side]
        name = self.match(side, port.list_ports())
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
            self._tell()
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
        self._tell()
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
        if self.notify is not None and self.changes.owed("status"):
            self._tell()

    def start(self, enqueue: Callable[[tuple], None], poll_s: float = POLL_S, events: bool = False) -> None:
        """Start watching: `enqueue` (the engine's inbox) gets ("device", self, side, name);
        `events`: `ports_changed` will be called when a port comes or goes (`DeviceWatcher`)."""
        if self.sides and self.watcher is None:
            self.watcher = DeviceWatcher(self, enqueue, poll_s, events)
            self.watcher.start()

    def ports_changed(self) -> None:
        """A port came or went (JACK's registration callback, any thread)."""
        watcher = self.watcher
        if watcher is not None:
            watcher.ports_changed()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


class DeviceWatcher:
    """Lists the ports every `poll_s` and enqueues each change of a followed port's match.

    `events` (JACK, with `jack_watch`'s port registration callback calling
    `ports_changed`): it lists the ports only after a port came or went (or a
    connect failed), and a quiet period of `poll_s` with no such news confirms
    the note ends the output sent before it began (`FollowedOutput.confirm`):
    the server tells of a port gone within ~60 ms on the loaded test rig.
    """

    def __init__(self, devices: Devices, enqueue: Callable[[tuple], None], poll_s: float = POLL_S,
                 events: bool = False):
        self.devices = devices
        self._enqueue = enqueue
        self.poll_s = poll_s
        self.events = events
        self._seen: dict[str, str | None] = {side: p.connected for side, p in devices.sides.items()}
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._marks: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="jamd-devices", daemon=True)

    def ports_changed(self) -> None:
        """A port came or went (any thread; JACK's notification thread): look at the next wake."""
        self._changed.set()

    def step(self, changed: bool) -> list[tuple]:
        """One wake of the watcher (`changed`: news of a port since the last); the items enqueued."""
        if self.events and not changed:
            for side, port in self.devices.sides.items():
                if isinstance(port, FollowedOutput):
                    if side in self._marks and port.connected is not None:
                        port.confirm(self._marks[side])
                    self._marks[side] = port.mark()
            items = []
        else:
            self._marks.clear()  # the listing confirms what it can; quiet periods count from now
            items = self.poll()
        self.devices.report_owed()
        return items

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
            now = self.devices.match(side, names)
            if now != seen:
                self._seen[side] = now
                items.append(("device", self.devices, side, now))
        if self.devices.after_listing is not None:
            self.devices.after_listing()
        for item in items:
            self._enqueue(item)
        return items

    def forget(self, side: str) -> None:
        """The engine could not connect: report the port again at the next poll."""
        self._seen[side] = None
        self._changed.set()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            if self.events:
                changed = self._changed.wait(self.poll_s)
            else:
                changed = not self._stop.wait(self.poll_s)
            if self._stop.is_set():
                return
            self._changed.clear()  # before the listing: news during it brings another
            self.step(changed)

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
