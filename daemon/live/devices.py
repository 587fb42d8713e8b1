"""What the engine does when a followed MIDI device comes or goes (`midi.hotplug`).

The device watcher only enqueues `("device", devices, side, name)`; the engine
thread calls `on_device` with it, in order with the MIDI input, so the one
clock and the one scheduler never see a change from another thread.

* Output back (or there at last): `Devices.apply` reconnects, and the
  reconnect itself sends note-offs and All Notes Off on every channel jamd
  plays on (`channels`) before the sender can send anything else.  Nothing
  sent while it was gone was kept, so nothing old is played late.
* Input gone: the player's phrase ends there ("input lost"), as if the end CC
  had come: held notes end, and the accompaniment ends cleanly (no note of the
  phrase is left held, so no chord waits for it).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..config import Config
from ..midi.hotplug import Devices

if TYPE_CHECKING:  # the engine imports this module
    from .engine import Engine


def channels(cfg: Config) -> set[int]:
    """Every channel jamd plays on (1-16): the melody's, the metronome's, the chords' and the bass's."""
    return {cfg.output.channel, cfg.metronome.channel, cfg.harmony.chords_channel, cfg.harmony.bass_channel}


def on_device(engine: Engine, devices: Devices, side: str, name: str | None) -> str | None:
    """Act on one change the watcher saw (`side` "output" or "input", `name` None: gone);
    returns the change made ("connected", "reconnected", "lost") or None."""
    change = devices.apply(side, name, channels(engine.cfg))
    if side == "input" and change == "lost":
        now = engine.now_ns()
        phrase = engine.capture.poll(now, end_cc=True)
        if phrase is not None:
            phrase = dataclasses.replace(phrase, reason="input lost")
        engine.phrase_done(phrase, now)
    return change
