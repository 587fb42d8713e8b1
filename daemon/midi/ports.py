"""Choosing the MIDI system and opening jamd's ports, with python-rtmidi.

`midi.api: auto` picks the ALSA sequencer on Linux when `/dev/snd/seq`
exists, otherwise JACK when a server runs; CoreMIDI on macOS; Windows MM on
Windows.  Ports are virtual (named from config) unless `midi.connect_*`
names an existing port, which is the only way on Windows (e.g. loopMIDI);
`jamd run` follows such a device as it comes and goes (`hotplug`).
When nothing usable is found, `MidiSystemError` says in one line what was
tried and what to do.  rtmidi is imported here only, on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..config import MidiConfig, clip
from ..errors import ConfigError, MidiSystemError
from .closing import close_midi_in
from .hotplug import Devices, FollowedInput, FollowedOutput, first_match
from .input import ArrivalStamper, InputReader
from .jack_memory import JackPages
from .outputs import Output, RtMidiOutput

log = logging.getLogger(__name__)

HINT = ("start JACK (e.g. `jackd -d dummy &`, or your usual setup) or an ALSA sequencer, "
        "or write a MIDI file with `jamd generate`")
# Several JACK periods (5 ms at 256 frames/48 kHz, 21 ms at 1024): long enough
# for the last messages sent to leave before the output port closes.
DRAIN_S = 0.2
DISPLAY = {"alsa": "ALSA sequencer", "jack": "JACK", "coremidi": "CoreMIDI", "winmm": "Windows MM"}


# Name limits in bytes (UTF-8) without the terminating NUL.  JACK: jack_client_name_size() is 64
# and a full port name "client:port" jack_port_name_size() 256; jamd names its other JACK clients
# client_name + one of JACK_SUFFIXES.  ALSA sequencer: 64 for a client's and a port's name
# (snd_seq_client_info and snd_seq_port_info hold name[64]).  Past them JACK refuses the client,
# which rtmidi reports as "JACK server not running?", and ALSA cuts the name.
JACK_CLIENT_MAX, JACK_PORT_MAX, ALSA_NAME_MAX = 63, 255, 63
JACK_SUFFIXES = ("-in", "-clock", "-watch")


def name_problem(api: str, cfg: MidiConfig, clock_port: str | None = None) -> str | None:
    """Why MIDI system `api` cannot take jamd's client and port names (one line naming the key), or None."""
    ports = {"midi.output_port": cfg.output_port, "midi.input_port": cfg.input_port, "clock.port": clock_port}
    names = {"midi.client_name": cfg.client_name, **{k: v for k, v in ports.items() if v is not None}}
    # the longest JACK client name jamd makes: client_name + "-watch"
    client = len(cfg.client_name.encode("utf-8", "surrogatepass")) + max(map(len, JACK_SUFFIXES))
    for key, name in names.items():
        size = len(name.encode("utf-8", "surrogatepass"))
        if not name.strip():
            return f"{key} is empty (received {name!r}): give the name patchbays will show"
        if api == "alsa" and size > ALSA_NAME_MAX:
            limit, why = ALSA_NAME_MAX, "the ALSA sequencer's limit"
        elif api == "jack" and key == "midi.client_name" and client > JACK_CLIENT_MAX:
            limit = JACK_CLIENT_MAX - max(map(len, JACK_SUFFIXES))
            why = f"JACK's {JACK_CLIENT_MAX} for a client, less the {JACK_SUFFIXES[-1]!r} jamd adds for one"
        elif api == "jack" and key != "midi.client_name" and client + 1 + size > JACK_PORT_MAX:
            limit = JACK_PORT_MAX - client - 1
            why = f"JACK's {JACK_PORT_MAX} for 'client:port', with the client name {clip(repr(cfg.client_name))}"
        else:
            continue
        return f"{key} is {size} bytes long (received {clip(repr(name))}): at most {limit} ({why})"
    return None


def _rtmidi():
    try:
        import rtmidi
    except (ImportError, OSError) as exc:
        raise MidiSystemError(import_problem(exc)) from None
    return rtmidi


