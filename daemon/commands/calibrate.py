"""`jamd calibrate`: measure the MIDI round trip through a loop and suggest `output.offset_ms`.

jamd's ports are opened as `jamd run` opens them (`midi.*`, `--api`).  Until a
loop answers, a probe note (`PROBE_PITCH`) goes out every `PROBE_EVERY_S`, for
up to `--timeout-s`: that leaves time to make the loop once jamd's ports
exist.  Then `--notes` test notes, one pitch each (`PITCH_LO` up), go out
`SPACING_S` apart on output.channel, each ended after `GATE_S`.  A send is
timed with `perf_counter_ns` once the send call returns, an arrival with the
input's own stamp (`jamd.midi.input.ArrivalStamper`: taken where the MIDI
system received it, before any wait for the GIL).  An echo is matched to its
send by pitch alone (a DAW may move it to its track's channel); a note-on of a
pitch not sent, a second echo of one pitch and one that came before its send
are ignored.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import config as config_mod
from ..config import Config
from ..midi.outputs import NOTE_OFF, NOTE_ON
from ..midi.ports import DISPLAY, open_ports
from . import options

log = logging.getLogger("jamd.calibrate")

HELP = "measure the MIDI round trip through a loop and suggest output.offset_ms"
EXAMPLE = "jamd calibrate --api jack"
DESCRIPTION = """\
Send test notes out of jamd's output and time them coming back on its input
through a loop, then print the round trip (median and spread) and the
output.offset_ms to use with `jamd run`.

Start `jamd calibrate`, then make the loop within --timeout-s (jamd sends a
probe note until something answers):
  JACK     jack_connect "jamd:jamd out" "jamd-in:jamd in"
  a DAW    a MIDI track with its input from "jamd out", monitoring (input
           echo) on, and its output to "jamd in"; in the DAW the loop includes
           its MIDI input and output handling, which is what jamd must cover
  a cable  the output of jamd's MIDI interface into its input; set
           midi.connect_output and midi.connect_input to that interface
The ports are those of `jamd run`: midi.client_name, midi.output_port,
midi.input_port, or the existing ports named by midi.connect_output and
midi.connect_input (`jamd ports` lists them).

The suggestion is half the median round trip: the way out to the DAW is
assumed to take as long as the way back. output.offset_ms sends every note
that much early, so that it lands on the DAW's grid.
Exit status: 0 with a measurement, 1 when nothing came back."""

PITCH_LO = 36  # test notes: PITCH_LO, PITCH_LO + 1, ... (C2 up)
MAX_NOTES = 60  # up to B6
PROBE_PITCH = 100  # apart from every test note
VELOCITY = 99
SPACING_S = 0.25  # between test notes: a round trip longer than this is still matched (by pitch)
GATE_S = 0.1  # each note's length
PROBE_EVERY_S = 0.5
SETTLE_S = 0.25  # after the loop answers: probes still under way come back before the first test note
LATE_S = 1.0  # after the last test note: how long jamd still waits for echoes
EARLY_NS = 1_000_000  # an arrival stamped up to 1 ms before its send still counts (clock rounding)
OFFSET_LIMIT_MS = 500.0  # output.offset_ms's own bounds
ASSUMPTION = ("output.offset_ms sends every note this much early, so that it lands on the DAW's grid; "
              "it is half the median round trip, assuming the way out to the DAW takes as long as the way back")


@dataclass(frozen=True)
class Report:
    """The figures of one calibration (milliseconds); `rtt_ms` in the order the notes were sent."""

    sent: int
    rtt_ms: tuple[float, ...]

    @property
    def returned(self) -> int:
        return len(self.rtt_ms)

    def figures(self) -> dict[str, float | int | None]:
        """sent, returned, lost, then median/min/p25/p75/p90/max in ms and the suggested offset (None:
        nothing came back).  Percentiles are numpy's linear interpolation."""
        out: dict[str, float | int | None] = {"sent": self.sent, "returned": self.returned,
                                              "lost": self.sent - self.returned}
        rtt = np.asarray(self.rtt_ms, dtype=float)
        for name, q in (("median", 50), ("min", 0), ("p25", 25), ("p75", 75), ("p90", 90), ("max", 100)):
            out[f"{name}_ms"] = round(float(np.percentile(rtt, q)), 3) if rtt.size else None
        out["suggested_offset_ms"] = suggest_offset_ms(out["median_ms"]) if rtt.size else None
        return out


