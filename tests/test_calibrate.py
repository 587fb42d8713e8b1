"""`jamd calibrate`: matching echoes to sends and the figures (exact inputs), then over JACK with a loop."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from jamd.cli import main
from jamd.commands import calibrate
from jamd.commands.calibrate import EARLY_NS, Report, match, report, suggest_offset_ms

MS = 1_000_000


# ---------------------------------------------------------------- exact inputs

def test_match_takes_the_first_note_on_of_each_sent_pitch_after_its_send():
    sends = {36: 100 * MS, 37: 350 * MS, 38: 600 * MS}
    arrivals = [
        (90 * MS, [0x90, 37, 99]),           # pitch 37 before its send: not its echo
        (104 * MS, [0x90, 36, 99]),          # 36: 4 ms
        (105 * MS, [0x90, 60, 99]),          # never sent: a keyboard, ignored
        (106 * MS, [0x80, 36, 0]),           # note-off: ignored
        (200 * MS, [0x90, 36, 99]),          # a second echo of 36: ignored
        (352 * MS, [0x90, 37, 0]),           # note-on velocity 0 is a note-off: ignored
        (357 * MS, [0x93, 37, 99]),          # 37 on channel 4 (a DAW track's): 7 ms
        (601 * MS, [0xB0, 38, 99]),          # a CC numbered like a pitch: ignored
    ]
    assert match(sends, arrivals) == {36: 4.0, 37: 7.0}


def test_match_allows_stamp_rounding_just_before_the_send():
    sends = {40: 10 * MS}
    assert match(sends, [(10 * MS - EARLY_NS // 2, [0x90, 40, 99])]) == {40: 0.0}
    assert match(sends, [(10 * MS - EARLY_NS - 1, [0x90, 40, 99])]) == {}


def test_report_orders_by_send_and_counts_the_lost():
    sends = {38: 3 * MS, 36: 1 * MS, 37: 2 * MS}
    rep = report(sends, [(13 * MS, [0x90, 38, 99]), (6 * MS, [0x90, 36, 99])])
    assert rep == Report(sent=3, rtt_ms=(5.0, 10.0))
    f = rep.figures()
    assert (f["sent"], f["returned"], f["lost"]) == (3, 2, 1)


def test_figures_with_exact_round_trips():
    f = Report(sent=5, rtt_ms=(1.0, 2.0, 3.0, 4.0, 10.0)).figures()
    assert f == {"sent": 5, "returned": 5, "lost": 0, "median_ms": 3.0, "min_ms": 1.0, "p25_ms": 2.0,
                 "p75_ms": 4.0, "p90_ms": 7.6, "max_ms": 10.0, "suggested_offset_ms": 1.5}


def test_figures_when_nothing_came_back():
    f = Report(sent=4, rtt_ms=()).figures()
    assert f["returned"] == 0 and f["lost"] == 4
    assert f["median_ms"] is None and f["suggested_offset_ms"] is None


@pytest.mark.parametrize(("median", "offset"), [(10.0, 5.0), (2.66, 1.3), (0.0, 0.0), (1500.0, 500.0)])
def test_suggested_offset_is_half_the_round_trip_within_bounds(median, offset):
    assert suggest_offset_ms(median) == offset


def test_no_loop_line_names_what_to_connect():
    line = calibrate.no_loop_line("jack", "jamd:jamd out", "jamd-in:jamd in", 2.0)
    assert 'jack_connect "jamd:jamd out" "jamd-in:jamd in"' in line and "2 s" in line
    assert "monitoring on" in calibrate.no_loop_line("alsa", "jamd:jamd out", "jamd:jamd in", 10.0)


@pytest.mark.parametrize(("argv", "text"), [(["--notes", "0"], "--notes must be between 1 and 60"),
                                            (["--timeout-s", "nan"], "--timeout-s must be a finite number")])
def test_bad_options_cost_one_line(argv, text, capsys):
    assert main(["calibrate", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and text in err[0]


def test_help_teaches_the_loops(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    out = capsys.readouterr().out
    assert 'jack_connect "jamd:jamd out" "jamd-in:jamd in"' in out and "monitoring" in out


# ---------------------------------------------------------------- over JACK

class Echo:
    """A JACK client that plays every note it gets back out `delay_s` later: ports "echo-in:in" and
    "echo-out:out", for jamd's midi.connect_output / midi.connect_input."""

    def __init__(self, delay_s: float):
        import rtmidi

        from jamd.midi.input import ArrivalStamper

        self.delay_ns = int(delay_s * 1e9)
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="echo-out")
        self.out.open_virtual_port("out")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="echo-in")
        self.stamper = ArrivalStamper()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        # the callback runs in JACK's process cycle: it only enqueues, a thread sends later
        self.inp.set_callback(lambda ev, _d: self._q.put((self.stamper.stamp(ev[1], time.perf_counter_ns()), ev[0])))
        self.inp.open_virtual_port("in")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            t_ns, msg = item
            while (left := t_ns + self.delay_ns - time.perf_counter_ns()) > 0:
                time.sleep(left / 1e9)
            self.out.send_message(msg)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(2)
        from jamd.midi.closing import close_midi_in

        close_midi_in(self.inp)
        self.out.close_port()
        self.out.delete()