def import_problem(exc: BaseException) -> str:
    """One line for a failed `import rtmidi`: python-rtmidi missing, or (its wheel is
    there) a C library it links against missing, libasound above all, on a slim image."""
    text = str(exc)
    lib = re.search(r"(lib[\w+-]+\.so[\w.]*)", text)
    if lib is None:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "rtmidi").split(".")[0] == "rtmidi":
            return "python-rtmidi is not installed: pip install python-rtmidi"
        return f"python-rtmidi cannot be imported: {text}"
    name = lib.group(1)
    if name.startswith("libasound"):
        return (f"python-rtmidi cannot load {name}, the ALSA library it is built against: install it "
                "(Debian, Ubuntu, Raspberry Pi OS: sudo apt install libasound2; on Debian 13 and "
                "Ubuntu 24.04 and later the package is libasound2t64)")
    if name.startswith("libjack"):
        return f"python-rtmidi cannot load {name}, JACK's library: sudo apt install libjack-jackd2-0"
    return f"python-rtmidi cannot load {name} ({text}): install the package that provides it"


def api_ids() -> dict[str, int]:
    rt = _rtmidi()
    return {"alsa": rt.API_LINUX_ALSA, "jack": rt.API_UNIX_JACK,
            "coremidi": rt.API_MACOSX_CORE, "winmm": rt.API_WINDOWS_MM}


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what libjack/libasound print on fd 2 while probing, so a missing
    MIDI system ends in our one line, not in a page of C library noise."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def candidates(choice: str) -> list[tuple[str, str | None]]:
    """APIs to try, in order, each with the reason it is skipped (None: try it)."""
    compiled = set(_rtmidi().get_compiled_api())
    ids = api_ids()

    def check(name: str) -> str | None:
        if ids[name] not in compiled:
            return "not compiled into python-rtmidi"
        return None

    if choice != "auto":
        return [(choice, check(choice))]
    if sys.platform == "darwin":
        return [("coremidi", check("coremidi"))]
    if sys.platform == "win32":
        return [("winmm", check("winmm"))]
    alsa_reason = check("alsa") or (None if os.path.exists("/dev/snd/seq") else "/dev/snd/seq missing")
    return [("alsa", alsa_reason), ("jack", check("jack"))]


def _describe_failure(name: str, exc: Exception) -> str:
    text = str(exc)
    if name == "jack" and "not running" in text:
        return "no server running"
    return text.split("::")[-1].strip() or type(exc).__name__


def own_clients(client_name: str) -> frozenset[str]:
    """The names of every client jamd opens (`midi.client_name` and its JACK suffixes): no
    `midi.connect_*` pattern may name their ports, or jamd would play into itself."""
    return frozenset([client_name, *(client_name + suffix for suffix in JACK_SUFFIXES)])


def _find(ports: list[str], wanted: str, what: str, api: str, own: frozenset[str] = frozenset()) -> int:
    name = first_match(ports, wanted, own)
    if name is not None:
        return ports.index(name)
    listed = ", ".join(repr(p) for p in ports) or "none"
    raise MidiSystemError(f"no {what} port matching {wanted!r} on {DISPLAY[api]} (ports: {listed})")


@dataclass
class MidiPorts:
    api: str
    output: Output  # RtMidiOutput, or FollowedOutput for a followed device
    midiin: object
    output_name: str
    input_name: str
    clock_output: RtMidiOutput | None = None  # `clock.port`: MIDI clock on a port of its own
    clock_output_name: str | None = None
    reader: InputReader | None = None
    devices: Devices | None = None  # midi.connect_* followed as they come and go (`follow_devices`)

    def watch(self, enqueue: Callable[[tuple], None], events: bool = False) -> None:
        """Start following the devices: each change goes to `enqueue` (the engine's inbox).
        `events`: `on_ports` is called when a port comes or goes (JACK: `JackWatch`
        with `on_ports`), and the ports are listed only then (`hotplug.DeviceWatcher`)."""
        if self.devices is not None:
            self.devices.start(enqueue, events=events)

    @property
    def on_ports(self) -> Callable[[], None] | None:
        """What to call when a port comes or goes (any thread; `JackWatch`'s `on_ports`): the
        watcher then looks at the ports at its next wake.  None when no device is followed."""
        return self.devices.ports_changed if self.devices is not None else None

    def close(self) -> None:
        """Close the input first (no more callbacks), then the output.

        The output waits DRAIN_S first: rtmidi hands a message to JACK through
        a ring buffer that the server's next process cycle empties, and closing
        the port before that can drop what is still in it, here the shutdown's
        note-offs and CC 123 (the likely cause of one note left sounding at the
        JACK rig's recorder on a busy machine).
        """
        if self.devices is not None:
            self.devices.stop()  # first: no reconnect while the ports close
        if self.reader is not None:
            self.reader.stop()
        close_midi_in(self.midiin)  # its callbacks drained first (jamd.midi.closing)
        time.sleep(DRAIN_S)
        try:
            self.output.close()
        finally:
            if self.clock_output is not None:
                self.clock_output.close()


