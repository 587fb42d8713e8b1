"""`jamd bench --suite realtime`: the figures of docs/BENCHMARKS.md, "Real-time daemon".

* Scheduling error (send time - deadline) of the sender thread, over
  `--events` messages at 120 BPM in 16ths (a note-on on every 16th, its
  note-off half a 16th later), while the model generates a bar every bar in
  another thread as in the daemon; `--load` keeps another core busy.
* Phrase end -> 4-bar answer scheduled: key detection, priming, 64 steps of
  generation and scheduling, with the real model, in process.
* `jamd run` itself (needs JACK; a private dummy-driver server is started when
  none runs): launch -> ready, then RSS and CPU while playing continuously.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np

from ..config import Config
from ..inference.bar_source import open_bar_source
from ..midi.outputs import MemoryOutput
from ..midi.realtime import ask_realtime
from ..sync.clock import Clock
from ..sync.scheduler import Scheduler
from ..tokens import Note
from .jack_server import JackServerError, private_jack_server

SWITCH_INTERVAL_S = 0.0005  # as in `jamd run`


def _busy_core() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


class _NullOutput(MemoryOutput):
    """Counts instead of storing: 10,000 events need no list."""

    def send(self, message) -> None:
        self.count = getattr(self, "count", 0) + 1


def scheduling_error(cfg: Config, n_events: int, model=None) -> dict:
    clock = Clock(120.0, 4, 4)
    sch = Scheduler(clock, _NullOutput(), cfg.clock.spin_us, record_errors=True,
                    realtime_priority=cfg.clock.realtime_priority)
    sch.start()
    stop = threading.Event()

    def generate() -> None:  # the engine's steady work: one bar per bar
        ask_realtime(cfg.clock.realtime_priority - 1, "engine")
        rng = np.random.default_rng(0)
        while not stop.wait(clock.step_ns * 16 / 1e9):
            model.next_bar(16, 0.9, rng)

    gen = threading.Thread(target=generate, daemon=True) if model is not None else None
    if gen:
        gen.start()
    # This thread queues the notes, the engine's job in the daemon: the engine's priority.
    was = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None
    ask_realtime(cfg.clock.realtime_priority - 1, "bench")
    first = clock.next_bar_line(clock.now_step() + 4)
    notes = n_events // 2
    # schedule a bar ahead at a time, as the engine does, not all at once
    for i in range(notes):
        while first + i > clock.now_step() + 16:
            stop.wait(0.05)
        sch.schedule_note(first + i, first + i + 0.5, 60 + i % 12, 90, 1)
    while sch.pending():
        stop.wait(0.05)
    stop.set()
    sch.stop()
    if was is not None:
        os.sched_setscheduler(0, was, os.sched_param(0))
    err = np.array(sch.stats.errors_ns[:n_events], dtype=np.float64) / 1e6
    return {"events": int(err.size), "sched_fifo": sch.realtime, "p50_ms": float(np.percentile(err, 50)),
            "p99_ms": float(np.percentile(err, 99)), "max_ms": float(err.max()),
            "min_ms": float(err.min()), "late_over_1ms": int((err > 1).sum())}


def answer_latency(cfg: Config, model_name: str, repeats: int) -> dict:
    """Phrase end -> whole 4-bar answer scheduled, over `repeats` phrases in 12 keys."""
    from ..live.engine import Engine
    from ..live.phrase import Phrase
    from ..music.keys import detect_key

    detect_key([Note(0, 60, 4)])  # the daemon warms music21 up at start too
    cfg = cfg.replace(**{"live.response_bars": 4, "live.mode": "call-response"})
    clock = Clock(cfg.clock.bpm)
    sch = Scheduler(clock, _NullOutput(), cfg.clock.spin_us)
    engine = Engine(cfg, clock, sch, lambda name: open_bar_source(name, cfg.model))
    rng = np.random.default_rng(1)
    times = []
    for r in range(repeats):
        shift = r % 12
        notes = [Note(s, int(p) + shift, 2) for s, p in zip(range(0, 64, 2),
                                                             rng.choice([60, 62, 64, 65, 67, 69, 71, 72], 32),
                                                             strict=True)]
        now = clock.next_bar_line(clock.now_step())
        phrase = Phrase([Note(n.start + now, n.pitch, n.duration) for n in notes], now, now + 64,
                        now + 80, "silence")
        t0 = time.perf_counter_ns()
        engine._phrase_done(phrase, t0)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        sch.panic()
    arr = np.array(times)
    return {"repeats": repeats, "p50_ms": float(np.median(arr)), "max_ms": float(arr.max())}


def _proc_cpu_s(pid: int) -> float:
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
def _private_jack(force: bool = False, period: int = 256) -> Iterator[dict[str, str]]:
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


def _start_daemon(model_name: str, cfg: Config, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jamd.cli", "run", "--mode", "continuous",
                             "--model", model_name, "--log-level", "info",
                             "--set", f"clock.spin_us={cfg.clock.spin_us}",
                             "--set", f"clock.realtime_priority={cfg.clock.realtime_priority}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def daemon_figures(model_name: str, play_s: float, cfg: Config) -> dict:
    """Launch `jamd run` (continuous), time it to ready, then RSS and CPU while playing."""
    if not sys.platform.startswith("linux"):
        return {"skipped": "needs Linux /proc"}
    with _private_jack() as env:
        t0 = time.perf_counter()
        proc = _start_daemon(model_name, cfg, env)
        ready = None
        for line in proc.stdout:
            if "ready in" in line:
                ready = time.perf_counter() - t0
                break
        if ready is None:
            return {"skipped": "jamd run did not get ready (no MIDI system?)"}
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        time.sleep(3.0)  # past the music21 warm-up
        cpu0, w0 = _proc_cpu_s(proc.pid), time.perf_counter()
        time.sleep(play_s)
        cpu1, w1 = _proc_cpu_s(proc.pid), time.perf_counter()
        mem = proc_memory_mb(proc.pid)
        proc.terminate()
        proc.wait(10)
        return {"launch_to_ready_s": ready, "rss_mb": mem.get("VmRSS"),
                "rss_private_mb": mem.get("RssAnon", 0) + mem.get("RssFile", 0),
                "rss_jack_shm_mb": mem.get("RssShmem"), "pss_mb": mem.get("Pss"),
                "pss_jack_shm_mb": mem.get("Pss_Shmem"), "locked_mb": mem.get("Locked"),
                "vmlck_mb": mem.get("VmLck"), "root": os.geteuid() == 0,
                "cpu_percent_of_one_core": 100 * (cpu1 - cpu0) / (w1 - w0), "measured_s": w1 - w0}


# -- input flood ------------------------------------------------------------------
FLOOD_RATE = 10_000  # messages per second, issue 4 section 8
FLOOD_CHANNEL = 2  # the flood's channel messages go here; jamd plays on output.channel (1)
_READY = re.compile(r"ready in .*?clock origin (\d+) ns")


def flood_pattern(channel: int = FLOOD_CHANNEL) -> list[list[int]]:
    """100 messages that repeat: what a busy rig sends besides a melody.

    45 are things jamd never uses and rtmidi drops before Python sees them
    (`ignore_types`): MIDI clock (25), active sensing (10) and SysEx (10: a
    6-byte identity request or a 26-byte dump).  55 reach the engine: CCs
    jamd has no use for (mod wheel, expression, cutoff: 20), pitch bend (10),
    channel pressure (5) and 10 note-on/note-off pairs on `channel`, a D-major
    scale struck 1,000 times a second.  Those notes are a phrase like any
    other (jamd takes notes on every channel, as a player may use any): in
    continuous mode the flood is one long phrase that closes at
    `live.max_phrase_bars` and re-seeds the stream in D major.
    """
    c = channel - 1
    scale = [62, 64, 66, 67, 69, 71, 73, 74, 76, 78]
    dump = [0xF0, 0x7D, *[(7 * i) % 128 for i in range(24)], 0xF7]  # 0x7D: non-commercial id
    identity = [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7]
    out: list[list[int]] = []
    for i, p in enumerate(scale):
        out += [[0x90 | c, p, 64 + i], [0xF8], [0xB0 | c, 1, (13 * i) % 128], [0xF8],
                [0xE0 | c, 0, 64 + i], [0xB0 | c, 11 if i % 2 else 74, (7 * i) % 128], [0xFE],
                identity if i % 2 else dump, [0xD0 | c, 30 + i] if i % 2 else [0xF8], [0x80 | c, p, 0]]
    return out


def flood_client(target: str, start_ns: int, end_ns: int, rate: int = FLOOD_RATE) -> None:
    """Send `rate` messages/s from `flood_pattern` into `target` between two
    perf_counter times: every millisecond, whatever is due by then (so a late
    wake-up is caught up and the average rate holds); prints how many went.
    Runs in a process of its own, so the measuring side shares no GIL with it."""
    import rtmidi

    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="flood")
    ports = out.get_ports()
    out.open_port(next(i for i, n in enumerate(ports) if target in n), "flood")
    pattern = flood_pattern()
    sent = 0
    while time.perf_counter_ns() < start_ns:
        time.sleep(0.001)
    now = time.perf_counter_ns()
    while now < end_ns:
        due = (now - start_ns) * rate // 1_000_000_000
        while sent < due:
            out.send_message(pattern[sent % len(pattern)])
            sent += 1
        time.sleep(0.001)
        now = time.perf_counter_ns()
    out.close_port()
    print(f"flood sent {sent} in {(now - start_ns) / 1e9:.3f} s", flush=True)


class _Recorder:
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
        self.inp.cancel_callback()
        self.inp.close_port()
        self.inp.delete()


def onset_deviation(arrivals_ns: list[int], origin_ns: int, step_ns: float, latency_ns: float) -> np.ndarray:
    """|arrival - latency - nearest 16th| in ms: how far each note-on is off the grid."""
    rel = np.asarray(arrivals_ns, np.float64) - origin_ns - latency_ns
    return np.abs(rel - np.round(rel / step_ns) * step_ns) / 1e6


def _signed_offsets(arrivals_ns: list[int], origin_ns: int, step_ns: float) -> np.ndarray:
    # arrival - nearest 16th, folded so that up to 3/4 of a 16th late still
    # counts as late (the delivery latency is positive): the median is the latency
    rel = np.asarray(arrivals_ns, np.float64) - origin_ns
    return (rel + step_ns / 4) % step_ns - step_ns / 4


def flood_figures(model_name: str, cfg: Config, phase_s: float) -> dict:
    """Output onset timing of `jamd run` (continuous) without, then with, an input flood.

    One private JACK server, one daemon: a recorder client timestamps every
    message jamd sends; `phase_s` seconds are measured quietly, then a flood
    client (its own process) sends FLOOD_RATE messages/s into jamd's input
    for another `phase_s`.  Each note-on's deviation from the 16th grid is
    taken after removing the quiet phase's median delivery latency, so the
    figures compare like with like (both phases in the same run).
    """
    if not sys.platform.startswith("linux"):
        return {"skipped": "needs Linux /proc"}
    if not shutil.which("jackd"):
        return {"skipped": "needs jackd (Debian: apt-get install jackd2)"}
    bpm = 120.0
    step_ns = 60e9 / bpm / 4
    with _private_jack(force=True) as env:
        proc = _start_daemon(model_name, cfg, env, "--api", "jack", "--bpm", f"{bpm:g}",
                             "--set", "midi.client_name=jamd")
        lines: list[str] = []
        origin = 0
        for line in proc.stdout:
            lines.append(line)
            if (m := _READY.search(line)) is not None:
                origin = int(m.group(1))
                break
        if not origin:
            return {"skipped": "jamd run did not get ready: " + "".join(lines[-5:]).strip()}
        arrived: list[tuple[int, str]] = []  # (perf_counter_ns, line): which phase a warning fell in

        def read() -> None:
            for text in proc.stdout:
                lines.append(text)
                arrived.append((time.perf_counter_ns(), text))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rec = _Recorder("jamd:jamd out")
        flood = None
        try:
            time.sleep(3.0)  # the connection settles and the music21 warm-up is over
            t_quiet = time.perf_counter_ns()
            cpu_q0 = _proc_cpu_s(proc.pid)
            t_flood = t_quiet + int(phase_s * 1e9)
            t_end = t_flood + int(phase_s * 1e9)
            flood = subprocess.Popen(
                [sys.executable, "-c", "import sys; from jamd.bench.realtime import flood_client; "
                 "flood_client(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))",
                 "jamd-in:jamd in", str(t_flood), str(t_end)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            time.sleep(max(0.0, (t_flood - time.perf_counter_ns()) / 1e9))
            cpu_q1 = _proc_cpu_s(proc.pid)
            time.sleep(max(0.0, (t_end - time.perf_counter_ns()) / 1e9))
            cpu_f1 = _proc_cpu_s(proc.pid)
            flood_out = flood.communicate(timeout=30)[0].strip()
            time.sleep(0.5)  # the last notes arrive
            alive = proc.poll() is None
            mem = proc_memory_mb(proc.pid) if alive else {}
        finally:
            if flood is not None and flood.poll() is None:
                flood.kill()
            # stop jamd while still recording: its shutdown note-offs and CC 123 count too
            proc.terminate()
            try:
                rc = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            time.sleep(0.2)
            rec.close()
            reader.join(2)
    ons = [t for t, m in rec.events if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0]
    quiet = [t for t in ons if t_quiet <= t < t_flood]
    flooded = [t for t in ons if t_flood <= t < t_end]
    if len(quiet) < 5 or len(flooded) < 5:
        return {"skipped": f"too few notes recorded ({len(quiet)} quiet, {len(flooded)} flooded)",
                "log_tail": "".join(lines[-10:])}
    latency = float(np.median(_signed_offsets(quiet, origin, step_ns)))

    def figures(arrivals: list[int], cpu_s: float) -> dict:
        dev = onset_deviation(arrivals, origin, step_ns, latency)
        return {"note_ons": len(arrivals), "p50_ms": float(np.percentile(dev, 50)),
                "p99_ms": float(np.percentile(dev, 99)), "max_ms": float(dev.max()),
                "median_latency_ms": float(np.median(_signed_offsets(arrivals, origin, step_ns))) / 1e6,
                "cpu_percent_of_one_core": 100 * cpu_s / phase_s}

    log = "".join(lines)
    q, f = figures(quiet, cpu_q1 - cpu_q0), figures(flooded, cpu_f1 - cpu_q1)
    m = re.search(r"flood sent (\d+) in ([\d.]+) s", flood_out)
    sent = int(m.group(1)) if m else 0
    _, sounding = _note_pairs(rec.events)
    return {"phase_s": phase_s, "bpm": bpm, "step_ms": step_ns / 1e6,
            "flood_messages": sent, "flood_rate_per_s": sent / float(m.group(2)) if m else 0.0,
            "quiet": q, "flood": f, "p99_ratio": f["p99_ms"] / max(q["p99_ms"], 1e-6),
            "daemon_alive_after_flood": alive, "daemon_exit_code": rc,
            "rss_mb_after_flood": mem.get("VmRSS"),
            "phrases_from_flood": len(re.findall(r"phrase: \d+ notes", log)),
            "phrase_lines": re.findall(r"phrase: .*", log)[:4],
            "late_warnings": [f"{_phase(t, t_quiet, t_flood, t_end)}: {text.strip()}" for t, text in arrived
                              if re.search(r"sent \d+ event\(s\) late|skipped a note", text)][:8],
            "fell_behind": log.count("generation fell behind"),
            "sender_summary": (re.findall(r"sent \d+ events, .*", log) or [""])[-1],
            "notes_left_sounding": len(sounding)}


def _phase(t: int, t_quiet: int, t_flood: int, t_end: int) -> str:
    if t < t_quiet:
        return "start-up"
    return "quiet" if t < t_flood else "flood" if t < t_end else "after"


def _note_pairs(events) -> tuple[int, set[tuple[int, int]]]:
    """(matched note-ons, notes left sounding) of a recording; CC 123 ends a channel's notes."""
    open_: set[tuple[int, int]] = set()
    n = 0
    for _, m in events:
        kind, ch = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0x90 and len(m) == 3 and m[2] > 0:
            open_.add((ch, m[1]))
        elif kind in (0x80, 0x90) and (ch, m[1]) in open_:
            open_.discard((ch, m[1]))
            n += 1
        elif kind == 0xB0 and m[1] == 123:
            open_ = {s for s in open_ if s[0] != ch}
    return n, open_


