"""jamd as a systemd service (issue 15 section 1).

* `jamd.sync.notify`: the sd_notify datagrams on a socket the test owns (path and
  abstract names), systemd's WATCHDOG_USEC / WATCHDOG_PID rules, the ping's pace.
* `jamd service`: the unit's lines for a system and a user unit, the config path
  made absolute, JACK's ordering, --install with an existing file and --force,
  bad folders; `systemd-analyze verify` reads the unit without a complaint.
* `jamd run` over the JACK rig with NOTIFY_SOCKET and WATCHDOG_USEC=1 s: READY=1
  once its ports are open, WATCHDOG=1 every half second from the engine thread,
  none once the engine hangs (the test makes `Engine.tick` block), while the
  process stays alive; STOPPING=1 at SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from jamd import cli
from jamd.commands import service
from jamd.config import clip
from jamd.sync import notify


class Listener:
    """A datagram socket standing in for systemd's: every message with its arrival time."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, m in list(self.messages) for line in m.split("\n")]

    def times_of(self, line: str, since: float = 0.0) -> list[float]:
        return [t for t, m in list(self.messages) if t >= since and line in m.split("\n")]

    def wait_for(self, line: str, timeout: float) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.times_of(line)
            if found:
                return found[0]
            time.sleep(0.01)
        return None

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()


def _abstract_name() -> str:
    return f"@jamd-test-notify-{uuid.uuid4().hex}"


# -- the protocol --------------------------------------------------------------

def test_socket_address_follows_systemds_rules():
    assert notify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify.socket_address("@abc") == b"\0abc"
    assert notify.socket_address("@") is None
    assert notify.socket_address("vsock:2:1234") is None
    assert notify.socket_address("") is None
    assert notify.socket_address(None) is None


@pytest.mark.parametrize("abstract", [True, False])
def test_ready_status_and_stopping_reach_the_socket(tmp_path: Path, abstract: bool):
    name = _abstract_name() if abstract else str(tmp_path / "notify.sock")
    listener = Listener(notify.socket_address(name))
    try:
        env = {"NOTIFY_SOCKET": name, "OTHER": "kept"}
        n = notify.Notifier.from_environ(env)
        assert env == {"OTHER": "kept"}  # read once, then removed: a child process does not inherit it
        assert n.enabled and n.watchdog is None
        assert n.status("loading   model\nlstm")  # one line: whitespace and newlines folded
        assert n.ready("running: mode x")
        assert n.stopping()
        deadline = time.monotonic() + 2
        while len(listener.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m for _, m in listener.messages] == [
            "STATUS=loading model lstm", "READY=1\nSTATUS=running: mode x", "STOPPING=1\nSTATUS=stopping"]
    finally:
        listener.close()


def test_without_notify_socket_nothing_is_sent():
    n = notify.Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled and n.watchdog is None
    assert not n.ready() and not n.send("WATCHDOG=1")


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("1000000", None, 1_000_000),
    ("1000000", "SELF", 1_000_000),
    ("1000000", "1", None),  # for another process
    ("0", None, None), ("-5", None, None), ("ten", None, None), (None, None, None),
    ("1000000", "pid", None),
])
def test_watchdog_usec_and_pid_rules(usec, pid, expected):
    env = {}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid is not None:
        env["WATCHDOG_PID"] = str(os.getpid()) if pid == "SELF" else pid
    assert notify.watchdog_usec(env, os.getpid()) == expected


