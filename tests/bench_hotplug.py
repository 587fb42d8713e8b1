"""Benchmark (not a test): time from a synth's JACK port appearing to the first message jamd sends it.

    .venv/bin/python tests/bench_hotplug.py 10

Starts `jamd run --mode continuous` with midi.connect_output=hp-synth:* on a private JACK
server, then N times creates a port named hp-synth, waits for what jamd sends (all notes off,
then notes), removes it and waits.  Prints the delays in seconds (issue 15: <= 2 s after a
re-plug).  It reuses the JACK test rig, hence its place beside the tests.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from jack_rig import Daemon, Recorder, private_jack_server  # noqa: E402
from test_daemon_jack import common  # noqa: E402


def main(n: int) -> None:
    delays = []
    with private_jack_server():
        d = Daemon(*common("--mode", "continuous", "--set", "midi.connect_output=hp-synth:*"))
        try:
            for _ in range(n):
                t0 = time.perf_counter_ns()
                synth = Recorder(None, name="hp-synth", virtual="in")
                assert synth.wait_for(lambda ev: ev, 5), d.log()
                delays.append((synth.snapshot()[0][0] - t0) / 1e9)
                time.sleep(0.3)
                synth.close()
                time.sleep(1.0)
        finally:
            d.stop()
    delays.sort()
    print("plug -> first message (s):", " ".join(f"{x:.2f}" for x in delays),
          f"| median {delays[len(delays) // 2]:.2f}, max {delays[-1]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
