"""Output shaping: channel, velocity, octave shift, gate and note range.

Applied to every generated note just before it is scheduled, so models and
modes never think about the synth on the other end.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import OutputConfig


@dataclass(frozen=True)
class Shaper:
    cfg: OutputConfig

    @property
    def channel(self) -> int:
        return self.cfg.channel

    @property
    def velocity(self) -> int:
        return self.cfg.velocity

    def pitch(self, pitch: int) -> int:
        """Octave-shift, then fold into [note_min, note_max] by octaves
        (a clamp to the nearest end when the range is narrower than an octave)."""
        lo, hi = self.cfg.note_min, self.cfg.note_max
        p = pitch + 12 * self.cfg.octave_shift
        while p < lo:
            p += 12
        while p > hi:
            p -= 12
        return min(max(p, lo), hi)

    def off_step(self, on_step: float, end_step: float) -> float:
        """Where the note-off goes: the gate's share of the written length."""
        return on_step + (end_step - on_step) * self.cfg.gate
