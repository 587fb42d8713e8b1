"""`jamd bench --suite harmony`: the figures of docs/BENCHMARKS.md, "Chords and bass".

* The harmony step on CPU at batch 1: the bare ONNX call (`HarmonyModel.step`)
  and a whole beat's decision (`Harmonizer.decide`: the step plus the chord's
  score against the melody), median and p99 over `--steps` calls.
* `jamd run` in continuous mode with the harmony off and on
  (``harmony.under_melody``), alternated in one run (off, on, off, on): RSS and
  CPU while playing, as the realtime suite measures them.
* `jamd run --mode accompany` through JACK with a player playing a tune over
  and over: the onset error of the chord notes at a recorder (arrival minus
  the beat), median / p99 / max.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time

import numpy as np

from ..config import Config
from ..inference.forecast import MelodyForecast
from ..inference.harmony import Harmonizer, HarmonyModel
from ..music import chords
from ..tokens import Note
from .daemon_proc import Recorder, private_jack, proc_cpu_s, start_daemon
from .realtime import daemon_figures

_ORIGIN = re.compile(r"clock origin (\d+) ns")
# A real folk line in G (the first bars of music21's essenFolksong/erk10.abc tune 528, in
# quarter notes), played in a loop by the accompany bench's player.
TUNE = [62, 67, 64, 69, 66, 62, 67, 71, 62, 67, 62, 69, 66, 62, 67, 62]


def step_latency(cfg: Config, n: int) -> dict:
    model = HarmonyModel.load(cfg.harmony.model, cfg.model)
    rng = np.random.default_rng(0)
    xs = [chords.step_input(chords.melody_features([60 + int(rng.integers(12))] * 4), int(rng.integers(1, 49)),
                            int(rng.integers(12)), None, i % 4) for i in range(64)]
    for x in xs:  # warm-up
        model.step(x)
    bare = []
    for i in range(n):
        t = time.perf_counter_ns()
        model.step(xs[i % 64])
        bare.append(time.perf_counter_ns() - t)
    harmonizer = Harmonizer(model, cfg.harmony.temperature, cfg.harmony.melody_fit, rng)
    decide = []
    for i in range(n):
        prev = xs[i % 64][:chords.MELODY_FEATURES]
        t = time.perf_counter_ns()
        harmonizer.decide(prev, i % 4, change=i % 2 == 0)
        decide.append(time.perf_counter_ns() - t)
    forecast = MelodyForecast.load(cfg.harmony.forecast_model or "lstm", cfg.model, cfg.harmony.forecast_rollouts, rng)
    forecast.hear(["67", "_", "_", "_", "72", "_", "69", "_"])
    guess = []
    for i in range(max(1, n // 10)):  # a chord change's online work: the player's next half bar guessed
        forecast.hear([str(60 + i % 12), "_", "_", "_"])
        t = time.perf_counter_ns()
        span = forecast.onsets(8, 4)
        harmonizer.decide(xs[i % 64][:chords.MELODY_FEATURES], 0, change=True, span=span)
        guess.append(time.perf_counter_ns() - t)
    return {"calls": n, **_stats("step", bare, 1e3), **_stats("decide", decide, 1e3),
            "forecast_calls": len(guess), "forecast_rollouts": forecast.rollouts, **_stats("forecast_ms", guess, 1e6)}


def _stats(name: str, values_ns, scale: float) -> dict:
    a = np.asarray(values_ns, np.float64) / scale
    return {f"{name}_p50": float(np.median(a)), f"{name}_p99": float(np.percentile(a, 99)),
            f"{name}_max": float(a.max())}


def daemon_on_off(cfg: Config, play_s: float, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(rounds):
        for name, value in (("off", "false"), ("on", "true")):
            runs[name].append(daemon_figures(cfg.model.name, play_s, cfg, "--set", f"harmony.under_melody={value}"))
    out = {}
    for name, figs in runs.items():
        if any("skipped" in f for f in figs):
            return {"skipped": next(f["skipped"] for f in figs if "skipped" in f)}
        out[name] = {"rss_mb": float(np.median([f["rss_mb"] for f in figs])),
                     "rss_private_mb": float(np.median([f["rss_private_mb"] for f in figs])),
                     "cpu_percent_of_one_core": float(np.median([f["cpu_percent_of_one_core"] for f in figs])),
                     "launch_to_ready_s": float(np.median([f["launch_to_ready_s"] for f in figs])),
                     "each_cpu_percent": [round(f["cpu_percent_of_one_core"], 2) for f in figs]}
    return {"rounds": rounds, "play_s": play_s, **out}


def accompany_onsets(cfg: Config, bars: int) -> dict:
    """Chord note-on arrival at a recorder minus its beat, with a player looping `TUNE`."""
    if not sys.platform.startswith("linux"):
        return {"skipped": "needs Linux and JACK"}
    import rtmidi

    with private_jack(force=True) as env:
        proc = start_daemon(cfg.model.name, cfg, env, "--mode", "accompany", "--api", "jack")
        origin = None
        for line in proc.stdout:
            if (m := _ORIGIN.search(line)) is not None:
                origin = int(m.group(1))
                break
        if origin is None:
            proc.kill()
            return {"skipped": "jamd run did not get ready (no JACK?)"}
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        rec = Recorder("jamd out")
        player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-player")
        ports = player.get_ports()
        player.open_port(next(i for i, p in enumerate(ports) if "jamd in" in p), "play")
        try:
            time.sleep(1.5)  # the connections become live
            cpu0, w0 = proc_cpu_s(proc.pid), time.perf_counter()
            beat_ns = 60 * 10**9 // int(cfg.clock.bpm)
            first = (time.perf_counter_ns() - origin) // (4 * beat_ns) + 1
            notes = [Note(4 * i, TUNE[i % len(TUNE)], 4) for i in range(4 * bars)]
            for n in notes:
                t_on = origin + first * 4 * beat_ns + n.start * beat_ns // 4
                _sleep_until(t_on)
                player.send_message([0x90, n.pitch, 90])
                _sleep_until(t_on + beat_ns - 20_000_000)
                player.send_message([0x80, n.pitch, 0])
            cpu = 100 * (proc_cpu_s(proc.pid) - cpu0) / (time.perf_counter() - w0)
            time.sleep(2 * 4 * beat_ns / 1e9)
        finally:
            player.close_port()
            rec.close()
            proc.terminate()
            proc.wait(10)
    chord_ch = cfg.harmony.chords_channel - 1
    errors = [(t - origin + beat_ns // 2) % beat_ns - beat_ns // 2 for t, m in rec.events
              if m[0] == (0x90 | chord_ch) and m[2] > 0]
    if not errors:
        return {"skipped": "no chord heard"}
    return {"bars": bars, "chord_notes": len(errors), "bpm": cfg.clock.bpm, "cpu_percent_of_one_core": cpu,
            **_stats("onset_ms", errors, 1e6)}


def _sleep_until(t_ns: int) -> None:
    while (left := t_ns - time.perf_counter_ns()) > 0:
        time.sleep(min(left / 1e9, 0.01))


def run(args: argparse.Namespace, cfg: Config) -> dict:
    conditions = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                  "load_average_at_start": os.getloadavg()[0]}
    figures = {"conditions": conditions,
               "step": step_latency(cfg, 500 if args.quick else args.steps),
               "daemon": daemon_on_off(cfg, 5.0 if args.quick else 20.0, 1 if args.quick else 2),
               "accompany": accompany_onsets(cfg, 4 if args.quick else 16)}
    figures["conditions"]["load_average_at_end"] = os.getloadavg()[0]
    _print_table(figures)
    return figures


def _print_table(f: dict) -> None:
    s, d, a = f["step"], f["daemon"], f["accompany"]
    rows = [("Harmony step (ONNX call), batch 1, CPU", f"{s['calls']} calls",
             f"{s['step_p50']:.1f} / {s['step_p99']:.1f} µs (p50 / p99)"),
            ("Beat decision (step + chord score)", f"{s['calls']} calls",
             f"{s['decide_p50']:.1f} / {s['decide_p99']:.1f} µs (p50 / p99)"),
            ("Online chord change: forecast + decision", f"{s['forecast_calls']} calls, "
             f"{s['forecast_rollouts']} rollouts of a half bar", f"{s['forecast_ms_p50']:.2f} / "
             f"{s['forecast_ms_p99']:.2f} ms (p50 / p99)")]
    if "skipped" in d:
        rows.append(("jamd run, harmony off vs on", "-", d["skipped"]))
    else:
        for name in ("off", "on"):
            rows.append((f"jamd run continuous, harmony {name}", f"{d['rounds']} runs of {d['play_s']:.0f} s",
                         f"RSS {d[name]['rss_mb']:.0f} MB, CPU {d[name]['cpu_percent_of_one_core']:.2f} % "
                         f"of one core {d[name]['each_cpu_percent']}"))
    if "skipped" in a:
        rows.append(("Chord onsets at the recorder", "-", a["skipped"]))
    else:
        rows.append(("Chord onsets at the recorder (accompany, JACK)",
                     f"{a['chord_notes']} chord notes, {a['bars']} bars at {a['bpm']:.0f} BPM",
                     f"{a['onset_ms_p50']:.2f} / {a['onset_ms_p99']:.2f} / {a['onset_ms_max']:.2f} ms "
                     "(p50 / p99 / max)"))
        rows.append(("jamd run accompany, player playing", f"{a['bars']} bars, chords and bass",
                     f"CPU {a['cpu_percent_of_one_core']:.2f} % of one core"))
    print("| Measure | Conditions | Result |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
