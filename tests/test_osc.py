"""OSC control and status (issue 15 section 3): `jamd.live.osc` and `controls.osc`.

The message checks and the engine's side run everywhere (in memory: `LiveSession` on
`MemoryOutput` with a `ManualClock`, as in test_engine.py); the UDP server, the status reply
and `jamd run` need python-osc (`pip install 'jamd[osc]'`) and are skipped without it, and the
tests against a running `jamd run` need the JACK rig (marks `jack`, `slow`).
"""

from __future__ import annotations

import logging
import math
import socket
import subprocess
import sys
import time

import pytest
from fakes import fake_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine import C_PHRASE, CC, OFF, ON, play, run_to, session, timeline

from jamd.config import Config, OscConfig
from jamd.errors import ModelError
from jamd.live import osc
from jamd.live.osc import ADDRESSES, BadMessage, OscControl, OscServer, parse
from jamd.live.session import LiveSession
from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock

NO_OSC = "python-osc is not installed (the osc extra: pip install 'jamd[osc]')"


@pytest.fixture
def pythonosc():
    return pytest.importorskip("pythonosc", reason=NO_OSC)


def warnings_of(caplog, logger: str) -> list[str]:
    """The warning lines `logger` logged (other tests may have left other loggers chattier)."""
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the message checks (the server's thread) ----------------------------------
@pytest.mark.parametrize("address, args, expected", [
    ("/jamd/temperature", [1.5], ("temperature", 1.5)),
    ("/jamd/temperature", [0], ("temperature", 0.0)),
    ("/jamd/temperature", [5.0], ("temperature", 5.0)),
    ("/jamd/mode", ["accompany"], ("mode", "accompany")),
    ("/jamd/start", [], ("start", None)),
    ("/jamd/stop", [1.0], ("stop", None)),  # a button's press
    ("/jamd/stop", [0.0], None),  # its release: nothing
    ("/jamd/panic", [True], ("panic", None)),
    ("/jamd/status", [], ("status", None)),
    ("/jamd/answer_bars", [4], ("answer_bars", 4)),
    ("/jamd/answer_bars", [8.0], ("answer_bars", 8)),  # a fader's float with a whole value
    ("/jamd/answer_bars", [0], ("answer_bars", 0)),
    ("/jamd/model", ["gan"], ("model", "gan")),
    ("/jamd/model", [1], ("model", 1)),
    ("/jamd/harmony", [True], ("harmony", True)),
    ("/jamd/harmony", [0], ("harmony", False)),
    ("/jamd/harmony", [1.0], ("harmony", True)),
    ("/jamd/harmony/rhythm", ["bar"], ("harmony/rhythm", "bar")),
    ("/jamd/harmony/pattern", ["sustained"], ("harmony/pattern", "sustained")),
    ("/jamd/tempo", [100], ("tempo", 100.0)),
    ("/jamd/tempo", [300.0], ("tempo", 300.0)),
])
def test_each_address_takes_its_arguments(address, args, expected):
    assert parse(address, tuple(args)) == expected


@pytest.mark.parametrize("address, args, why", [
    ("/jamd/temprature", [1.0], "unknown address"),
    ("/jamd", [], "unknown address"),
    ("/other/mode", ["continuous"], "unknown address"),
    ("/jamd/temperature", [math.nan], "finite"),
    ("/jamd/temperature", [math.inf], "finite"),
    ("/jamd/temperature", [5.5], "out of range 0-5"),
    ("/jamd/temperature", [-0.1], "out of range 0-5"),
    ("/jamd/temperature", ["hot"], "takes a number"),
    ("/jamd/temperature", [True], "takes a number"),
    ("/jamd/temperature", [], "takes one argument"),
    ("/jamd/temperature", [1.0, 2.0], "takes one argument"),
    ("/jamd/mode", ["jazz"], "takes one of continuous, call-response, accompany"),
    ("/jamd/mode", [1], "takes one of"),
    ("/jamd/answer_bars", [65], "out of range 0-64"),
    ("/jamd/answer_bars", [2.5], "whole number"),
    ("/jamd/answer_bars", [-1], "out of range"),
    ("/jamd/model", [""], "a name in model.models"),
    ("/jamd/model", [-1], "an index from 0"),
    ("/jamd/model", [1.0], "a name in model.models"),
    ("/jamd/harmony", [64], "T, F, 0 or 1"),
    ("/jamd/harmony", ["on"], "T, F, 0 or 1"),
    ("/jamd/harmony/rhythm", ["waltz"], "beat, half-bar, bar"),
    ("/jamd/harmony/pattern", [None], "beats"),
    ("/jamd/tempo", [19.9], "out of range 20-300"),
    ("/jamd/tempo", [b"\x01"], "takes a number"),
    ("/jamd/stop", [2], "T, F, 0 or 1"),
    ("/jamd/status", ["now"], "T, F, 0 or 1"),
])
def test_a_bad_message_is_refused_with_the_reason(address, args, why):
    with pytest.raises(BadMessage, match=why):
        parse(address, tuple(args))


def test_the_bounds_are_the_configs_own():
    # /jamd/temperature and /jamd/tempo refuse exactly what config.yaml refuses
    for key, value in (("model.temperature", 5.0), ("clock.bpm", 20), ("live.response_bars", 64)):
        Config().replace(**{key: value})
    for address, value in (("temperature", 5.0), ("tempo", 20), ("answer_bars", 64)):
        assert parse(f"/jamd/{address}", (value,))[1] == value


def test_a_refused_message_is_logged_naming_address_and_value_a_line_a_second(caplog):
    items: list = []
    control = OscControl(items.append)
    with caplog.at_level(logging.WARNING, "jamd.live.osc"):
        control.handle("/jamd/temperature", [7.0], ("127.0.0.1", 5000))
        for _ in range(100):
            control.handle("/jamd/mode", ["jazz"], ("127.0.0.1", 5000))
    assert items == [] and control.refused == 101
    assert warnings_of(caplog, "jamd.live.osc") == ["OSC /jamd/temperature [7.0] ignored: out of range 0-5"]


def test_a_good_message_is_only_enqueued():
    items: list = []
    control = OscControl(items.append)
    control.handle("/jamd/mode", ["continuous"], ("127.0.0.1", 5000))
    control.handle("/jamd/panic", [], ("127.0.0.1", 5000))
    control.handle("/jamd/panic", [0], ("127.0.0.1", 5000))  # a release
    assert items == [("osc", "mode", "continuous", None), ("osc", "panic", None, None)]


# -- the engine's side (in memory) ---------------------------------------------
def send(s, address, *args, sender=("127.0.0.1", 5000)):
    """One OSC message through the server's checks into the engine's inbox; the replies
    `/jamd/status` sends are kept in `s.replies` as (datagram, address)."""
    if not hasattr(s, "control"):
        s.replies = []
        s.control = OscControl(s.engine.inbox.put, lambda dgram, to: s.replies.append((dgram, to)))
    s.control.handle(address, list(args), sender)


def state(s):
    e = s.engine
    return (e.mode, e.model_name, e.temperature, e.response_bars, e.playing, e.harmony_on, e.clock.bpm, e.cfg)


def status_values(s):
    """The engine's `/jamd/status` answer, as the client reads it."""
    from pythonosc.osc_message import OscMessage

    send(s, "/jamd/status")
    n = len(s.replies)
    s.engine.run_once()
    assert len(s.replies) == n + 1
    dgram, to = s.replies[-1]
    msg = OscMessage(dgram)
    assert msg.address == "/jamd/status" and to == ("127.0.0.1", 5000)
    return msg.params


def test_status_answers_the_engines_state_to_the_sender(pythonosc):
    s, clock, out, _ = session()
    run_to(s, clock, 8)  # 8 16ths at 120 BPM: 1.0 s
    assert status_values(s) == ["call-response", "lstm-folk", 120.0, 1, "", 1.0, 0, pytest.approx(0.9), 0]
    play(s, clock, [n.__class__(n.start + 16, n.pitch + 7, n.duration) for n in C_PHRASE])  # in G
    run_to(s, clock, 64)
    assert len(s.engine.phrases) == 1
    uptime = clock.now_ns() / 1e9  # the sender's flush leaves the clock at its last deadline
    assert 7.9 <= uptime <= 8.0
    assert status_values(s) == ["call-response", "lstm-folk", 120.0, 1, "G major", pytest.approx(uptime), 0,
                                pytest.approx(0.9), 0]


def test_temperature_mode_answer_bars_and_tempo_change_what_status_reports(pythonosc):
    s, clock, out, _ = session()
    send(s, "/jamd/temperature", 1.5)
    send(s, "/jamd/mode", "continuous")
    send(s, "/jamd/answer_bars", 3)
    send(s, "/jamd/tempo", 100.0)
    s.engine.run_once()
    assert s.engine.temperature == 1.5 and s.engine.response_bars == 3
    assert s.engine.cfg.clock.bpm == 100.0 and clock.step_ns == 150_000_000  # a 16th at 100 BPM
    assert status_values(s) == ["continuous", "lstm-folk", 100.0, 1, "", 0.0, 0, 1.5, 3]


def test_a_reload_brings_back_the_files_tempo_and_keeps_the_temperature_set_over_osc():
    s, clock, out, _ = session()
    send(s, "/jamd/tempo", 90)
    send(s, "/jamd/harmony/rhythm", "beat")
    send(s, "/jamd/temperature", 0.5)
    s.engine.run_once()
    assert (clock.bpm, s.engine.cfg.harmony.rhythm, s.engine.temperature) == (90.0, "beat", 0.5)
    s.engine.reload(Config().replace(**{"live.mode": "call-response"}))  # the file, as SIGHUP reads it
    s.engine.run_once()
    assert (clock.bpm, s.engine.cfg.harmony.rhythm, s.engine.temperature) == (120.0, "half-bar", 0.5)


def test_osc_stop_and_start_play_exactly_as_the_start_stop_cc():
    # the same moments, once by CC 23 and once by OSC: the same events, to the tick
    timelines = []
    for by_osc in (False, True):
        s, clock, out, _ = session(mode="continuous")
        run_to(s, clock, 21)
        if by_osc:
            send(s, "/jamd/stop")
        else:
            s.engine.midi_in([CC, 23, 0], clock.now_ns())
        run_to(s, clock, 22)
        assert out.messages[-1] == (CC, 123, 0) and s.scheduler.sounding() == [] and not s.engine.playing
        n = len(out.sent)
        run_to(s, clock, 80)
        assert len(out.sent) == n  # stopped: nothing more
        if by_osc:
            send(s, "/jamd/start")
        else:
            s.engine.midi_in([CC, 23, 127], clock.now_ns())
        run_to(s, clock, 112)
        assert clock.step_at(out.sent[n][0]) == 96  # on the next bar line
        timelines.append(timeline(clock, out))
    assert timelines[0] == timelines[1]
    # the note sounding at the stop (64 from step 20) ends when the stop is handled, then CC 123
    assert timelines[1][:8] == [(16, (ON, 60, 90)), (17.8, (OFF, 60, 0)), (18, (ON, 62, 90)),
                                (19.8, (OFF, 62, 0)), (20, (ON, 64, 90)), (22, (OFF, 64, 0)), (22, (CC, 123, 0)),
                                (96, (ON, 60, 90))]


def test_osc_panic_silences_everything_and_drops_the_rest_of_the_answer():
    s, clock, out, _ = session(**{"live.response_bars": 4})
    play(s, clock, C_PHRASE)
    run_to(s, clock, 37)  # the answer's third note (64 at step 36) is sounding
    assert s.scheduler.sounding() == [(1, 64)]
    out.sent.clear()
    send(s, "/jamd/panic")
    run_to(s, clock, 200)
    assert out.messages == [(OFF, 64, 0), (CC, 123, 0)]


def test_osc_model_by_name_or_index_and_a_wrong_one_changes_nothing(caplog):
    s, clock, out, models = session(mode="continuous", **{"model.models": ["lstm", "other"]})
    run_to(s, clock, 17)
    send(s, "/jamd/model", 1)
    run_to(s, clock, 18)
    assert s.engine.model_name == "other" and models.made[-1].name == "other"
    assert out.messages[-1] == (CC, 123, 0)
    send(s, "/jamd/model", "lstm")
    run_to(s, clock, 19)
    assert s.engine.model_name == "lstm"
    made, before = len(models.made), state(s)
    with caplog.at_level(logging.WARNING, "jamd.live.controls"):
        send(s, "/jamd/model", 2)
        run_to(s, clock, 20)
        s.engine.refused = type(s.engine.refused)()  # let the next line through at once
        send(s, "/jamd/model", "/tmp/other.onnx")  # a path from the network is not loaded
        run_to(s, clock, 21)
    assert state(s) == before and len(models.made) == made
    assert warnings_of(caplog, "jamd.live.controls") == [
        "OSC /jamd/model 2 ignored: past the end of model.models (2 long)",
        "OSC /jamd/model '/tmp/other.onnx' ignored: not in model.models (lstm, other)"]


def test_osc_harmony_switch_rhythm_and_pattern():
    s, clock, out, _ = session()
    send(s, "/jamd/harmony", True)
    send(s, "/jamd/harmony/rhythm", "bar")
    send(s, "/jamd/harmony/pattern", "sustained")
    s.engine.run_once()
    assert s.engine.harmony_on
    assert (s.engine.cfg.harmony.rhythm, s.engine.cfg.harmony.pattern) == ("bar", "sustained")
    assert s.engine.harmony.cfg == s.engine.cfg.harmony  # applied as a reloaded harmony.* is
    send(s, "/jamd/harmony", 0)
    s.engine.run_once()
    assert not s.engine.harmony_on


def test_osc_tempo_following_a_master_is_the_masters(caplog):
    from test_engine_sync import slave_session

    s, clock, out = slave_session()
    before = (clock.step_ns, s.engine.cfg)
    with caplog.at_level(logging.WARNING, "jamd.live.controls"):
        send(s, "/jamd/tempo", 90.0)
        s.engine.run_once()
    assert (clock.step_ns, s.engine.cfg) == before
    assert warnings_of(caplog, "jamd.live.controls") == [
        "OSC /jamd/tempo 90.0 ignored: tempo is the master's (clock.source midi)"]


BAD = [("/jamd/temperature", [math.nan]), ("/jamd/mode", ["jazz"]), ("/jamd/tempo", [1000.0]),
       ("/jamd/answer_bars", [2.5]), ("/jamd/harmony", ["yes"]), ("/jamd/nothing", [1]),
       ("/jamd/model", [7]), ("/jamd/harmony/rhythm", [3])]


def test_bad_messages_change_nothing_and_send_nothing():
    s, clock, out, _ = session(mode="continuous")
    run_to(s, clock, 20)
    before, n = state(s), len(out.sent)
    for address, args in BAD:
        send(s, address, *args)
    s.engine.run_once()
    assert state(s) == before and len(out.sent) == n
    assert s.control.refused == len(BAD) - 1  # /jamd/model 7: the engine refuses it (model.models is 1 long)


# -- random messages ------------------------------------------------------------
osc_value = st.one_of(st.integers(-2**31, 2**31 - 1), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=20), st.booleans(), st.none(), st.binary(max_size=8),
                      st.sampled_from(list(Config().model.models) + list(osc.MODES) + ["bar", "sustained"]),
                      st.sampled_from([0, 1, 0.0, 1.0, 64, 120.0]), st.lists(st.integers(), max_size=3))