def suggest_offset_ms(median_rtt_ms: float) -> float:
    """output.offset_ms for a round trip of `median_rtt_ms`: half of it (the way out), to 0.1 ms,
    within output.offset_ms's bounds (±500 ms)."""
    return round(min(OFFSET_LIMIT_MS, max(-OFFSET_LIMIT_MS, median_rtt_ms / 2)), 1)


def match(sends: Mapping[int, int], arrivals: Iterable[tuple[int, Sequence[int]]]) -> dict[int, float]:
    """Round trips in ms by pitch.  `sends`: {pitch: send time, ns}; `arrivals`: (arrival time ns,
    message) in arrival order.  Only the first note-on (velocity > 0, any channel) of a sent pitch
    at or after its send (less `EARLY_NS`) counts; everything else is ignored."""
    rtt: dict[int, float] = {}
    for t_ns, msg in arrivals:
        if len(msg) < 3 or msg[0] & 0xF0 != NOTE_ON or msg[2] == 0:
            continue
        pitch = msg[1]
        sent = sends.get(pitch)
        if sent is None or pitch in rtt or t_ns < sent - EARLY_NS:
            continue
        rtt[pitch] = max(0, t_ns - sent) / 1e6
    return rtt


def report(sends: Mapping[int, int], arrivals: Iterable[tuple[int, Sequence[int]]]) -> Report:
    """`match`ed round trips as a `Report`, in the order of the sends."""
    rtt = match(sends, arrivals)
    order = sorted(sends, key=sends.__getitem__)
    return Report(len(sends), tuple(rtt[p] for p in order if p in rtt))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--notes", type=int, default=16, metavar="N",
                   help=f"test notes to send, 1-{MAX_NOTES} (default: 16, {SPACING_S * 1000:g} ms apart)")
    p.add_argument("--timeout-s", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the loop to answer the probe note (default: 10)")
    p.add_argument("--api", choices=config_mod.MIDI_APIS, help="MIDI system (default: midi.api)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


class _Inbox:
    """What came in, as (arrival ns, message); `on_message` runs on the MIDI system's thread and only enqueues."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.arrivals: list[tuple[int, list[int]]] = []

    def on_message(self, message: list[int], t_ns: int) -> None:
        self._q.put((t_ns, message))

    def collect_until(self, deadline_ns: int, done=lambda _t, _m: False) -> bool:
        """Take arrivals until `deadline_ns` (perf_counter) or until `done(t, msg)` holds for one."""
        while True:
            left = (deadline_ns - time.perf_counter_ns()) / 1e9
            if left <= 0:
                return False
            try:
                t_ns, msg = self._q.get(timeout=left)
            except queue.Empty:
                return False
            self.arrivals.append((t_ns, msg))
            if done(t_ns, msg):
                return True


def _note(status: int, channel: int, pitch: int, velocity: int) -> list[int]:
    return [status | (channel - 1), pitch, velocity]


def _wait_for_loop(output, inbox: _Inbox, channel: int, timeout_s: float) -> bool:
    """Send the probe note every PROBE_EVERY_S until it comes back or `timeout_s` passes."""
    end = time.perf_counter_ns() + int(timeout_s * 1e9)

    def is_probe(_t: int, msg: Sequence[int]) -> bool:
        return len(msg) >= 3 and msg[0] & 0xF0 == NOTE_ON and msg[1] == PROBE_PITCH and msg[2] > 0

    while time.perf_counter_ns() < end:
        t0 = time.perf_counter_ns()
        output.send(_note(NOTE_ON, channel, PROBE_PITCH, VELOCITY))
        found = inbox.collect_until(min(end, t0 + int(GATE_S * 1e9)), is_probe)
        output.send(_note(NOTE_OFF, channel, PROBE_PITCH, 0))
        if found or inbox.collect_until(min(end, t0 + int(PROBE_EVERY_S * 1e9)), is_probe):
            return True
    return False


def _measure(output, inbox: _Inbox, channel: int, n: int) -> dict[int, int]:
    """Send the `n` test notes; their send times (ns) by pitch.  Arrivals gather in `inbox`."""
    inbox.collect_until(time.perf_counter_ns() + int(SETTLE_S * 1e9))
    inbox.arrivals.clear()  # probe echoes and the like: nothing to match
    sends: dict[int, int] = {}
    start = time.perf_counter_ns()
    for i in range(n):
        pitch = PITCH_LO + i
        inbox.collect_until(start + int(i * SPACING_S * 1e9))
        output.send(_note(NOTE_ON, channel, pitch, VELOCITY))
        sends[pitch] = time.perf_counter_ns()  # once the send call has returned
        inbox.collect_until(sends[pitch] + int(GATE_S * 1e9))
        output.send(_note(NOTE_OFF, channel, pitch, 0))
    left = set(sends)

    def all_back(_t: int, msg: Sequence[int]) -> bool:
        if len(msg) >= 3 and msg[0] & 0xF0 == NOTE_ON and msg[2] > 0:
            left.discard(msg[1])
        return not left

    left -= set(match(sends, inbox.arrivals))
    if left:
        inbox.collect_until(time.perf_counter_ns() + int(LATE_S * 1e9), all_back)
    return sends


def no_loop_line(api: str, out_name: str, in_name: str, timeout_s: float) -> str:
    """The one line for a loop that never answered: what to connect."""
    how = (f'jack_connect "{out_name}" "{in_name}"' if api == "jack" else
           f"a DAW MIDI track with input {out_name!r}, monitoring on, output {in_name!r}, or a cable")
    return (f"no test note came back on {in_name!r} within {timeout_s:g} s: loop jamd's output "
            f"{out_name!r} back to its input ({how}) within --timeout-s of starting jamd calibrate")


def _print_text(rep: Report, api: str, out_name: str, in_name: str) -> None:
    f = rep.figures()
    print(f"{DISPLAY[api]}: {f['returned']} of {f['sent']} test notes came back from {out_name!r} to {in_name!r}")
    print(f"round trip: median {f['median_ms']:.2f} ms; min {f['min_ms']:.2f}, p25 {f['p25_ms']:.2f}, "
          f"p75 {f['p75_ms']:.2f}, p90 {f['p90_ms']:.2f}, max {f['max_ms']:.2f} ms")
    print(f"suggested output.offset_ms: {f['suggested_offset_ms']:g}")
    print(f"  {ASSUMPTION}.")
    print("  Through a cable or a direct JACK connection it is the MIDI path alone; through a DAW track it "
          "includes the DAW's MIDI handling.")
    print(f"  use: jamd run --set output.offset_ms={f['suggested_offset_ms']:g}")


def run(args: argparse.Namespace, cfg: Config) -> int:
    options.check_number(args.notes, "--notes", 1, MAX_NOTES)
    options.check_number(args.timeout_s, "--timeout-s", 0.1, 3600.0)
    cfg = options.apply(cfg, {"--api": ("midi.api", args.api)})
    inbox = _Inbox()
    ports = open_ports(cfg.midi, inbox.on_message)
    try:
        channel = cfg.output.channel
        if not args.json:
            log.info("%s: sending a probe note from %r; waiting up to %g s for it on %r",
                     DISPLAY[ports.api], ports.output_name, args.timeout_s, ports.input_name)
        looped = _wait_for_loop(ports.output, inbox, channel, args.timeout_s)
        rep = report(_measure(ports.output, inbox, channel, args.notes), inbox.arrivals) if looped else None
    finally:
        ports.close()
    base = {"api": ports.api, "output": ports.output_name, "input": ports.input_name}
    if rep is None or rep.returned == 0:
        line = (no_loop_line(ports.api, ports.output_name, ports.input_name, args.timeout_s) if rep is None else
                f"the loop answered the probe but none of the {args.notes} test notes came back on "
                f"{ports.input_name!r}: does it pass every pitch ({PITCH_LO}-{PITCH_LO + args.notes - 1})?")
        if args.json:
            print(json.dumps({**base, "sent": args.notes if rep else 0, "returned": 0, "error": line}, indent=2))
        print(f"jamd: {line}", file=sys.stderr)
        return 1
    if args.json:
        f = rep.figures()
        print(json.dumps({**base, **f, "rtt_ms": [round(x, 3) for x in rep.rtt_ms],
                          "set": f"--set output.offset_ms={f['suggested_offset_ms']:g}",
                          "assumption": ASSUMPTION}, indent=2))
    else:
        _print_text(rep, ports.api, ports.output_name, ports.input_name)
    return 0
