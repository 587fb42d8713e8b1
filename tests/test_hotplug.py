"""MIDI devices that come and go (issue 15 section 2), on in-memory ports.

* which port a `midi.connect_*` pattern names (substring or glob, any case);
* the change log's rate limit, line by line on a fake clock;
* a synth unplugged while a note sounds and plugged back: what it receives,
  message by message (nothing sent while it was gone, then note-offs and
  All Notes Off / All Sound Off on every channel jamd plays on, then music);
* a keyboard unplugged mid-phrase: the phrase ends ("input lost"), the
  accompaniment ends with every note ended;
* python-rtmidi that cannot load libasound: the line names the library and the package.

The real thing over JACK is tests/test_hotplug_jack.py.
"""

from __future__ import annotations

import builtins
import logging
import time

import pytest
from fakes import fake_model

from jamd import cli
from jamd.config import Config
from jamd.errors import MidiSystemError
from jamd.live.session import LiveSession
from jamd.midi import ports
from jamd.midi.hotplug import (
    ChangeLog,
    Devices,
    DeviceWatcher,
    FollowedInput,
    FollowedOutput,
    first_match,
    matches,
)
from jamd.sync.clock import ManualClock
from jamd.tokens import Note

ON, OFF, CC = 0x90, 0x80, 0xB0


# -- patterns ---------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("keystation", "Keystation 49:Keystation 49 MIDI 1 24:0", True),   # part of the name, any case
    ("SYNTH:IN", "synth:in", True),
    ("synth:in", "synth:out", False),
    ("synth*", "synth:in", True),                                       # a glob: the whole name
    ("synth*", "my synth:in", False),
    ("*synth*", "my synth:in", True),
    ("synth:in_[12]", "Synth:In_2", True),
    ("synth:in_[12]", "synth:in_3", False),
    ("synth:in?", "synth:in", False),
])
def test_a_pattern_is_a_part_of_the_name_or_a_glob_on_all_of_it_in_any_case(pattern, name, expected):
    assert matches(pattern, name) is expected


def test_the_first_matching_port_in_the_systems_order_is_taken():
    names = ["system:midi_capture_1", "a2j:USB Keystation [20] (capture): MIDI 1", "keystation:out"]
    assert first_match(names, "keystation") == names[1]
    assert first_match(names, "keystation:*") == names[2]
    assert first_match(names, "nothing") is None


# -- the change log ----------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_change_log_lets_a_burst_through_then_one_line_per_refill_with_a_count():
    t = FakeTime()
    changes = ChangeLog(burst=3, refill_s=5.0, now=t)
    got = []
    for i in range(6):  # six changes in 0.5 s: three logged, three held back
        got.append(changes.line("output", f"change {i}"))
        t.t += 0.1
    assert got == ["change 0", "change 1", "change 2", None, None, None]
    assert not changes.owed("output")  # no token yet
    t.t += 4.0  # 4.6 s after the burst began: still short of a token (3 used at 0.0-0.2 s)
    assert changes.line("output", "change 6") is None
    t.t = 100.0 + 5.0 + 0.05  # one token back (5 s after the first line)
    assert changes.owed("output")
    assert changes.line("output", "change 7") == "change 7 (4 earlier change(s) not logged: the device flaps)"
    assert not changes.owed("output")
    assert changes.line("output", "change 8") is None
    assert changes.line("input", "other port") == "other port"  # each port has its own bucket


# -- in-memory MIDI ports ------------------------------------------------------
class Bus:
    """The ports a MIDI system lists: name -> what that port received (one list per plug-in)."""

    def __init__(self) -> None:
        self.ports: dict[str, list] = {}

    def plug(self, name: str) -> list:
        self.ports[name] = []
        return self.ports[name]

    def unplug(self, name: str) -> None:
        del self.ports[name]