osc_address = st.one_of(st.sampled_from([osc.PREFIX + a for a in ADDRESSES]), st.text(max_size=30),
                        st.just("/jamd/"), st.text(max_size=10).map(lambda t: osc.PREFIX + t))


def _refuse_harmony(name):
    raise ModelError(f"no harmony model in these tests ({name})")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(osc_address, st.lists(osc_value, max_size=3)), max_size=12))
def test_random_messages_never_raise_and_every_note_ends(messages):
    clock = ManualClock(120)
    out = MemoryOutput(clock.now_ns)
    s = LiveSession(Config().replace(**{"live.mode": "continuous"}), out, fake_model(), clock=clock,
                    open_harmony=_refuse_harmony)
    control = OscControl(s.engine.inbox.put, lambda dgram, to: None)
    step = 0
    for address, args in messages:
        control.handle(address, args, ("127.0.0.1", 5000))
        step += 3
        clock.advance_to_step(step)
        s.engine.run_once()
        s.scheduler.flush_until(step)
    s.close()
    assert s.engine.error is None
    assert s.scheduler.sounding() == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_random_datagrams_never_raise(data, tail):
    pytest.importorskip("pythonosc", reason=NO_OSC)
    server = _server()
    try:
        for dgram in (data, b"/jamd/mode\0\0,s\0\0" + tail, b"#bundle\0" + tail):
            server.server.dispatcher.call_handlers_for_packet(dgram, ("127.0.0.1", 5000))
    finally:
        server.close()


