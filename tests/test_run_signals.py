"""A SIGHUP (`systemctl reload jamd`) sent while `jamd run` is still starting is held back and
reloads the config once jamd is ready; it never ends jamd (SIGHUP's default: exit 129).

Unit checks of `cli.hold_reload_signal`, and `jamd run` over a private JACK server (marks
`jack`, `slow`) sent SIGHUP as soon as its process blocks it: the first thing jamd's code does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jamd import cli


def _sighup_blocked(pid: int) -> bool | None:
    """Whether `pid` blocks SIGHUP (bit 0 of SigBlk in /proc/PID/status); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    mask = next(line.split()[1] for line in text.splitlines() if line.startswith("SigBlk:"))
    return bool(int(mask, 16) & 1 << (signal.SIGHUP - 1))


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_only_a_run_command_line_holds_sighup_back():
    try:
        assert cli.hold_reload_signal(["generate", "--bars", "4"]) is False
        assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert cli.hold_reload_signal(["run", "--mode", "continuous"]) is True
        assert signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
@pytest.mark.jack
@pytest.mark.slow
def test_sighup_during_start_up_is_applied_after_ready(jack_server, private_state_home):
    from test_daemon_jack import common

    proc = subprocess.Popen([sys.executable, "-m", "jamd.cli", "run", *common("--mode", "continuous")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        end = time.monotonic() + 10
        while not _sighup_blocked(proc.pid) and time.monotonic() < end:  # Python, then jamd.cli
            time.sleep(0.0005)
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        assert not any("ready in" in line for line in lines)  # sent well before jamd was ready
        end = time.monotonic() + 60
        while time.monotonic() < end and not any("config reloaded" in line for line in lines):
            assert proc.poll() is None, f"jamd run ended ({proc.returncode}):\n{''.join(lines)}"
            time.sleep(0.05)
        log = "".join(lines)
        assert "config reloaded" in log, log
        assert log.index("ready in") < log.index("config reloaded"), log  # the reload waited for ready
        assert time.monotonic() - sent_at < 60
        time.sleep(0.5)
        assert proc.poll() is None, log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(2)
    assert "Traceback" not in "".join(lines)
