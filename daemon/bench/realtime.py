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
import os
import subprocess
import sys
import threading
import time

import numpy as np

from ..config import Config
from ..inference.bar_source import open_bar_source
from ..midi.outputs import MemoryOutput
from ..midi.realtime import ask_realtime
from ..sync.clock import Clock
from ..sync.scheduler import Scheduler
from ..tokens import Note
from .daemon_proc import private_jack, proc_cpu_s, proc_memory_mb, start_daemon
from .flood import flood_figures
from .footprint import footprint
from .footprint import print_table as print_footprint

SWITCH_INTERVAL_S = 0.0005  # as in `jamd run`


def _busy_core() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


class _NullOutput(MemoryOutput):
    """Counts instead of storing: 10,000 events need no list."""

    def send(self, message) -> None:
        self.count = getattr(self, "count", 0) + 1


def scheduling_error(cfg: Config, n_events: int, model=None, adaptive_spin: bool = True) -> dict:
    clock = Clock(120.0, 4, 4)
    sch = Scheduler(clock, _NullOutput(), cfg.clock.spin_us, record_errors=True,
                    realtime_priority=cfg.clock.realtime_priority, adaptive_spin=adaptive_spin)
    cpu0, wall0 = time.process_time(), time.perf_counter()
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
    cpu_percent = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    err = np.array(sch.stats.errors_ns[:n_events], dtype=np.float64) / 1e6
    return {"events": int(err.size), "sched_fifo": sch.realtime, "adaptive_spin": adaptive_spin,
            "spin_us_at_end": sch.spin.ns / 1000, "cpu_percent_of_one_core": cpu_percent,
            "p50_ms": float(np.percentile(err, 50)),
            "p99_ms": float(np.percentile(err, 99)), "max_ms": float(err.max()),
            "min_ms": float(err.min()), "late_over_1ms": int((err > 1).sum())}


def answer_latency(cfg: Config, model_name: str, repeats: int) -> dict:
    """Phrase end -> whole 4-bar answer scheduled, over `repeats` phrases in 12 keys."""
    from ..live.engine import Engine
    from ..live.phrase import Phrase
    from ..music.keys import detect_key

    detect_key([Note(0, 60, 4)])  # the daemon warms the key finder up at start too
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
        engine.phrase_done(phrase, t0)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        sch.panic()
    arr = np.array(times)
    return {"repeats": repeats, "p50_ms": float(np.median(arr)), "max_ms": float(arr.max())}


def daemon_figures(model_name: str, play_s: float, cfg: Config, *extra: str) -> dict:
    """Launch `jamd run` (continuous, with the `extra` arguments), time it to ready, then RSS
    and CPU while playing."""
    if not sys.platform.startswith("linux"):
        return {"skipped": "needs Linux /proc"}
    with private_jack() as env:
        t0 = time.perf_counter()
        proc = start_daemon(model_name, cfg, env, *extra)
        ready = None
        for line in proc.stdout:
            if "ready in" in line:
                ready = time.perf_counter() - t0
                break
        if ready is None:
            return {"skipped": "jamd run did not get ready (no MIDI system?)"}
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        time.sleep(3.0)  # past the engine's warm-up
        cpu0, w0 = proc_cpu_s(proc.pid), time.perf_counter()
        time.sleep(play_s)
        cpu1, w1 = proc_cpu_s(proc.pid), time.perf_counter()
        mem = proc_memory_mb(proc.pid)
        proc.terminate()
        proc.wait(10)
        return {"launch_to_ready_s": ready, "rss_mb": mem.get("VmRSS"),
                "rss_private_mb": mem.get("RssAnon", 0) + mem.get("RssFile", 0),
                "rss_jack_shm_mb": mem.get("RssShmem"), "pss_mb": mem.get("Pss"),
                "pss_jack_shm_mb": mem.get("Pss_Shmem"), "locked_mb": mem.get("Locked"),
                "vmlck_mb": mem.get("VmLck"), "root": os.geteuid() == 0,
                "cpu_percent_of_one_core": 100 * (cpu1 - cpu0) / (w1 - w0), "measured_s": w1 - w0}


def run(args: argparse.Namespace, cfg: Config) -> dict:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    model_name = cfg.model.name  # --set model.name=PATH measures another model
    # 20 s per phase is ~80 note-ons each at 120 BPM; --quick keeps the smoke run short
    flood_s = 6.0 if args.quick else 20.0
    conditions = {"load": bool(args.load), "cores": os.cpu_count(), "spin_us": cfg.clock.spin_us,
                  "python": sys.version.split()[0], "load_average_at_start": os.getloadavg()[0]}
    if getattr(args, "footprint", False):  # only start-up, memory, CPU and the first answer
        n = 400 if args.quick else 1000
        model = open_bar_source(model_name, cfg.model)
        # the sender's timing with the 1 ms spin of before and with the adaptive one, in turn
        spin = {"fixed": scheduling_error(cfg, n, model, adaptive_spin=False),
                "adaptive": scheduling_error(cfg, n, model, adaptive_spin=True)}
        figures = {"conditions": conditions, "scheduling_by_spin": spin, "footprint": footprint(args, cfg)}
        figures["conditions"]["load_average_at_end"] = os.getloadavg()[0]
        print_footprint(figures["footprint"])
        for name, x in spin.items():
            print(f"| Scheduling error p50 / p99 / max, {name} spin ({x['events']} events, spin "
                  f"{x['spin_us_at_end']:.0f} us at the end) | p99 <= 0.5 ms | {x['p50_ms']:.3f} / "
                  f"{x['p99_ms']:.3f} / {x['max_ms']:.3f} ms; bench process CPU {x['cpu_percent_of_one_core']:.2f} % |")
        return figures
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
