"""`jamd bench --suite realtime --flood`: output timing of `jamd run` without,
then with, an input flood (issue 4 section 8), over a private JACK server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

from ..config import Config
from .daemon_proc import Recorder, private_jack, proc_cpu_s, proc_memory_mb, start_daemon

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
    with private_jack(force=True) as env:
        proc = start_daemon(model_name, cfg, env, "--api", "jack", "--bpm", f"{bpm:g}",
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
        rec = Recorder("jamd:jamd out")
        flood = None
        try:
            time.sleep(3.0)  # the connection settles and the music21 warm-up is over
            t_quiet = time.perf_counter_ns()
            cpu_q0 = proc_cpu_s(proc.pid)
            t_flood = t_quiet + int(phase_s * 1e9)
            t_end = t_flood + int(phase_s * 1e9)
            flood = subprocess.Popen(
                [sys.executable, "-c", "import sys; from jamd.bench.realtime import flood_client; "
                 "flood_client(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))",
                 "jamd-in:jamd in", str(t_flood), str(t_end)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            time.sleep(max(0.0, (t_flood - time.perf_counter_ns()) / 1e9))
            cpu_q1 = proc_cpu_s(proc.pid)
            time.sleep(max(0.0, (t_end - time.perf_counter_ns()) / 1e9))
            cpu_f1 = proc_cpu_s(proc.pid)
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