def run(args: argparse.Namespace, cfg: Config) -> dict:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    model_name = cfg.model.name  # --set model.name=PATH measures another model
    # 20 s per phase is ~80 note-ons each at 120 BPM; --quick keeps the smoke run short
    flood_s = 6.0 if args.quick else 20.0
    conditions = {"load": bool(args.load), "cores": os.cpu_count(), "spin_us": cfg.clock.spin_us,
                  "python": sys.version.split()[0], "load_average_at_start": os.getloadavg()[0]}
    if getattr(args, "flood", False):  # only the input-flood measurement
        figures = {"conditions": conditions, "flood": flood_figures(model_name, cfg, flood_s)}
        figures["conditions"]["load_average_at_end"] = os.getloadavg()[0]
        _print_table(figures)
        return figures
    n_events = 400 if args.quick else args.events
    model = open_bar_source(model_name, cfg.model)
    busy = _busy_core() if args.load else None
    try:
        sched = scheduling_error(cfg, n_events, model)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    figures = {"conditions": {**conditions, "events": n_events},
               "scheduling_error": sched,
               "answer": answer_latency(cfg, model_name, 6 if args.quick else 24),
               "daemon": daemon_figures(model_name, 5.0 if args.quick else 30.0, cfg),
               "flood": flood_figures(model_name, cfg, flood_s)}
    _print_table(figures)
    return figures