def _server(port: int = 0) -> OscServer:
    return OscServer(OscConfig(enabled=True, host="127.0.0.1", port=port))


# -- the UDP server ---------------------------------------------------------------
def test_the_server_enqueues_in_order_answers_status_and_survives_garbage(pythonosc, caplog):
    import queue

    from pythonosc.udp_client import SimpleUDPClient

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    server = _server()
    server.start(inbox.put)
    try:
        client = SimpleUDPClient(*server.address)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with caplog.at_level(logging.WARNING, "jamd.live.osc"):
            raw.sendto(b"\x00\xffnot osc at all", server.address)
            raw.sendto(b"/jamd/mode\0\0,s\0\0con", server.address)  # a truncated string
            raw.sendto(b"#bundle\0\0\0", server.address)  # a bundle cut short in its time tag
            # a part that is neither: python-osc skips it with a warning of its own
            raw.sendto(b"#bundle\0\0\0\0\0\0\0\0\1\0\0\0\x04abcd", server.address)
            for i in range(20):
                client.send_message("/jamd/temperature", i / 10)
            client.send_message("/jamd/status", [])
            items = [inbox.get(timeout=5) for _ in range(21)]
        raw.close()
        # in the order sent; OSC's f is a 32-bit float
        assert [i[:3] for i in items[:20]] == [("osc", "temperature", pytest.approx(i / 10, rel=1e-6))
                                               for i in range(20)]
        name, value, reply = items[20][1:]
        assert name == "status" and value is None
        reply(("accompany", "lstm", 96.0, 0, "D minor", 12.5, 1, 0.5, 2))  # as the engine would
        answer = next(client.get_messages(5))
        assert (answer.address, answer.params) == (
            "/jamd/status", ["accompany", "lstm", 96.0, 0, "D minor", 12.5, 1, 0.5, 2])
        assert server.control.refused == 3 and "OSC: ignored a datagram that is not OSC" in caplog.text
        assert server._thread.is_alive()
    finally:
        server.close()
    assert not server._thread.is_alive()