class FakeRtMidiPort:
    """python-rtmidi's MidiOut/MidiIn as far as jamd's hotplug uses them.  A connection is
    to one plug-in of a device: plugged in again, it is a new port that needs a new connection."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.port: str | None = None
        self.target: list | None = None
        self.opened: list[tuple[str, str]] = []
        self.callbacks = 0

    def get_ports(self) -> list[str]:
        return list(self.bus.ports)

    def is_port_open(self) -> bool:
        return self.port is not None

    def open_port(self, index: int, name: str) -> None:
        self.port = self.get_ports()[index]
        self.target = self.bus.ports[self.port]
        self.opened.append((self.port, name))

    def close_port(self) -> None:
        self.port = self.target = None

    def cancel_callback(self) -> None:  # MidiIn's (jamd.midi.closing drains it before the close)
        pass

    def send_message(self, message) -> None:
        if self.port is not None and self.bus.ports.get(self.port) is self.target:
            self.target.append(tuple(message))

    def delete(self) -> None:
        pass


def live(mode: str, **sets):
    cfg = Config().replace(**{"live.mode": mode, **sets})
    clock = ManualClock(120)
    return cfg, clock


def run_to(s, clock, step, player=()):
    """Time moves a 16th at a time: input arrives, the engine works, the sender sends what is due."""
    player = list(player)
    here = clock.now_step()
    while here < step:
        here = min(step, int(here) + 1)
        while player and player[0][0] <= here:
            at, m = player.pop(0)
            clock.advance_to_step(at)
            s.engine.midi_in(m, clock.now_ns())
        clock.advance_to_step(here)
        s.engine.run_once()
        s.scheduler.flush_until(here)


def test_a_synth_plugged_back_gets_every_note_ended_before_jamd_plays_on(caplog):
    caplog.set_level(logging.INFO, logger="jamd.midi.hotplug")
    bus = Bus()
    first = bus.plug("synth:in")
    out = FollowedOutput(FakeRtMidiPort(bus), "SYNTH", "jamd out", settle_s=0)
    devices = Devices("FAKE", output=out, changes=ChangeLog(now=FakeTime()))
    assert devices.open("output") == "synth:in"
    cfg, clock = live("continuous", **{"harmony.chords_channel": 5, "harmony.bass_channel": 6})
    s = LiveSession(cfg, out, fake_model(), clock=clock)
    s.silence_predecessor()
    watcher = DeviceWatcher(devices, s.engine.inbox.put)
    assert watcher.poll() == []  # nothing changed
    run_to(s, clock, 21)  # the first bar (from step 16): 60 at 16-17.8, 62 at 18-19.8, 64 at 20-23.6
    assert s.scheduler.sounding() == [(1, 64)]
    assert watcher.poll() == []  # the watcher's last look before the unplug: 60's and 62's ends confirmed
    bus.unplug("synth:in")
    assert watcher.poll() == [("device", devices, "output", None)]
    run_to(s, clock, 35)  # into nothing: 64 ends, 65 and 67 play, then the second bar's 60 and 62 (at 34)
    assert s.scheduler.sounding() == [(1, 62)]
    second = bus.plug("synth:in")
    assert watcher.poll() == [("device", devices, "output", "synth:in")]
    run_to(s, clock, 39)  # 62 ends at 35.8, 64 from 36 (to 39.6)
    silence = [(CC | ch, n, 0) for ch in (0, 4, 5, 9) for n in (123, 120)]
    assert first == silence + [(ON, 60, 90), (OFF, 60, 0), (ON, 62, 90), (OFF, 62, 0), (ON, 64, 90)]
    # plugged back: the note it still held (64), then all notes off on the melody's,
    # chords', bass's and metronome's channels, then the music from where it is now
    assert second == [(OFF, 64, 0)] + silence + [(OFF, 62, 0), (ON, 64, 90)]
    assert out.dropped == 8  # 64's note-off; 65, 67 and 60 on and off; 62's note-on
    assert [r.getMessage() for r in caplog.records] == [
        "midi.connect_output: connected to 'synth:in'",
        "midi.connect_output: lost 'synth:in'; waiting for it to come back",
        "midi.connect_output: reconnected to 'synth:in', all notes off",
    ]
    s.close()
    assert second[-2:] == [(OFF, 64, 0), (CC, 123, 0)]  # the end: every note off


def _followed(pattern: str = "synth", own=()):
    bus = Bus()
    out = FollowedOutput(FakeRtMidiPort(bus), pattern, "jamd out", settle_s=0)
    devices = Devices("FAKE", output=out, changes=ChangeLog(now=FakeTime()), own=own)
    return bus, out, devices


def _apply(queue: list[tuple], channels=(1,)) -> list:
    changes = [devs.apply(side, name, set(channels)) for _, devs, side, name in queue]
    queue.clear()
    return changes


def test_a_note_off_sent_between_the_unplug_and_the_poll_noticing_it_is_sent_again_on_replug():
    # The fault: note-offs sent while the port was already gone but jamd did not know yet
    # went nowhere; the synth held the note (76) and the replug ended only 74.
    bus, out, devices = _followed()
    first = bus.plug("synth:in")
    assert devices.open("output") == "synth:in"
    queue: list[tuple] = []
    watcher = DeviceWatcher(devices, queue.append)
    for m in [(ON, 72, 90), (OFF, 72, 0), (ON, 76, 90), (ON | 1, 48, 80)]:
        out.send(m)
    assert watcher.poll() == []  # the synth seen after 72's note-off: 72 has surely ended
    assert out.possibly_hanging() == [(0, 76), (1, 48)]
    bus.unplug("synth:in")  # really gone; jamd does not know until its next poll
    for m in [(OFF, 76, 0), (ON, 74, 90), (CC | 1, 123, 0)]:
        out.send(m)  # counted as delivered, but went nowhere
    assert out.possibly_hanging() == [(0, 74), (0, 76), (1, 48)]
    assert watcher.poll() == [("device", devices, "output", None)]
    assert _apply(queue) == ["lost"]
    out.send((OFF, 74, 0))  # dropped
    second = bus.plug("synth:in")
    assert watcher.poll() == [("device", devices, "output", "synth:in")]
    assert _apply(queue, (1, 2)) == ["reconnected"]
    out.send((ON, 60, 90))
    assert first == [(ON, 72, 90), (OFF, 72, 0), (ON, 76, 90), (ON | 1, 48, 80)]
    # every note the synth may hold, in (channel, pitch) order, then the silence, then music
    assert second == [(OFF, 74, 0), (OFF, 76, 0), (OFF | 1, 48, 0),
                      (CC, 123, 0), (CC, 120, 0), (CC | 1, 123, 0), (CC | 1, 120, 0), (ON, 60, 90)]
    assert out.possibly_hanging() == [(0, 60)]


def test_a_note_off_is_confirmed_only_by_a_look_that_still_sees_the_device():
    bus, out, devices = _followed()
    bus.plug("synth:in")
    devices.open("output")
    out.send((ON, 60, 90))
    out.send((OFF, 60, 0))
    bus.unplug("synth:in")
    bus.plug("other:in")
    out.list_ports()  # a look without the device confirms nothing
    assert out.possibly_hanging() == [(0, 60)]
    bus.plug("synth:in")
    out.list_ports()  # the device there after the note-off: confirmed
    assert out.possibly_hanging() == []


def test_told_of_ports_coming_and_going_the_watcher_lists_only_then_and_a_quiet_period_confirms():
    # JACK's port registration callback (`jack_watch`): no listing every 0.5 s (each maps
    # the server's port table again); a whole quiet poll period since a note ended, with no
    # port gone, confirms it reached the synth
    bus, out, devices = _followed()
    first = bus.plug("synth:in")
    devices.open("output")
    listed = []
    devices.after_listing = lambda: listed.append(True)
    queue: list[tuple] = []
    watcher = DeviceWatcher(devices, queue.append, events=True)
    out.send((ON, 60, 90))
    out.send((OFF, 60, 0))
    assert watcher.step(changed=False) == [] and listed == []  # quiet: no listing
    assert out.possibly_hanging() == [(0, 60)]  # 60 ended during this period: not yet sure
    out.send((ON, 62, 90))
    assert watcher.step(changed=False) == []
    assert out.possibly_hanging() == [(0, 62)]  # a whole quiet period after 60's end
    bus.unplug("synth:in")
    out.send((OFF, 62, 0))  # before the news of the port gone reached jamd: into nothing
    assert watcher.step(changed=True) == [("device", devices, "output", None)] and listed == [True]
    assert _apply(queue) == ["lost"]
    assert watcher.step(changed=False) == []  # quiet while it is gone: nothing is confirmed
    second = bus.plug("synth:in")
    assert watcher.step(changed=True) == [("device", devices, "output", "synth:in")]
    assert _apply(queue) == ["reconnected"]
    assert first == [(ON, 60, 90), (OFF, 60, 0), (ON, 62, 90)]
    assert second == [(OFF, 62, 0), (CC, 123, 0), (CC, 120, 0)]


@pytest.mark.parametrize("pattern", ["out", "*", "*out*", "jamd"])
def test_jamds_own_ports_never_match_a_pattern(pattern):
    own = {"jamd", "jamd-in", "jamd-clock", "jamd-watch"}
    bus = Bus()
    for name in ("jamd:jamd out", "jamd-clock:clock out", "jamd-in:jamd in"):
        bus.plug(name)
    inp = FollowedInput(FakeRtMidiPort(bus), pattern, "jamd in")
    devices = Devices("FAKE", inp=inp, changes=ChangeLog(now=FakeTime()), own=own)
    assert devices.open("input") is None  # jamd waits rather than listening to itself
    queue: list[tuple] = []
    watcher = DeviceWatcher(devices, queue.append)
    assert watcher.poll() == []
    bus.plug("jamd-01:out" if pattern != "jamd" else "jamd-keys:jamd out")  # another client
    assert [item[3] for item in watcher.poll()] == ["jamd-01:out" if pattern != "jamd" else "jamd-keys:jamd out"]
    assert _apply(queue) == ["connected"]
    assert inp.connected != "jamd:jamd out"
    assert first_match(["jamd:jamd out", "keys:out"], "out", own) == "keys:out"
    assert ports.own_clients("jamd") == own


def test_systemds_status_follows_every_connect_and_loss_and_ends_on_the_truth():
    from test_service import Listener, _abstract_name

    from jamd.sync.notify import Notifier, socket_address

    address = socket_address(_abstract_name())
    listener = Listener(address)
    notifier = Notifier(address)
    t = FakeTime()
    bus = Bus()
    out = FollowedOutput(FakeRtMidiPort(bus), "synth*", "jamd out", settle_s=0)
    inp = FollowedInput(FakeRtMidiPort(bus), "keys", "jamd in")
    devices = Devices("FAKE", output=out, inp=inp, changes=ChangeLog(burst=3, refill_s=5.0, now=t))
    devices.notify = lambda where: notifier.status(f"running: {where}")
    queue: list[tuple] = []
    watcher = DeviceWatcher(devices, queue.append)
    try:
        devices.open("output")
        devices.open("input")
        assert devices.describe() == "out (waiting for 'synth*'), in (waiting for 'keys')"
        bus.plug("synth:in")
        watcher.poll()
        _apply(queue)
        assert listener.wait_for("STATUS=running: out 'synth:in', in (waiting for 'keys')", 2), listener.lines()
        bus.plug("keys:out")
        watcher.poll()
        _apply(queue)
        assert listener.wait_for("STATUS=running: out 'synth:in', in 'keys:out'", 2), listener.lines()
        bus.unplug("synth:in")
        watcher.poll()
        _apply(queue)
        assert listener.wait_for("STATUS=running: out (waiting for 'synth*'), in 'keys:out'", 2), listener.lines()
        bus.plug("synth:in")  # the bucket (3) is empty: held back ...
        watcher.poll()
        _apply(queue)
        time.sleep(0.2)
        assert listener.lines()[-1] == "STATUS=running: out (waiting for 'synth*'), in 'keys:out'"
        t.t += 5.0  # ... and sent once a token is back, by the watcher's next round
        devices.report_owed()
        end = time.monotonic() + 2
        while len(listener.lines()) < 4 and time.monotonic() < end:
            time.sleep(0.01)
        assert listener.lines()[-1] == "STATUS=running: out 'synth:in', in 'keys:out'"
        assert sum(line.startswith("STATUS=") for line in listener.lines()) == 4
    finally:
        notifier.close()
        listener.close()


def test_a_start_without_the_synth_waits_then_connects_with_all_notes_off_first(caplog):
    caplog.set_level(logging.INFO, logger="jamd.midi.hotplug")
    bus = Bus()
    out = FollowedOutput(FakeRtMidiPort(bus), "synth*", "jamd out", settle_s=0)
    devices = Devices("FAKE", output=out, changes=ChangeLog(now=FakeTime()))
    assert devices.open("output") is None
    cfg, clock = live("continuous")
    s = LiveSession(cfg, out, fake_model(), clock=clock)
    s.silence_predecessor()  # into nothing: no synth yet
    watcher = DeviceWatcher(devices, s.engine.inbox.put)
    run_to(s, clock, 19)
    assert watcher.poll() == []
    synth = bus.plug("synth:in")
    assert watcher.poll() == [("device", devices, "output", "synth:in")]
    run_to(s, clock, 21)
    # 62 started at 18 unheard: its note-off passes (harmless); no note jamd
    # "sent" before the synth was there sounds now
    assert synth == [(CC | ch, n, 0) for ch in (0, 1, 2, 9) for n in (123, 120)] + [(OFF, 62, 0), (ON, 64, 90)]
    assert [r.getMessage() for r in caplog.records] == [
        "midi.connect_output: waiting for a port matching 'synth*' on FAKE; jamd plays on and connects when it appears",
        "midi.connect_output: connected to 'synth:in'",
    ]
    s.close()


def test_a_flapping_synth_costs_a_few_lines_and_the_log_ends_on_the_truth(caplog):
    caplog.set_level(logging.INFO, logger="jamd.midi.hotplug")
    bus, t = Bus(), FakeTime()
    bus.plug("synth:in")
    out = FollowedOutput(FakeRtMidiPort(bus), "synth", "jamd out", settle_s=0)
    devices = Devices("FAKE", output=out, changes=ChangeLog(burst=4, refill_s=5.0, now=t))
    devices.open("output")
    queue: list[tuple] = []
    watcher = DeviceWatcher(devices, queue.append)
    for _ in range(10):  # out and in every half second, 10 times
        for plug in (bus.unplug, bus.plug):
            plug("synth:in")
            watcher.poll()
            t.t += 0.5
            for _, devs, side, name in queue:
                devs.apply(side, name, {1})
            queue.clear()
            devices.report_owed()
    bus.unplug("synth:in")  # and it ends unplugged
    watcher.poll()
    for _, devs, side, name in queue:
        devs.apply(side, name, {1})
    t.t += 5.0
    devices.report_owed()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "midi.connect_output: connected to 'synth:in'",
        "midi.connect_output: lost 'synth:in'; waiting for it to come back",
        "midi.connect_output: reconnected to 'synth:in', all notes off",
        "midi.connect_output: lost 'synth:in'; waiting for it to come back",
        # 4 lines at 100.0-101.5 s emptied the bucket (a token back every 5 s): the
        # six changes at 102.0-104.5 s are held back, and the one at 105.0 s says so
        "midi.connect_output: reconnected to 'synth:in', all notes off (6 earlier change(s) not logged: "
        "the device flaps)",
        "midi.connect_output: reconnected to 'synth:in', all notes off (9 earlier change(s) not logged: "
        "the device flaps)",
        # the last change (unplugged, at 110.0 s) held back, then told once a token is back
        "midi.connect_output: waiting for a port matching 'synth' (1 earlier change(s) not logged: the device flaps)",
    ]


def test_the_engine_thread_alone_connects_and_a_refused_connect_is_tried_again():
    bus = Bus()
    port = FakeRtMidiPort(bus)
    out = FollowedOutput(port, "synth", "jamd out", settle_s=0)
    devices = Devices("FAKE", output=out, changes=ChangeLog(now=FakeTime()))
    queue: list[tuple] = []
    devices.watcher = watcher = DeviceWatcher(devices, queue.append)
    bus.plug("synth:in")
    assert watcher.poll() == [("device", devices, "output", "synth:in")]
    assert port.opened == []  # the watcher only enqueues
    bus.unplug("synth:in")  # gone again before the engine got to it
    assert devices.apply("output", "synth:in", {1}) is None
    bus.plug("synth:in")
    assert watcher.poll() == [("device", devices, "output", "synth:in")]  # forgotten: reported again
    assert devices.apply("output", "synth:in", {1}) == "connected"
    assert port.opened == [("synth:in", "jamd out")]


def test_a_keyboard_pulled_mid_phrase_ends_the_phrase_and_the_accompaniment_cleanly(caplog):
    bus = Bus()
    bus.plug("keys:out")
    port = FakeRtMidiPort(bus)
    inp = FollowedInput(port, "keys", "jamd in")
    armed = []
    inp.on_open = lambda: armed.append(True)
    devices = Devices("FAKE", inp=inp, changes=ChangeLog(now=FakeTime()))
    assert devices.open("input") == "keys:out" and armed == [True]
    cfg, clock = live("accompany", **{"harmony.parts": ["melody"]})
    recorded = FollowedOutput(FakeRtMidiPort(bus), "synth", "jamd out", settle_s=0)
    synth = bus.plug("synth:in")
    recorded.connect("synth:in", silence=False)
    s = LiveSession(cfg, recorded, fake_model(), clock=clock)
    watcher = DeviceWatcher(devices, s.engine.inbox.put)
    phrase = [Note(0, 60, 4), Note(4, 64, 4), Note(8, 67, 4), Note(12, 72, 4), Note(16, 74, 4), Note(20, 76, 12)]
    player = sorted([(n.start, [ON, n.pitch, 100]) for n in phrase] + [(n.end, [OFF, n.pitch, 0]) for n in phrase[:-1]])
    run_to(s, clock, 22, player)  # 76 held from step 20: the accompaniment plays from bar 2 (step 16)
    assert s.engine.capture.active and s.engine.capture.held == {76: 20}
    assert any(m[0] == ON for m in synth)
    bus.unplug("keys:out")  # the keyboard's note-off for 76 will never come
    assert watcher.poll() == [("device", devices, "input", None)]
    run_to(s, clock, 23)
    assert [(p.reason, p.notes[-1]) for p in s.engine.phrases] == [("input lost", Note(20, 76, 3))]
    assert not s.engine.capture.active and s.engine.next_bar is None
    run_to(s, clock, 64)
    assert s.scheduler.sounding() == [] and s.scheduler.pending() == 0
    sounding: set[tuple[int, int]] = set()
    for m in synth:
        if m[0] & 0xF0 == ON and m[2]:
            sounding.add((m[0] & 0x0F, m[1]))
        elif m[0] & 0xF0 in (ON, OFF):
            sounding.discard((m[0] & 0x0F, m[1]))
    assert sounding == set()  # every note the accompaniment played has ended, without a panic
    assert "midi.connect_input: lost 'keys:out'; waiting for it to come back" in caplog.text
    bus.plug("keys:out")
    assert watcher.poll() == [("device", devices, "input", "keys:out")]
    s.engine.run_once()
    assert inp.connected == "keys:out" and armed == [True, True]  # the callback armed again
    s.close()


# -- python-rtmidi without its C library -------------------------------------------
def _failing_import(message: str, exc_type=ImportError):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "rtmidi" or name.startswith("rtmidi."):
            raise exc_type(message)
        return real(name, *args, **kwargs)

    return fake


def test_a_missing_libasound_is_named_with_its_debian_package(monkeypatch, capsys):
    monkeypatch.delitem(__import__("sys").modules, "rtmidi", raising=False)
    monkeypatch.setattr(builtins, "__import__", _failing_import(
        "libasound.so.2: cannot open shared object file: No such file or directory"))
    with pytest.raises(MidiSystemError) as err:
        ports._rtmidi()
    text = str(err.value)
    assert text.startswith("python-rtmidi cannot load libasound.so.2, the ALSA library")
    assert "sudo apt install libasound2;" in text and "libasound2t64" in text
    assert "not installed" not in text
    assert cli.main(["ports"]) != 0
    stderr = capsys.readouterr().err
    assert [line for line in stderr.splitlines() if line.startswith("jamd:")] == [f"jamd: {text}"]
    assert "Traceback" not in stderr


def test_python_rtmidi_itself_missing_still_says_so(monkeypatch):
    monkeypatch.delitem(__import__("sys").modules, "rtmidi", raising=False)
    monkeypatch.setattr(builtins, "__import__", _failing_import("No module named 'rtmidi'", ModuleNotFoundError))
    with pytest.raises(MidiSystemError, match=r"^python-rtmidi is not installed: pip install python-rtmidi$"):
        ports._rtmidi()
