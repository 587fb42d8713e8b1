"""`jamd bench --suite realtime --footprint`: how small and quick `jamd run` is (issue 15 section 5).

Each round starts `jamd run` twice over a private JACK server:

* continuous mode: launch -> the "ready" line (as the bench reads it), VmRSS
  right at ready and while playing (after 3 s), CPU while playing;
* call-response mode: a one-bar phrase (8 eighth notes at 120 BPM) is played
  into "jamd in" from the moment jamd is ready and closed with `live.end_cc`;
  the first answer's latency is the time from that closing CC (and from the
  phrase's first note) to jamd's "answer: ..." line, which it logs once the
  key is found and the answer generated and scheduled.  A second phrase,
  played after the first answer, gives the same figure warm.  The key jamd
  names is checked against `jamd.music.keys.detect_key` of what was played.

`--compare PYTHON` runs the same rounds, alternately, with another checkout's
interpreter (a venv whose `jamd` is the baseline), so both sides meet the
same load: e.g. `git worktree add /tmp/base main` and its own venv.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import numpy as np

from ..config import Config
from ..music.keys import detect_key
from ..tokens import Note
from .daemon_proc import private_jack, proc_cpu_s, proc_memory_mb, start_daemon

GOALS = {"rss_ready_mb": 80.0, "rss_playing_mb": 80.0, "launch_to_ready_s": 0.4, "cpu_percent": 1.0}
END_CC = 20  # closes a phrase at once (live.end_cc), so its end is the bench's own timestamp
# Two one-bar phrases: D major, then B-flat minor (pitches; eighth notes at 120 BPM)
PHRASES = ([62, 66, 69, 74, 73, 69, 66, 62], [58, 61, 65, 70, 69, 65, 61, 58])
_ANSWER = re.compile(r"answer: \d+ bar\(s\) from bar \d+, (.+)$")


class _Daemon:
    """A `jamd run` whose output lines are timestamped (perf_counter) as they arrive."""

    def __init__(self, python: str, model_name: str, cfg: Config, env: dict, *extra: str):
        self.t0 = time.perf_counter()
        self.proc = start_daemon(model_name, cfg, env, "--api", "jack", "--set", "midi.client_name=jamd",
                                 *extra, python=python)
        self.lines: list[tuple[float, str]] = []
        self._new = threading.Condition()
        self.eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for text in self.proc.stdout:
            with self._new:
                self.lines.append((time.perf_counter(), text))
                self._new.notify_all()
        with self._new:
            self.eof = True
            self._new.notify_all()

    def wait_for(self, pattern: str, after: float = 0.0, timeout: float = 30.0) -> tuple[float, re.Match] | None:
        """The first line at or after `after` matching `pattern`: (arrival, match); None after
        `timeout` s or once jamd has exited."""
        rx = re.compile(pattern)
        end = time.perf_counter() + timeout
        with self._new:
            while True:
                for t, text in self.lines:
                    if t >= after and (m := rx.search(text)):
                        return t, m
                remaining = end - time.perf_counter()
                if remaining <= 0 or self.eof:
                    return None
                self._new.wait(remaining)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return "".join(text for _, text in self.lines[-6:]).strip()


def _memory(pid: int) -> float | None:
    return proc_memory_mb(pid).get("VmRSS")


def playing(python: str, model_name: str, cfg: Config, env: dict, play_s: float) -> dict:
    d = _Daemon(python, model_name, cfg, env, "--mode", "continuous")
    try:
        hit = d.wait_for(r"ready in")
        if hit is None:
            return {"skipped": "jamd run did not get ready: " + d.tail()}
        out = {"launch_to_ready_s": hit[0] - d.t0, "rss_ready_mb": _memory(d.proc.pid)}
        time.sleep(3.0)  # playing; past any warm-up
        out["rss_playing_3s_mb"] = _memory(d.proc.pid)
        cpu0, w0 = proc_cpu_s(d.proc.pid), time.perf_counter()
        time.sleep(play_s)
        cpu1, w1 = proc_cpu_s(d.proc.pid), time.perf_counter()
        out.update(cpu_percent=100 * (cpu1 - cpu0) / (w1 - w0), measured_s=w1 - w0,
                   rss_playing_mb=_memory(d.proc.pid))
        return out
    finally:
        d.stop()


def _play(out, pitches: list[int], step_s: float = 0.25) -> tuple[float, float]:
    """Eighth notes (at 120 BPM) on channel 1, then CC END_CC; (first note-on, closing CC) times."""
    first = time.perf_counter()
    for i, p in enumerate(pitches):
        out.send_message([0x90, p, 90])
        time.sleep(max(0.0, first + i * step_s + step_s * 0.8 - time.perf_counter()))
        out.send_message([0x80, p, 0])
        time.sleep(max(0.0, first + (i + 1) * step_s - time.perf_counter()))
    end = time.perf_counter()
    out.send_message([0xB0, END_CC, 127])
    return first, end


def first_answer(python: str, model_name: str, cfg: Config, env: dict) -> dict:
    import rtmidi

    d = _Daemon(python, model_name, cfg, env, "--mode", "call-response", "--set", f"live.end_cc={END_CC}")
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-player")
    try:
        hit = d.wait_for(r"ready in")
        if hit is None:
            return {"skipped": "jamd run did not get ready: " + d.tail()}
        ports = player.get_ports()
        player.open_port(next(i for i, n in enumerate(ports) if "jamd in" in n), "play")
        # a JACK connection takes effect at a later process cycle: a note sent at once can be lost
        time.sleep(0.05)
        out: dict = {}
        for n, (name, pitches) in enumerate(zip(("first", "second"), PHRASES, strict=True)):
            first, end = _play(player, pitches)
            answer = d.wait_for(_ANSWER.pattern, after=end, timeout=20.0)
            if answer is None:
                return {"skipped": f"no answer to phrase {n + 1}: " + d.tail()}
            expected = detect_key([Note(2 * i, p, 2) for i, p in enumerate(pitches)]).name
            out[name] = {"end_to_answer_ms": 1000 * (answer[0] - end), "first_note_to_answer_ms":
                         1000 * (answer[0] - first), "key": answer[1].group(1).strip(),
                         "expected_key": expected, "ready_to_first_note_ms": 1000 * (first - hit[0])}
            time.sleep(0.5)
        return out
    finally:
        player.close_port()
        player.delete()
        d.stop()


def footprint(args, cfg: Config) -> dict:
    """`rounds` alternating rounds of both measurements, this checkout and `--compare`'s."""
    sides = {"new": sys.executable}
    if getattr(args, "compare", None):
        sides = {"before": args.compare, **sides}
    rounds = args.rounds
    play_s = 5.0 if args.quick else 20.0
    raw: dict[str, list[dict]] = {side: [] for side in sides}
    with private_jack(force=True) as env:
        for _ in range(rounds):
            for side, python in sides.items():
                one = playing(python, cfg.model.name, cfg, env, play_s)
                one["answer"] = first_answer(python, cfg.model.name, cfg, env)
                raw[side].append(one)
    return {side: _summary(runs) for side, runs in raw.items()} | {"raw": raw, "rounds": rounds, "play_s": play_s}