def _osc_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jamd.live.osc" and r.levelno >= logging.WARNING]


def test_a_port_in_use_is_one_warning_then_jamd_listens_once_it_is_free(pythonosc, caplog):
    import queue

    from pythonosc.udp_client import SimpleUDPClient

    inbox: queue.SimpleQueue = queue.SimpleQueue()
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    caplog.set_level(logging.INFO, "jamd.live.osc")
    server = OscServer(OscConfig(enabled=True, host="127.0.0.1", port=port), retry_s=0.05)
    try:
        assert server.address is None
        server.start(inbox.put)
        time.sleep(0.5)  # ~10 failed retries: not a line more
        assert _osc_warnings(caplog) == [
            f"osc.host/osc.port: cannot listen on 127.0.0.1:{port}: in use (another jamd or OSC program?); "
            "jamd plays on without OSC and tries again every 0.05 s"]
        taken.close()
        end = time.monotonic() + 10
        while server.address is None and time.monotonic() < end:
            time.sleep(0.02)
        assert server.address == ("127.0.0.1", port)
        SimpleUDPClient("127.0.0.1", port).send_message("/jamd/temperature", 0.5)
        assert inbox.get(timeout=5)[:3] == ("osc", "temperature", 0.5)
        infos = [r.getMessage() for r in caplog.records if r.name == "jamd.live.osc" and r.levelno == logging.INFO]
        assert infos == [f"OSC: listening on 127.0.0.1:{port}"]
        assert len(_osc_warnings(caplog)) == 1
    finally:
        taken.close()
        server.close()
    assert not server._thread.is_alive()


