"""`jamd run` when its JACK server goes away mid-play: one line, exit 1, promptly.

The server here is a second private one (not the session's, which other tests
share), killed while jamd plays.  rtmidi alone would let jamd play on into the
dead server; `jamd.midi.jack_watch` hears libjack's shutdown callback.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from jack_rig import Daemon, private_jack_server

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def test_jamd_exits_with_one_line_when_the_jack_server_dies(jack_server):
    with private_jack_server() as name:
        assert name != jack_server
        d = Daemon("--api", "jack", "--mode", "continuous", "--set", "midi.client_name=jamd-loss")
        try:
            time.sleep(1.0)
            killed = subprocess.run(["pkill", "-KILL", "-f", f"jackd -n {name} "], check=False)
            assert killed.returncode == 0
            t0 = time.monotonic()
            d.proc.wait(10)
            took = time.monotonic() - t0
        finally:
            d.stop()
    assert d.proc.returncode == 1, d.log()
    assert took < 5.0
    log = d.log()
    assert "the JACK server stopped" in log
    assert "Traceback" not in log
    assert sum("ERROR" in line for line in log.splitlines()) == 1