def test_watchdog_pings_every_half_timeout(tmp_path: Path):
    name = _abstract_name()
    listener = Listener(notify.socket_address(name))
    try:
        n = notify.Notifier.from_environ({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
        wd = n.watchdog
        assert wd is not None and wd.interval_s == pytest.approx(0.1)
        assert wd.ping()
        assert not wd.ping()  # not yet due
        assert 0.05 < wd.due_in_s() <= 0.1
        time.sleep(0.11)
        assert wd.due_in_s() == 0.0 and wd.ping()
        deadline = time.monotonic() + 2
        while len(listener.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [m for _, m in listener.messages] == ["WATCHDOG=1", "WATCHDOG=1"]
    finally:
        listener.close()


def test_a_missing_listener_costs_a_warning_not_the_daemon(tmp_path: Path, caplog):
    n = notify.Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000000"})
    assert n.enabled
    with caplog.at_level("DEBUG", logger="jamd.sync.notify"):
        assert not n.ready()
        assert not n.watchdog.ping()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "READY=1" in warnings[0].getMessage()
    n.close()
    assert not n.enabled and not n.send("READY=1")


# -- the unit ------------------------------------------------------------------

def _service(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["service", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _parse(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}} (comments and blank lines dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch):
    """Run from an empty folder (no ./config.yaml), with no JACK server named."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("JACK_DEFAULT_SERVER", raising=False)
    monkeypatch.delenv("SUDO_USER", raising=False)
    return work


def test_user_unit(capsys, elsewhere: Path):
    code, out, _ = _service(capsys, "--user")
    assert code == 0
    unit = _parse(out)
    jamd = service.jamd_command()
    assert unit == {
        "Unit": {"Description": ["jamd, a real-time MIDI generation daemon"], "After": ["sound.target"]},
        "Service": {
            "Type": ["notify"], "NotifyAccess": ["main"], "ExecStart": [" ".join(jamd + ["run"])],
            "ExecReload": ["kill -HUP $MAINPID"],
            "WorkingDirectory": [str(elsewhere)], "Restart": ["on-failure"], "RestartSec": ["2"],
            "WatchdogSec": ["10"], "LimitRTPRIO": ["95"], "LimitMEMLOCK": ["infinity"],
            "Environment": ["PYTHONUNBUFFERED=1", "PYTHONFAULTHANDLER=1"],
        },
        "Install": {"WantedBy": ["default.target"]},
    }
    # this install's jamd: the script beside this Python (the venv's), or python -m jamd.cli
    assert jamd[0].startswith(str(Path(sys.executable).absolute().parent))


def test_system_unit_with_config_overrides_and_jack(capsys, elsewhere: Path, monkeypatch):
    (elsewhere / "conf").mkdir()
    (elsewhere / "conf" / "my config.yaml").write_text("midi:\n  api: jack\n")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "stage")
    code, out, _ = _service(capsys, "--config", "conf/my config.yaml", "--set", "clock.bpm=96",
                            "--log-level", "warning", "--user-name", "nobody", "--watchdog-sec", "4.5")
    assert code == 0
    unit = _parse(out)
    config = elsewhere / "conf" / "my config.yaml"
    assert unit["Service"]["ExecStart"] == [
        " ".join(service.jamd_command()) + f' run --config "{config}" --set clock.bpm=96 --log-level warning']
    assert unit["Unit"]["After"] == ["sound.target", "jack.service"]
    assert unit["Unit"]["Wants"] == ["jack.service"]
    assert unit["Service"]["User"] == ["nobody"] and unit["Service"]["SupplementaryGroups"] == ["audio"]
    assert unit["Service"]["WatchdogSec"] == ["4.5"]
    assert unit["Service"]["Environment"][-1] == "JACK_DEFAULT_SERVER=stage"
    assert unit["Install"] == {"WantedBy": ["multi-user.target"]}


def test_the_default_config_file_is_passed_by_its_absolute_path(capsys, elsewhere: Path):
    (elsewhere / "config.yaml").write_text("clock:\n  bpm: 90\n")
    code, out, _ = _service(capsys, "--user", "--watchdog-sec", "0")
    assert code == 0
    service_lines = _parse(out)["Service"]
    assert service_lines["ExecStart"][0].endswith(f" run --config {elsewhere / 'config.yaml'}")
    assert "WatchdogSec" not in service_lines
    assert "Wants" not in _parse(out)["Unit"]  # midi.api is not jack


def test_quote_escapes_what_systemd_would_expand():
    assert service.quote("/a/b.yaml") == "/a/b.yaml"
    assert service.quote("/my dir/100%$HOME.yaml") == '"/my dir/100%%$$HOME.yaml"'
    assert service.quote('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert service.quote("it's") == '"it\'s"'
    with pytest.raises(service.UsageError, match="line break"):
        service.quote("a\nb")


def test_install_writes_once_then_needs_force(capsys, elsewhere: Path, tmp_path: Path):
    units = tmp_path / "units"
    code, out, _ = _service(capsys, "--user", "--install", "--unit-dir", str(units))
    assert code == 0
    path = units / "jamd.service"
    printed = _service(capsys, "--user")[1]
    assert path.read_text() == printed
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert "systemctl --user enable --now jamd.service" in out
    assert "journalctl --user -u jamd -f" in out
    assert "loginctl enable-linger" in out

    path.write_text("mine\n")
    code, out, err = _service(capsys, "--user", "--install", "--unit-dir", str(units))
    assert code == 2 and out == ""
    assert err == f"jamd: {clip(str(path))} exists; --force replaces it\n"  # a long path is cut (config.clip)
    assert path.read_text() == "mine\n"

    code, out, _ = _service(capsys, "--user", "--install", "--unit-dir", str(units), "--force")
    assert code == 0 and path.read_text() == printed
    assert sorted(p.name for p in units.iterdir()) == ["jamd.service"]  # no temporary file left


def test_system_install_prints_the_root_commands(capsys, elsewhere: Path, tmp_path: Path):
    code, out, _ = _service(capsys, "--install", "--unit-dir", str(tmp_path), "--user-name", "nobody")
    assert code == 0
    assert "  sudo systemctl daemon-reload\n  sudo systemctl enable --now jamd.service\n" in out
    assert "journalctl -u jamd -f" in out and "--user" not in out


@pytest.mark.parametrize("case", ["file", "unwritable", "user-name", "no-install", "watchdog", "both", "no-user"])
def test_bad_paths_and_options_cost_one_line_and_exit_2(capsys, elsewhere: Path, tmp_path: Path, case: str):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    argv = {
        "file": ["--install", "--user", "--unit-dir", str(blocker)],
        "unwritable": ["--install", "--user", "--unit-dir", str(readonly)],
        "user-name": ["--user-name", "bad name"],
        "no-install": ["--unit-dir", str(tmp_path)],
        "watchdog": ["--watchdog-sec", "-1"],
        "both": ["--user", "--user-name", "pi"],
        "no-user": ["--user-name", "nosuchuser"],
    }[case]
    if case == "unwritable" and os.access(readonly, os.W_OK):
        pytest.skip("running as root: every folder is writable")
    code, out, err = _service(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("jamd: ") and "Traceback" not in err
    expected = {"file": str(blocker), "unwritable": "not writable", "user-name": "'bad name'",
                "no-install": "--unit-dir only applies with --install", "watchdog": "--watchdog-sec",
                "both": "--user-name is for a system unit",
                "no-user": "--user-name 'nosuchuser': no such user on this machine (create it first, or --force "
                           "to write the unit anyway)"}[case]
    assert expected in err
    assert not (tmp_path / "jamd.service").exists()


def test_force_takes_a_user_this_machine_does_not_know_yet(capsys, elsewhere: Path):
    code, out, err = _service(capsys, "--user-name", "nosuchuser", "--force")
    assert code == 0 and err == ""
    assert _parse(out)["Service"]["User"] == ["nosuchuser"]


@pytest.mark.parametrize("host, network", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                           ("0.0.0.0", True), ("192.168.1.20", True), ("jamd.local", True)])
def test_osc_from_the_network_waits_for_the_network(capsys, elsewhere: Path, host: str, network: bool):
    code, out, _ = _service(capsys, "--user", "--set", "osc.enabled=true", "--set", f"osc.host={host}")
    assert code == 0
    unit = _parse(out)["Unit"]
    if network:
        assert unit["Wants"] == ["network-online.target"]
        assert unit["After"] == ["sound.target", "network-online.target"]
    else:
        assert "Wants" not in unit and unit["After"] == ["sound.target"]


def test_osc_disabled_needs_no_network(capsys, elsewhere: Path):
    code, out, _ = _service(capsys, "--user", "--set", "osc.host=0.0.0.0")
    assert code == 0 and "network-online" not in out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("user", [False, True])
def test_systemd_reads_the_unit_without_a_complaint(capsys, elsewhere: Path, tmp_path: Path, user: bool,
                                                    monkeypatch):
    # a space, a specifier (%Z: unknown, so fatal unless escaped) and a variable, in the config
    # path and in the working folder
    odd = elsewhere / "my 100%Z $dir"
    odd.mkdir()
    monkeypatch.chdir(odd)
    (odd / "config.yaml").write_text("midi:\n  api: jack\n")
    units = tmp_path / "units"
    argv = ["--install", "--unit-dir", str(units), "--config", str(odd / "config.yaml")]
    argv += ["--user"] if user else ["--user-name", "root"]
    assert _service(capsys, *argv)[0] == 0
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    r = subprocess.run(["systemd-analyze", *(["--user"] if user else []), "verify", str(units / "jamd.service")],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_LEVEL="notice"))
    complaints = [line for line in (r.stdout + r.stderr).splitlines() if "jamd.service" in line]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


# -- jamd run under a stand-in for systemd ------------------------------------------

# `jamd run`, with the engine made to hang on its thread, in place, once the file
# JAMD_TEST_HANG_FILE exists: how a real hang looks to the rest of jamd (every
# other thread goes on), with no test hook in jamd itself.
_RUN_WITH_A_HANGING_ENGINE = """
import os, sys, time
from jamd.live import engine
_tick = engine.Engine.tick
def tick(self):
    while os.path.exists(os.environ["JAMD_TEST_HANG_FILE"]):
        time.sleep(3600)
    _tick(self)
engine.Engine.tick = tick
from jamd.cli import main
sys.exit(main())
"""


@pytest.mark.jack
@pytest.mark.slow
def test_run_is_ready_pings_the_watchdog_and_stops_pinging_when_its_engine_hangs(jack_server, tmp_path: Path):
    from jack_rig import Player
    from test_clock_jack import _lstm

    name = _abstract_name()
    listener = Listener(notify.socket_address(name))
    hang = tmp_path / "hang"
    env = dict(os.environ, NOTIFY_SOCKET=name, WATCHDOG_USEC="1000000", JAMD_TEST_HANG_FILE=str(hang))
    cmd = [sys.executable, "-X", "faulthandler", "-c", _RUN_WITH_A_HANGING_ENGINE, "run", "--api", "jack",
           "--model", _lstm(), "--set", "midi.client_name=jamd"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()

    def logged(text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while text not in "".join(log) and time.monotonic() < end:
            time.sleep(0.02)
        return text in "".join(log)

    try:
        assert listener.wait_for("READY=1", 30) is not None, "".join(log)
        # READY=1 follows the ready line, once the ports are open: a client finds jamd's input now
        assert logged("ready in", 2), "".join(log)
        Player("jamd-in:jamd in").close()
        lines = listener.lines()
        assert lines.index(f"STATUS=loading model {_lstm()}") < lines.index("STATUS=opening MIDI ports") \
            < lines.index("READY=1"), lines

        start = time.monotonic()
        time.sleep(3.0)
        pings = [t for t in listener.times_of("WATCHDOG=1", since=start) if t < start + 3.0]
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        # every half of the 1 s timeout: about 6 in 3 s, none late enough for systemd to act
        assert 4 <= len(pings) <= 7 and max(gaps) < 1.0 and min(gaps) > 0.4, gaps

        hang.touch()
        time.sleep(1.0)  # the engine's next tick, within 0.25 s, blocks for good
        hung = time.monotonic()
        time.sleep(3.0)
        assert listener.times_of("WATCHDOG=1", since=hung) == []
        assert proc.poll() is None, "".join(log)  # alive: only the missing pings tell

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, "".join(log)
        assert listener.wait_for("STOPPING=1", 2) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(2)
        listener.close()