def test_an_address_this_machine_lacks_is_named_as_such(pythonosc, caplog):
    server = OscServer(OscConfig(enabled=True, host="10.9.9.9", port=free_udp_port()), retry_s=0.05)
    try:
        server.start(lambda item: None)
        warning, = _osc_warnings(caplog)
        assert "cannot listen on 10.9.9.9:" in warning and "10.9.9.9 is not an address of this machine" in warning
        assert "osc.port" not in warning.split(":", 1)[1] and "jamd plays on without OSC" in warning
    finally:
        server.close()  # while it retries: returns at once
    assert not server._thread.is_alive()


def test_a_server_closed_before_it_starts_closes_cleanly(pythonosc):
    server = _server()
    server.close()
    assert server.server.socket.fileno() == -1


def _jamd_run(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{prelude}\nfrom jamd.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "run", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.jack
@pytest.mark.slow
def test_jamd_run_with_its_osc_port_in_use_plays_on_and_listens_once_it_is_free(jack_server, pythonosc):
    from pythonosc.udp_client import SimpleUDPClient

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        with osc_daemon(port, "--mode", "continuous") as d:  # ready: it plays
            warnings = [line for line in d.log().splitlines() if "osc.host/osc.port" in line]
            assert len(warnings) == 1 and f"cannot listen on 127.0.0.1:{port}: in use" in warnings[0], d.log()
            taken.close()
            assert d.wait_log(f"OSC: listening on 127.0.0.1:{port}", 15), d.log()
            assert ask_status(SimpleUDPClient("127.0.0.1", port))[0] == "continuous"
            assert d.stop() == 0
    finally:
        taken.close()
    assert "Traceback" not in d.log() and d.log().count("osc.host/osc.port") == 1


@pytest.mark.slow
def test_jamd_run_with_osc_but_without_python_osc_is_one_line():
    r = _jamd_run("--set", "osc.enabled=true", "--api", "jack", prelude="sys.modules['pythonosc'] = None")
    assert r.returncode == 2, r.stderr
    assert [line for line in r.stderr.splitlines() if line.startswith("jamd:")] == [
        "jamd: osc.enabled is true but python-osc is not installed: pip install 'jamd[osc]', "
        "or set osc.enabled: false"]
    assert "Traceback" not in r.stderr


# -- against a running `jamd run` (the JACK rig) ------------------------------------
def ask_status(client, timeout: float = 10.0) -> list:
    """Send /jamd/status and return the answer's arguments (the client's own socket gets it)."""
    client.send_message("/jamd/status", [])
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for msg in client.get_messages(max(0.05, end - time.monotonic())):
            if msg.address == "/jamd/status":
                return msg.params
    raise AssertionError("no /jamd/status answer")


def osc_daemon(port: int, *extra: str):
    from jack_rig import Daemon
    from test_daemon_jack import common

    return Daemon(*common("--set", "osc.enabled=true", "--set", f"osc.port={port}", *extra))


@pytest.mark.jack
@pytest.mark.slow
def test_jamd_run_answers_status_and_takes_control_over_osc(jack_server, pythonosc):
    from pythonosc.udp_client import SimpleUDPClient
    from test_daemon_jack import _model

    port = free_udp_port()
    with osc_daemon(port, "--mode", "call-response") as d:
        assert d.wait_log(f"OSC: listening on 127.0.0.1:{port}")
        client = SimpleUDPClient("127.0.0.1", port)
        first = ask_status(client)
        assert first[:5] == ["call-response", _model(), 120.0, 1, ""] and first[6:] == [0, pytest.approx(0.9), 0]
        assert first[5] > 0  # uptime, s
        client.send_message("/jamd/mode", "continuous")
        client.send_message("/jamd/temperature", 1.25)
        client.send_message("/jamd/tempo", 100.0)
        client.send_message("/jamd/answer_bars", 2)
        second = ask_status(client)
        assert second[:5] + second[6:] == ["continuous", _model(), 100.0, 1, "", 0, 1.25, 2]
        assert second[5] > first[5]
        assert d.wait_log("mode continuous") and d.wait_log("temperature 1.25") and d.wait_log("tempo 100 BPM")

        # bad messages and garbage: a log line naming address and value (one a second), nothing changed
        for address, args in BAD:
            client.send_message(address, args)
        assert d.wait_log("OSC /jamd/temperature [nan] ignored: takes a finite number")
        time.sleep(1.1)  # past the log's rate limit
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\x00garbage", ("127.0.0.1", port))
        assert d.wait_log("OSC: ignored a datagram that is not OSC (8 bytes from 127.0.0.1)")
        time.sleep(1.1)
        client.send_message("/jamd/mode", "jazz")
        assert d.wait_log("OSC /jamd/mode ['jazz'] ignored: takes one of continuous, call-response, accompany")
        third = ask_status(client)
        assert third[:5] + third[6:] == second[:5] + second[6:]
        assert d.stop() == 0
    assert "Traceback" not in d.log()


@pytest.mark.jack
@pytest.mark.slow
def test_osc_stop_silences_jamd_run(jack_server, pythonosc):
    from jack_rig import sounding_after_cc123
    from pythonosc.udp_client import SimpleUDPClient

    port = free_udp_port()
    with osc_daemon(port, "--mode", "continuous") as d:
        client = SimpleUDPClient("127.0.0.1", port)
        time.sleep(max(0.0, (d.origin_ns + 2_500_000_000 - time.perf_counter_ns()) / 1e9))  # into its 2nd bar
        t_stop = time.perf_counter_ns()
        client.send_message("/jamd/stop", [])
        assert ask_status(client)[3] == 0  # not playing: answered after the stop was applied
        t_applied = time.perf_counter_ns()
        time.sleep(1.5)
        t_end = time.perf_counter_ns()
        assert d.stop() == 0
    sent = d.sent()
    notes = [(t, m) for t, m in sent if m[0] & 0xF0 in (0x80, 0x90)]
    assert any(t < t_stop and m[0] & 0xF0 == 0x90 and m[2] for t, m in notes), "jamd played nothing before the stop"
    assert [(t, m) for t, m in notes if t > t_applied and m[0] & 0xF0 == 0x90 and m[2]] == []
    assert sounding_after_cc123([e for e in sent if e[0] <= t_applied]) == set()
    assert [(t, m) for t, m in sent if t_applied < t < t_end] == []  # silent until jamd exits
    assert d.wait_log("stop")
