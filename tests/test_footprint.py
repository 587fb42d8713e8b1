"""What `jamd run` loads (issue 15 section 5: a smaller, faster-starting daemon for a Raspberry Pi 4).

Not timing tests (the figures are in docs/BENCHMARKS.md, `jamd bench --suite realtime
--footprint`): these check which heavy packages a real `jamd run` over JACK has imported,
at READY and after it has found a phrase's key and answered it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

HEAVY = ("music21", "mido", "tensorflow", "keras", "matplotlib", "onnx", "ml_dtypes")

# `jamd run` in process, so its sys.modules can be read: at the "ready" log line and at exit.
CODE = f"""
import logging, sys
from jamd import cli
HEAVY = {HEAVY!r}
def heavy():
    return sorted(m for m in sys.modules if m.split(".")[0] in HEAVY and sys.modules[m] is not None)
class Tap(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if text.startswith("ready in"):
            print("READY", heavy(), flush=True)
        elif text.startswith("answer:"):
            print("ANSWER", text.rsplit(", ", 1)[-1], flush=True)
for name in ("jamd.run", "jamd.live.modes"):
    logging.getLogger(name).addHandler(Tap())
code = cli.main(sys.argv[1:])
print("EXIT", code, heavy(), flush=True)
"""


@pytest.mark.jack
@pytest.mark.slow
def test_jamd_run_finds_a_key_without_importing_music21_mido_tensorflow_or_matplotlib(jack_server):
    from jack_rig import Player

    proc = subprocess.Popen(
        [sys.executable, "-c", CODE, "run", "--api", "jack", "--mode", "call-response", "--duration", "8",
         "--set", "midi.client_name=jamd", "--set", "live.end_cc=20", "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    player = None
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("READY"):
                player = Player("jamd-in:jamd in")
                # one bar of D major, eighth notes at 120 BPM, closed by live.end_cc
                for p in (62, 66, 69, 74, 73, 69, 66, 62):
                    player.send([0x90, p, 90])
                    time.sleep(0.2)
                    player.send([0x80, p, 0])
                    time.sleep(0.05)
                player.send([0xB0, 20, 127])
        assert proc.wait(30) == 0, lines
    finally:
        if player is not None:
            player.close()
        if proc.poll() is None:
            proc.kill()
    assert "READY []" in lines, lines
    assert "ANSWER D major" in lines, lines  # the key was found, by jamd.music.keys alone
    assert lines[-1] == "EXIT 0 []", lines
