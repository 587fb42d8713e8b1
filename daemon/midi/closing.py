"""Closing an rtmidi input that has a callback, without the interpreter crashing.

python-rtmidi's `MidiIn.cancel_callback` (which `close_port` calls first) drops the
(function, data) tuple whose address RtMidi hands to its C callback.  A JACK process
thread that has already been given that address and is waiting for the GIL (held by the
thread closing the port) then runs the callback on freed memory: a segmentation fault,
seen once in the JACK test rig's teardown while MIDI clock was still arriving.  Sleeping
first releases the GIL, so a callback already under way finishes before the tuple goes;
what remains is a window of microseconds instead of however long the closer held the GIL.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

# Longer than a JACK period at any usual setting (256 frames at 48 kHz is 5.3 ms), so a
# cycle that began before the sleep has delivered its events and returned.
DRAIN_CALLBACKS_S = 0.02


def close_input_port(midiin: Any, drain_s: float = DRAIN_CALLBACKS_S) -> None:
    """Close `midiin`'s port (python-rtmidi cancels its callback first) after `drain_s` seconds (s)
    without the GIL; the RtMidi object stays, to open a port again (a device reconnected)."""
    time.sleep(drain_s)
    midiin.cancel_callback()
    midiin.close_port()


def close_midi_in(midiin: Any, drain_s: float = DRAIN_CALLBACKS_S) -> None:
    """Cancel `midiin`'s callback, close its port and free its RtMidi object (and client),
    after `drain_s` seconds (s) without the GIL; never raises (the port may already be gone)."""
    with contextlib.suppress(Exception):
        close_input_port(midiin, drain_s)
        # Free the RtMidi object (and its JACK client) now, while the interpreter is
        # whole, not during interpreter teardown, where a JACK thread still running is a
        # known way to crash at exit.
        midiin.delete()
