"""A `jamd run` under measurement: started over a private JACK server, its
CPU time and memory read from /proc, and what it sends recorded by a JACK
client of the bench's own.  Shared by the realtime and clock benches."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from ..config import Config
from ..midi.closing import close_midi_in
from .jack_server import JackServerError, private_jack_server


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mb(pid: int) -> dict:
    """VmRSS and its parts. RssShmem is mostly JACK's shared memory segments,
    mapped by every JACK client and owned by the server, not by jamd; VmLck is
    what the process holds locked (libjack mlock()s those segments, and jamd
    gives the lock back: midi.jack_memory.release_jack_shared_memory)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmLck"):
                out[key] = int(line.split()[1]) / 1024
    # Proportional set size: shared pages (JACK's segment, held by jackd and by
    # every client alike; shared libraries) divided among the processes mapping them.
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("Pss", "Pss_Shmem", "Locked"):
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


# The bench's own pool of server names (see jack_server.private_jack_server for
# why a small fixed pool), apart from the test rig's so a bench and a test run
# never fight over one.
_JACK_NAMES = tuple(f"jamd-bench-{i}" for i in range(4))


@contextlib.contextmanager
def private_jack(force: bool = False, period: int = 256) -> Iterator[dict[str, str]]:
    """The environment for JACK clients: a private dummy-driver `jackd` (48 kHz,
    `period` frames) when no ALSA sequencer is present (or `force`), else the
    caller's environment (also when the server could not be started: the
    figures then say what failed)."""
    with contextlib.ExitStack() as server:
        if force or not os.path.exists("/dev/snd/seq"):
            with contextlib.suppress(JackServerError):
                # JACK_DEFAULT_SERVER is set in this process too: its own JACK
                # clients (the flood bench's recorder) use the server as well
                server.enter_context(private_jack_server(_JACK_NAMES, period, die_with_parent=True))
        yield dict(os.environ)


def start_daemon(model_name: str, cfg: Config, env: dict[str, str], *extra: str,
                 python: str = sys.executable) -> subprocess.Popen:
    """`jamd run` (continuous unless `extra` names another mode) under `python`: this
    checkout's interpreter, or a baseline's venv (`--compare`)."""
    return subprocess.Popen([python, "-m", "jamd.cli", "run", "--mode", "continuous",
                             "--model", model_name, "--log-level", "info",
                             "--set", f"clock.spin_us={cfg.clock.spin_us}",
                             "--set", f"clock.realtime_priority={cfg.clock.realtime_priority}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


class Recorder:
    """Arrival times (perf_counter_ns) of what jamd sends, from a JACK client of our own."""

    def __init__(self, source: str, timeout_s: float = 10.0, timing: bool = False):
        import rtmidi

        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench-recorder")
        if timing:  # MIDI clock and transport too
            self.inp.ignore_types(sysex=True, timing=False, active_sense=True)
        self.events: list[tuple[int, tuple[int, ...]]] = []
        self.inp.set_callback(lambda ev, _d: self.events.append((time.perf_counter_ns(), tuple(ev[0]))))
        end = time.monotonic() + timeout_s
        while True:
            ports = self.inp.get_ports()
            hit = [i for i, n in enumerate(ports) if source in n]
            if hit:
                self.inp.open_port(hit[0], "rec")
                return
            if time.monotonic() > end:
                raise RuntimeError(f"no JACK port {source!r} (ports: {ports})")
            time.sleep(0.05)

    def close(self) -> None:
        close_midi_in(self.inp)
