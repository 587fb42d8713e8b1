"""The field helper every config section uses: a dataclass field that carries its bounds."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def spec(default: Any = None, *, lo: float | None = None, hi: float | None = None,
          choices: tuple | None = None, factory: Any = None, filled: bool = False, port_name: bool = False) -> Any:
    # filled: no empty or blank name; port_name: a name jamd gives a MIDI client or port (filled, and
    # without ':', JACK's separator in "client:port")
    meta = {"lo": lo, "hi": hi, "choices": choices, "filled": filled or port_name, "port_name": port_name}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)