def open_ports(cfg: MidiConfig, on_message: Callable[[list[int], int], None], *, clock_in: bool = False,
               clock_port: str | None = None, reader_priority: int = 0, follow_devices: bool = False) -> MidiPorts:
    """Open jamd's output and input on the first usable API; or one-line error.

    `follow_devices` (`jamd run`): a port `midi.connect_*` names that is not
    there yet is waited for, not an error, and `MidiPorts.watch` then follows
    it as it comes and goes (`hotplug`).

    `clock_in`: pass MIDI clock and transport to `on_message` (clock.source:
    midi); otherwise rtmidi drops them.  `clock_port`: also open a virtual
    output of that name for the clock (clock.port).  `on_message(bytes,
    arrival_ns)` is called on the input reader's thread and must only enqueue;
    `reader_priority`: SCHED_FIFO asked for that thread (0: none).
    """
    rt = _rtmidi()
    ids = api_ids()
    tried = []
    for name, skip in candidates(cfg.api):
        if skip:
            tried.append(f"{DISPLAY[name]}: {skip}")
            continue
        problem = name_problem(name, cfg, clock_port)
        if problem is not None:  # before rtmidi, which would blame the server for a long name
            raise ConfigError(f"{DISPLAY[name]}: {problem}")
        try:
            with quiet_stderr():
                out = rt.MidiOut(ids[name], name=cfg.client_name)
                # JACK makes one client per rtmidi object and renames a second
                # "jamd" to "jamd-01"; a name of our own is easier to find.
                in_client = f"{cfg.client_name}-in" if name == "jack" else cfg.client_name
                # room for a burst: 10,000 messages/s fill only 20 per poll
                inp = rt.MidiIn(ids[name], name=in_client, queue_size_limit=4096)
        except rt.RtMidiError as exc:
            tried.append(f"{DISPLAY[name]}: {_describe_failure(name, exc)}")
            continue
        ports = _open_on(name, out, inp, cfg, in_client, clock_in, follow_devices)
        if clock_port:
            try:
                ports.clock_output, ports.clock_output_name = _open_clock_port(name, cfg, clock_port)
            except MidiSystemError:
                ports.close()
                raise
        if clock_in:
            # following MIDI clock, one lost message costs the song position: poll
            ports.reader = InputReader(ports.midiin, on_message, reader_priority)
            ports.reader.start()
        else:
            # otherwise a callback, which costs nothing while no input comes (the
            # reader's wake-ups took jamd's CPU while playing from 1.9% to 2.2%)
            stamp = ArrivalStamper().stamp

            def listen(midiin=ports.midiin, stamp=stamp) -> None:
                midiin.set_callback(
                    lambda event, _data: on_message(event[0], stamp(event[1], time.perf_counter_ns())))

            listen()
            followed_in = ports.devices.sides.get("input") if ports.devices is not None else None
            if isinstance(followed_in, FollowedInput):
                followed_in.on_open = listen  # rtmidi's close_port cancels the callback
        return ports
    raise MidiSystemError(f"no usable MIDI system (tried {'; '.join(tried)}): {HINT}")


