"""OSC control and status for `jamd run` (the optional extra `osc`: python-osc).

With `osc.enabled`, a UDP server on `osc.host:osc.port` (127.0.0.1:9000 by
default) takes the addresses in `ADDRESSES`, which mirror the control CCs.
Its one thread only checks a message's shape (address, argument types, values
within the config's own bounds) and enqueues `("osc", name, value, reply)` on
the engine's inbox; the engine thread applies it (`controls.osc`), so OSC and
CCs change jamd through the same actions.  `/jamd/status` is answered from the
engine thread with its state, to the sender's address and port, from the
server's own socket (as python-osc's server answers; a client whose socket is
connected to jamd's port accepts nothing else).

Nothing that arrives stops the server: a datagram that is not OSC, an unknown
address, a wrong argument type, a value out of range or NaN costs a log line
(one a second at most: `Throttle`) and changes nothing.  Bundles are applied
at once; their time tags are ignored (python-osc's dispatcher would sleep
until a far-future tag and stall every message behind it).

An address that cannot be bound costs one warning and jamd plays on without
OSC, retrying in the background (`OscServer`): a headless box whose network
comes up after jamd still gets its OSC control.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..config import MODES, ClockConfig, HarmonyConfig, LiveConfig, ModelConfig, OscConfig
from ..config.validate import clip
from ..errors import ConfigError
from .loop import Throttle

log = logging.getLogger(__name__)

PREFIX = "/jamd/"
POLL_S = 0.25  # the server thread checks for shutdown this often (4 wake-ups a second, when idle)


class BadMessage(ValueError):
    """An OSC message jamd does not take; the text says why."""


def _spec(cls: type, key: str) -> dict:
    return next(f.metadata for f in dataclasses.fields(cls) if f.name == key)


def _one(args: tuple) -> Any:
    if len(args) != 1:
        raise BadMessage(f"takes one argument (received {len(args)})")
    return args[0]


def _number(cls: type, key: str, integer: bool = False) -> Callable[[tuple], float | int]:
    """One number within `cls.key`'s bounds in the config; an integer where `integer`
    (a float with a whole value counts: touch controllers send floats)."""
    spec = _spec(cls, key)
    lo, hi = spec["lo"], spec["hi"]

    def parse(args: tuple) -> float | int:
        v = _one(args)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise BadMessage(f"takes {'an integer' if integer else 'a number'} (received {type(v).__name__})")
        if not math.isfinite(v):
            raise BadMessage("takes a finite number")
        if integer and v != int(v):
            raise BadMessage("takes a whole number")
        if not lo <= v <= hi:
            raise BadMessage(f"out of range {lo:g}-{hi:g}")
        return int(v) if integer else float(v)
    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[tuple], str]:
    def parse(args: tuple) -> str:
        v = _one(args)
        if not isinstance(v, str) or v not in choices:
            raise BadMessage(f"takes one of {', '.join(choices)}")
        return v
    return parse


def _flag(args: tuple) -> bool:
    """True/False, or a number that is 0 or 1 (a toggle sends 1.0 and 0.0)."""
    v = _one(args)
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    raise BadMessage("takes T, F, 0 or 1")


def _trigger(args: tuple) -> bool:
    """No argument, or a flag: a button sends 1 when pressed and 0 when released (False: ignore)."""
    return True if not args else _flag(args)


def _model(args: tuple) -> str | int:
    """A name (checked against model.models on the engine thread) or an index into model.models."""
    v = _one(args)
    if isinstance(v, str) and v:
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    raise BadMessage("takes a name in model.models or an index from 0")


# name (the address after /jamd/) -> its argument's check (the README's "OSC" table says the same)
ADDRESSES: dict[str, Callable[[tuple], Any]] = {
    "status": _trigger,
    "temperature": _number(ModelConfig, "temperature"),
    "mode": _choice(MODES),
    "start": _trigger,
    "stop": _trigger,
    "panic": _trigger,
    "answer_bars": _number(LiveConfig, "response_bars", integer=True),  # 0: as long as the phrase
    "model": _model,
    "harmony": _flag,
    "harmony/rhythm": _choice(_spec(HarmonyConfig, "rhythm")["choices"]),
    "harmony/pattern": _choice(_spec(HarmonyConfig, "pattern")["choices"]),
    "tempo": _number(ClockConfig, "bpm"),  # BPM; the engine refuses it while following a master
}
TRIGGERS = ("status", "start", "stop", "panic")


def parse(address: str, args: tuple) -> tuple[str, Any] | None:
    """`(name, value)` for the engine from one OSC message; None: a button's release (nothing to do).

    Raises BadMessage (why) for an unknown address, a wrong argument type or count, or a value
    out of range."""
    name = address[len(PREFIX):] if isinstance(address, str) and address.startswith(PREFIX) else None
    if name not in ADDRESSES:
        raise BadMessage("unknown address (see the README, \"OSC\")")
    value = ADDRESSES[name](tuple(args))
    if name in TRIGGERS:
        return (name, None) if value else None
    return name, value


class OscControl:
    """What the server thread does with each message: check it, enqueue it, never raise.

    `put`: the engine's inbox (`Engine.inbox.put`); `send(dgram, address)`: how a status
    reply leaves (the server's socket)."""

    def __init__(self, put: Callable[[tuple], None], send: Callable[[bytes, tuple], None] | None = None):
        self.put = put
        self.send = send
        self.bad = Throttle()  # a line a second for what is refused here
        self.refused = 0  # messages refused (tests, and the line at shutdown)

    def handle(self, address: Any, args: Any, sender: tuple | None = None) -> None:
        """One OSC message from `sender` (host, port)."""
        try:
            item = parse(address, tuple(args))
        except BadMessage as exc:
            self.refuse(f"OSC {clip(str(address))} {clip(repr(list(args)))} ignored: {exc}")
            return
        except Exception as exc:  # never the server's end: an argument no check foresaw
            self.refuse(f"OSC {clip(repr(address))} ignored: unreadable ({exc})")
            return
        if item is None:
            log.debug("OSC %s %s: a release, nothing to do", address, list(args))
            return
        name, value = item
        reply = self._replier(sender) if name == "status" and sender is not None else None
        self.put(("osc", name, value, reply))

    def refuse(self, line: str) -> None:
        self.refused += 1
        if self.bad.ready():
            log.warning("%s", line)

    def _replier(self, sender: tuple) -> Callable[[tuple], None]:
        def reply(values: tuple) -> None:  # runs on the engine thread: a failure costs a log line, never it
            try:
                from pythonosc.osc_message_builder import OscMessageBuilder

                builder = OscMessageBuilder(PREFIX + "status")
                for v in values:
                    builder.add_arg(v)
                if self.send is not None:
                    self.send(builder.build().dgram, sender)
            except Exception as exc:
                self.refuse(f"OSC status not sent to {sender}: {exc}")
        return reply


class _QuietPythonOsc(logging.Filter):
    """python-osc warns on the root logger about every odd type tag or bundle part a sender
    puts in; a sender repeating one must not fill the log: one of its lines a second."""

    def __init__(self) -> None:
        super().__init__()
        self.throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        return "pythonosc" not in record.pathname or self.throttle.ready()


def why_not_bound(host: str, exc: OSError) -> str:
    """The reason `host` could not be bound, in words: a port in use, an address this machine
    does not have (yet: DHCP at boot), a name that does not resolve, else the error's text."""
    if exc.errno == errno.EADDRINUSE:
        return "in use (another jamd or OSC program?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{clip(host)} is not an address of this machine (not yet up? check osc.host)"
    if isinstance(exc, socket.gaierror):
        return f"{clip(host)} is not a known host name or address (check osc.host)"
    if exc.errno == errno.EACCES:
        return "permission denied (a port below 1024 needs root: choose another osc.port)"
    return exc.strerror or str(exc)


class OscServer:
    """python-osc's UDP server on its own thread ("jamd-osc"), handling datagrams one by one
    in arrival order (a /jamd/mode then a /jamd/status are answered in that order).

    OSC is a convenience: when `osc.host:osc.port` cannot be bound (a port in use, an address
    DHCP has not brought up yet), jamd plays on without it.  One warning line says why; the
    thread then tries again every `retry_s` seconds, quietly, and says one line when it listens.
    osc.* is read once, at start: a reload does not rebind (the reload path says so)."""

    RETRY_S = 5.0

    def __init__(self, cfg: OscConfig, retry_s: float | None = None):
        """Tries to bind `cfg.host:cfg.port` now (the warning comes before the MIDI ports open).

        Raises ConfigError (exit code 2) only without python-osc: that is an install to fix."""
        try:
            from pythonosc import osc_packet
            from pythonosc.dispatcher import Dispatcher
            from pythonosc.osc_server import BlockingOSCUDPServer
        except ImportError:
            raise ConfigError("osc.enabled is true but python-osc is not installed: "
                              "pip install 'jamd[osc]', or set osc.enabled: false") from None
        self.cfg = cfg
        self.retry_s = self.RETRY_S if retry_s is None else retry_s
        self.control = OscControl(lambda item: None, self._send)
        control = self.control

        class _Dispatcher(Dispatcher):
            def call_handlers_for_packet(self, data: bytes, client_address: tuple) -> list:
                try:
                    messages = [m.message for m in osc_packet.OscPacket(data).messages]
                except Exception as exc:  # ParseError, or worse: never the server's end
                    control.refuse(f"OSC: ignored an unreadable datagram of {len(data)} bytes "
                                   f"from {client_address[0]}: {clip(str(exc))}")
                    return []
                for m in messages:
                    control.handle(m.address, m.params, client_address)
                return []

        class _Server(BlockingOSCUDPServer):
            def verify_request(self, request, client_address) -> bool:
                ok = super().verify_request(request, client_address)
                if not ok:
                    control.refuse(f"OSC: ignored a datagram that is not OSC ({len(request[0])} bytes "
                                   f"from {client_address[0]})")
                return ok

            def handle_error(self, request, client_address) -> None:
                control.refuse(f"OSC: a message from {client_address[0]} failed; the server goes on")

        self._make = lambda: _Server((cfg.host, cfg.port), _Dispatcher())
        self.server = None
        self.address: tuple | None = None  # (host, port) once listening
        self.why: str | None = None  # why it is not listening (yet)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._serving = False
        self._thread: threading.Thread | None = None
        self._quiet = _QuietPythonOsc()
        logging.getLogger().addFilter(self._quiet)
        if not self._bind():
            log.warning("osc.host/osc.port: cannot listen on %s:%d: %s; jamd plays on without OSC and "
                        "tries again every %g s", clip(cfg.host), cfg.port, self.why, self.retry_s)

    def _bind(self) -> bool:
        try:
            server = self._make()
        except OSError as exc:
            self.why = why_not_bound(self.cfg.host, exc)
            return False
        self.server, self.address, self.why = server, server.server_address[:2], None
        return True

    def start(self, put: Callable[[tuple], None]) -> None:
        """Serve from now on (or once bound), handing each checked message to `put` (the engine's inbox)."""
        self.control.put = put
        self._thread = threading.Thread(target=self._run, name="jamd-osc", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.server is None:
            if self._stop.wait(self.retry_s):
                return
            if not self._bind():
                log.debug("OSC: still cannot listen on %s:%d: %s", self.cfg.host, self.cfg.port, self.why)
        with self._lock:  # `close` shuts down only a server that serves (shutdown waits for serve_forever)
            if self._stop.is_set():
                return
            self._serving = True
        log.info("OSC: listening on %s:%d%s", *self.address,
                 "" if self.cfg.host in ("127.0.0.1", "localhost", "::1") else
                 " (from the network: anyone there can control jamd)")
        self.server.serve_forever(poll_interval=POLL_S)

    def _send(self, dgram: bytes, address: tuple) -> None:
        if self.server is not None:
            self.server.socket.sendto(dgram, address)

    def close(self) -> None:
        """Stop serving (or trying to bind) and close the socket (never raises: it runs on jamd's way out)."""
        try:
            with self._lock:
                self._stop.set()
                serving = self._serving
            if serving:
                self.server.shutdown()
            if self._thread is not None:
                self._thread.join(2)
            if self.server is not None:
                self.server.server_close()
        except Exception as exc:
            log.warning("OSC: the server did not close cleanly: %s", exc)
        logging.getLogger().removeFilter(self._quiet)
        if self.control.refused:
            log.info("OSC: %d message(s) refused in all", self.control.refused)