def _calibrate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "jamd.cli", "calibrate", "--api", "jack", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _through_echo(delay_s: float, notes: int) -> dict:
    echo = Echo(delay_s)
    try:
        r = _calibrate("--notes", str(notes), "--json", "--set", "midi.connect_output=echo-in:in",
                       "--set", "midi.connect_input=echo-out:out")
    finally:
        echo.close()
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.jack
@pytest.mark.slow
def test_a_known_delay_in_the_loop_adds_to_the_measured_round_trip(jack_server):
    notes = 12
    direct, delayed = _through_echo(0.0, notes), _through_echo(0.020, notes)
    for f in (direct, delayed):
        # a lost note or two is the rig's (a non-realtime server on a busy machine)
        assert f["returned"] >= notes - 2 and f["sent"] == notes and len(f["rtt_ms"]) == f["returned"]
        assert f["min_ms"] <= f["p25_ms"] <= f["median_ms"] <= f["p75_ms"] <= f["p90_ms"] <= f["max_ms"]
        assert f["suggested_offset_ms"] == round(f["median_ms"] / 2, 1)
        assert f["set"] == f"--set output.offset_ms={f['suggested_offset_ms']:g}"
        assert f["output"] == "echo-in:in" and f["input"] == "echo-out:out"
    # The echo adds 20 ms.  JACK passes MIDI on at period boundaries (5.3 ms here), so what it adds
    # comes out as whole periods, one either way (measured on the project's VM: 16.1 ms, 3 periods),
    # and a late wake-up on a loaded machine may cost one more.
    assert 20 - 8 <= delayed["median_ms"] - direct["median_ms"] <= 20 + 8, (direct, delayed)
    assert direct["median_ms"] < 30, direct


@pytest.mark.jack
@pytest.mark.slow
def test_a_jack_connection_made_after_start_is_found(jack_server):
    from jack_rig import patch

    rtmidi = pytest.importorskip("rtmidi")
    cmd = [sys.executable, "-m", "jamd.cli", "calibrate", "--api", "jack", "--notes", "6"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="looker")
        end = time.monotonic() + 20
        while not any("jamd-in:jamd in" in p for p in probe.get_ports()):
            assert time.monotonic() < end and proc.poll() is None, "jamd calibrate opened no ports"
            time.sleep(0.05)
        probe.delete()
        time.sleep(1.0)  # a loop made a second after start: the probe note waits for it
        patch("jamd:jamd out", "jamd-in:jamd in")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "of 6 test notes came back from 'jamd:jamd out' to 'jamd-in:jamd in'" in out
    assert "round trip: median" in out and "jamd run --set output.offset_ms=" in out
    assert "half the median round trip" in out


@pytest.mark.jack
@pytest.mark.slow
def test_no_loop_is_one_line_and_exit_1(jack_server):
    r = _calibrate("--timeout-s", "1")
    assert r.returncode == 1
    # the progress log line (what jamd waits for), then the one error line
    lines = [line for line in r.stderr.strip().splitlines() if "Traceback" in line or line.startswith("jamd:")]
    assert len(lines) == 1 and r.stderr.strip().endswith(lines[0]), r.stderr
    assert lines[0].startswith("jamd: no test note came back on 'jamd-in:jamd in' within 1 s")
    assert 'jack_connect "jamd:jamd out" "jamd-in:jamd in"' in lines[0]
    assert r.stdout == ""
    r = _calibrate("--timeout-s", "0.5", "--json")
    assert r.returncode == 1
    f = json.loads(r.stdout)
    assert f["returned"] == 0 and "jack_connect" in f["error"]