def _summary(runs: list[dict]) -> dict:
    def med(key: str, sub: str | None = None) -> float | None:
        vals = [(r["answer"].get(sub) or {}).get(key) if sub else r.get(key) for r in runs]
        vals = [v for v in vals if v is not None]
        return float(np.median(vals)) if vals else None

    keys_ok = all(r["answer"].get(s, {}).get("key") == r["answer"].get(s, {}).get("expected_key")
                  for r in runs for s in ("first", "second"))
    return {"launch_to_ready_s": med("launch_to_ready_s"), "rss_ready_mb": med("rss_ready_mb"),
            "rss_playing_mb": med("rss_playing_mb"), "cpu_percent": med("cpu_percent"),
            "first_end_to_answer_ms": med("end_to_answer_ms", "first"),
            "first_note_to_answer_ms": med("first_note_to_answer_ms", "first"),
            "second_end_to_answer_ms": med("end_to_answer_ms", "second"),
            "keys_as_expected": keys_ok,
            "max": {k: max((r.get(k) or 0) for r in runs)
                    for k in ("launch_to_ready_s", "rss_playing_mb", "cpu_percent")}}


def print_table(f: dict) -> None:
    sides = [s for s in ("before", "new") if s in f]
    rows = [("Launch -> ready (s)", "launch_to_ready_s", "{:.2f}", GOALS["launch_to_ready_s"]),
            ("VmRSS at ready (MB)", "rss_ready_mb", "{:.0f}", GOALS["rss_ready_mb"]),
            ("VmRSS while playing (MB)", "rss_playing_mb", "{:.0f}", GOALS["rss_playing_mb"]),
            (f"CPU while playing, % of one core ({f['play_s']:.0f} s)", "cpu_percent", "{:.2f}", GOALS["cpu_percent"]),
            ("First phrase: end -> answer (ms)", "first_end_to_answer_ms", "{:.0f}", None),
            ("First phrase: first note -> answer (ms)", "first_note_to_answer_ms", "{:.0f}", None),
            ("Second phrase: end -> answer (ms)", "second_end_to_answer_ms", "{:.0f}", None)]
    print(f"median of {f['rounds']} round(s), max in brackets where it matters")
    print("| Measure | Goal | " + " | ".join(sides) + " |\n|---|---|" + "---|" * len(sides))
    for name, key, fmt, goal in rows:
        cells = []
        for s in sides:
            v = f[s].get(key)
            text = "-" if v is None else fmt.format(v)
            if key in f[s]["max"] and v is not None:
                text += f" ({fmt.format(f[s]['max'][key])})"
            cells.append(text)
        print(f"| {name} | {'-' if goal is None else '<= ' + str(goal)} | " + " | ".join(cells) + " |")
    print("| Keys named as detect_key finds them | all | " + " | ".join(str(f[s]["keys_as_expected"]) for s in sides)
          + " |")
