"""jamd.midi.closing: an input's callbacks drain (GIL released) before python-rtmidi frees them."""

from __future__ import annotations

import pytest

from jamd.midi import closing


class FakeIn:
    def __init__(self, log, fail=None):
        self.log, self.fail = log, fail

    def __getattr__(self, name):
        def call():
            self.log.append(name)
            if name == self.fail:
                raise RuntimeError(f"{name} failed")
        return call


@pytest.mark.parametrize("fail", [None, "cancel_callback", "close_port"])
def test_sleep_first_then_cancel_close_delete_and_never_raise(monkeypatch, fail):
    log: list = []
    monkeypatch.setattr(closing.time, "sleep", lambda s: log.append(("sleep", s)))
    closing.close_midi_in(FakeIn(log, fail))
    full = [("sleep", closing.DRAIN_CALLBACKS_S), "cancel_callback", "close_port", "delete"]
    # a step that fails ends the close quietly: the port may already be gone
    assert log == (full if fail is None else full[: full.index(fail) + 1])
    assert closing.DRAIN_CALLBACKS_S > 256 / 48000  # longer than a usual JACK period


def test_an_input_reopened_on_another_device_drains_first_and_keeps_its_client(monkeypatch):
    """A followed input reconnecting closes only its port (the RtMidi object opens the next one)."""
    log: list = []
    monkeypatch.setattr(closing.time, "sleep", lambda s: log.append(("sleep", s)))
    closing.close_input_port(FakeIn(log))
    assert log == [("sleep", closing.DRAIN_CALLBACKS_S), "cancel_callback", "close_port"]