def _print_table(f: dict) -> None:
    rows = []
    s, a, d = f.get("scheduling_error"), f.get("answer"), f.get("daemon")
    if s is not None and a is not None:
        load = "other core busy" if f["conditions"]["load"] else "idle"
        rows += [
            ("Scheduling error p50 / p99 / max", f"{s['events']} events, 120 BPM 16ths, {load}",
             f"{s['p50_ms']:.3f} / {s['p99_ms']:.3f} / {s['max_ms']:.3f} ms"),
            ("Phrase end -> 4-bar answer scheduled (p50 / max)", f"{a['repeats']} phrases of 4 bars",
             f"{a['p50_ms']:.1f} / {a['max_ms']:.1f} ms"),
        ]
    if d is not None and "skipped" in d:
        rows.append(("jamd run figures", "-", d["skipped"]))
    elif d is not None:
        rows += [("Daemon RSS while playing", "continuous mode; private jackd -d dummy, default 2048 ports; "
                  "VmRSS / own (anon + file) / JACK shm / PSS / locked",
                  f"{d['rss_mb']:.0f} / {d['rss_private_mb']:.0f} / {d.get('rss_jack_shm_mb') or 0:.1f} / "
                  f"{d.get('pss_mb') or 0:.0f} / {d.get('vmlck_mb') or 0:.1f} MB"),
                 ("Daemon CPU while playing", f"continuous, {d['measured_s']:.0f} s",
                  f"{d['cpu_percent_of_one_core']:.2f} % of one core"),
                 ("Launch -> ready", "ports open, model loaded", f"{d['launch_to_ready_s']:.2f} s")]
    fl = f.get("flood")
    if fl is not None and "skipped" in fl:
        rows.append(("Output onsets under an input flood", "-", fl["skipped"]))
    elif fl is not None:
        for name, key in (("no input", "quiet"), (f"{fl['flood_rate_per_s']:,.0f} input msgs/s", "flood")):
            x = fl[key]
            rows.append((f"Output onset deviation p50 / p99 / max ({name})",
                         f"jamd run over JACK, {x['note_ons']} note-ons in {fl['phase_s']:.0f} s, "
                         f"CPU {x['cpu_percent_of_one_core']:.1f} %",
                         f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} / {x['max_ms']:.2f} ms "
                         f"(latency {x['median_latency_ms']:.1f} ms)"))
        rows.append(("Flood / no input, p99", "same run", f"{fl['p99_ratio']:.2f} x; jamd "
                     f"{'alive' if fl['daemon_alive_after_flood'] else 'DIED'}, "
                     f"{fl['notes_left_sounding']} notes left sounding"))
    print("| Measure | Conditions | Result |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