def _open_clock_port(api: str, cfg: MidiConfig, port: str) -> tuple[RtMidiOutput, str]:
    rt = _rtmidi()
    if api == "winmm":
        raise MidiSystemError("Windows MM has no virtual ports: clock.port cannot be opened; "
                              "set clock.port: null to send the clock on the note output")
    client = f"{cfg.client_name}-clock" if api == "jack" else cfg.client_name
    try:
        with quiet_stderr():
            out = rt.MidiOut(api_ids()[api], name=client)
        out.open_virtual_port(port)
    except rt.RtMidiError as exc:
        raise MidiSystemError(f"cannot open the clock port {port!r} on {DISPLAY[api]}: {exc}") from None
    name = f"{client}:{port}"
    return RtMidiOutput(out, name), name


def _open_one(port, connect: str | None, port_name: str, client: str, what: str, api: str,
              own: frozenset[str] = frozenset()) -> str:
    """Connect `port` to the existing port matching `connect` (none of `own` clients'), or open
    a virtual one; its name."""
    if connect:
        names = port.get_ports()
        i = _find(names, connect, what, api, own)
        port.open_port(i, port_name)
        return names[i]
    port.open_virtual_port(port_name)
    return f"{client}:{port_name}"


def _open_on(api: str, out, inp, cfg: MidiConfig, in_client: str, clock_in: bool = False,
             follow: bool = False) -> MidiPorts:
    rt = _rtmidi()
    if api == "winmm" and not (cfg.connect_output and cfg.connect_input):
        raise MidiSystemError("Windows MM has no virtual ports: set midi.connect_output and "
                              "midi.connect_input to existing ports (e.g. loopMIDI ports)")
    own = own_clients(cfg.client_name)
    devices = Devices(DISPLAY[api], own=own) if follow and (cfg.connect_output or cfg.connect_input) else None
    if devices is not None and api == "jack":
        devices.after_listing = JackPages().release  # each listing maps JACK's port table again
    output: Output | None = None
    try:
        # SysEx and active sensing are never used: drop them in rtmidi; MIDI
        # clock too, unless jamd follows it (clock.source: midi).
        inp.ignore_types(sysex=True, timing=not clock_in, active_sense=True)
        if devices is not None and cfg.connect_output:
            output = devices.sides["output"] = FollowedOutput(out, cfg.connect_output, cfg.output_port)
            devices.open("output")
            out_name = output.description
        else:
            out_name = _open_one(out, cfg.connect_output, cfg.output_port, cfg.client_name, "output", api, own)
        if devices is not None and cfg.connect_input:
            followed = devices.sides["input"] = FollowedInput(inp, cfg.connect_input, cfg.input_port)
            devices.open("input")
            in_name = followed.description
        else:
            in_name = _open_one(inp, cfg.connect_input, cfg.input_port, in_client, "input", api, own)
    except (rt.RtMidiError, MidiSystemError) as exc:
        with contextlib.suppress(Exception):
            out.close_port()
            inp.close_port()
        if isinstance(exc, MidiSystemError):
            raise
        raise MidiSystemError(f"cannot open MIDI ports on {DISPLAY[api]}: {exc}") from None
    return MidiPorts(api, output or RtMidiOutput(out, out_name), inp, out_name, in_name, devices=devices)


def list_ports() -> dict[str, dict]:
    """Every compiled API with its ports (or why it is unusable).

    `destinations` are ports jamd can send to (for `midi.connect_output`),
    `sources` ports it can listen to (for `midi.connect_input`).
    """
    rt = _rtmidi()
    compiled = set(rt.get_compiled_api())
    result: dict[str, dict] = {}
    for name, api in api_ids().items():
        entry: dict = {"display": DISPLAY[name], "sources": [], "destinations": [], "error": None}
        if api not in compiled:
            entry["error"] = "not compiled into python-rtmidi"
        else:
            try:
                with quiet_stderr():
                    out = rt.MidiOut(api, name="jamd-ports")
                    inp = rt.MidiIn(api, name="jamd-ports")
                    entry["destinations"], entry["sources"] = out.get_ports(), inp.get_ports()
                    del out, inp
            except rt.RtMidiError as exc:
                entry["error"] = _describe_failure(name, exc)
        result[name] = entry
    return result
