"""What `jamd run` keeps resident (issue 4: "Daemon RSS while playing <= 150 MB").

Not timing tests: each checks what is mapped or imported.  See
`jamd.midi.jack_memory.release_jack_shared_memory` for JACK's shared segment.
"""

from __future__ import annotations

import sys
import time

import pytest
from cli_checks import run_python

from jamd.bench.daemon_proc import proc_memory_mb
from jamd.midi.jack_memory import _locked_jack_segments

SMAPS = """\
55c7085a3000-55c7085a4000 r--p 00000000 08:01 123   /usr/bin/python3.11
Rss:                   4 kB
Locked:                0 kB
VmFlags: rd mr mw me sd
7fb4019a1000-7fb408000000 rw-s 00000000 00:1a 456   /dev/shm/jack-0-0
Rss:              104828 kB
Locked:            52414 kB
THPeligible:    0
VmFlags: rd wr sh mr mw me ms lo sd
7fb408000000-7fb408001000 rw-s 00000000 00:1a 457   /dev/shm/jack-0-1
Rss:                   4 kB
Locked:                0 kB
VmFlags: rd wr sh mr mw me ms sd
7fb409000000-7fb409100000 rw-p 00000000 00:00 0
Rss:                1024 kB
VmFlags: rd wr mr mw me ac lo sd
7fb40a000000-7fb40a001000 rw-s 00000000 00:1a 458   /dev/shm/jack-shm-registry
Rss:                   4 kB
VmFlags: rd wr sh mr mw me ms lo sd
"""


def test_only_locked_jack_segments_are_released(tmp_path):
    path = tmp_path / "smaps"
    path.write_text(SMAPS)
    assert _locked_jack_segments(str(path)) == [
        (0x7FB4019A1000, 0x7FB408000000 - 0x7FB4019A1000),  # the graph segment, locked
        (0x7FB40A000000, 0x1000),  # the registry, locked
    ]  # not the unlocked client segment, not a locked mapping that is not JACK's


def test_the_command_line_does_not_import_mido():
    # `jamd run` builds the parser, which imports every command module
    out = run_python("import sys\nfrom jamd import cli\ncli.build_parser()\nprint('mido' in sys.modules)")
    assert out.stdout.strip() == "False"


@pytest.mark.jack
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_jamd_run_keeps_no_more_of_jacks_segment_than_it_uses(jamd_rig, shipped_lstm):
    # The rig's server has jackd's default 2048 ports: a 107 MB segment, all of
    # it resident in jamd where libjack's mlock succeeds (root here) unless jamd
    # gives the lock back.
    d, _player, _recorder = jamd_rig("--model", str(shipped_lstm), "--api", "jack", "--mode", "continuous",
                                     "--set", "midi.client_name=jamd")
    time.sleep(3.0)  # playing, past the key finder's warm-up
    mem = proc_memory_mb(d.proc.pid)
    assert d.proc.poll() is None, d.log()
    assert mem["VmLck"] < 1, mem
    assert mem["RssShmem"] < 8, mem
    assert mem["VmRSS"] <= 150, mem


@pytest.mark.jack
@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_following_a_device_keeps_the_resident_memory_of_a_run_without(jack_server):
    # The hotplug watcher looks at JACK's ports (every 0.5 s before; now when a port comes
    # or goes), and each listing reads the server's whole port table: 66 MB of the segment
    # mapped again (RssShmem), RSS almost doubled, unless jamd gives those pages back.
    import rtmidi
    from jack_rig import Daemon
    from test_daemon_jack import common

    d = Daemon(*common("--mode", "continuous", "--set", "midi.connect_input=hp-nothing-here",
                       "--set", "midi.connect_output=hp-nothing-either"))
    try:
        assert d.wait_log("waiting for a port matching 'hp-nothing-either'", 5), d.log()
        at_ready = proc_memory_mb(d.proc.pid)
        time.sleep(1.0)
        other = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="hp-other")  # a port comes: jamd looks
        other.open_virtual_port("out")
        time.sleep(2.0)
        later = proc_memory_mb(d.proc.pid)
        other.close_port()
        other.delete()
        assert d.proc.poll() is None, d.log()
    finally:
        d.stop()
    assert later["RssShmem"] < 8, (at_ready, later)
    assert later["VmRSS"] - at_ready["VmRSS"] < 8, (at_ready, later)
