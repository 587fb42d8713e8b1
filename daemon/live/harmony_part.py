"""Chords and bass in `jamd run`: each part on its own channel, under the player or under jamd.

Two ways in, both ending in the same scheduling (`_play`):

* **Under a live player** (accompany, `before_beat`): the engine calls it
  ``harmony.decide_ms`` before each beat of the player's phrase, with what the
  player has played so far.  The beat's chord is chosen from that alone
  (strictly causal: the melody up to the end of the beat before) and sent on
  the beat, through the same scheduler as every note.
* **Under jamd's own melody** (continuous and call-response, `under_bar`):
  jamd writes its melody a bar ahead, so the chords of a bar are chosen after
  hearing all of it (`jamd.inference.harmony_track.BarHarmonizer`).

Both work in C major / A minor and move the result by the engine's
`transpose`.  A part's note is scheduled with a provisional note-off at the
end of its beat and extended while the part holds; when a later strike ends
it, its note-off moves back to the gate's share of its length if that is
still ahead.  A panic (stop, mode or model change, exit) sends the note-offs
of every sounding note of every channel and CC 123 on each (the scheduler's),
after which `cut` forgets what was sounding here.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from ..config import Config, HarmonyConfig, ModelConfig
from ..errors import JamdError
from ..inference.forecast import MelodyForecast, window_symbols
from ..inference.harmony import Harmonizer, HarmonyModel, beats_per_chord, may_change
from ..inference.harmony_track import BarHarmonizer
from ..music import chords
from ..music.patterns import BeatWrite, PartWriter, part_actions
from ..music.voicing import Voicer
from ..sync.clock import Clock
from ..sync.scheduler import NoteHandle, Scheduler
from ..tokens import Note
from .loop import Throttle

log = logging.getLogger(__name__)

HARMONY_PARTS = ("chords", "bass")
# A note-off moved back to the gate must stay this far ahead of now (16th steps),
# else it stays where it is: a message scheduled in the past would be sent late.
OFF_MARGIN_STEPS = 0.05


def needed_at_start(cfg: Config) -> bool:
    """Whether `jamd run` with `cfg` plays chords or bass from its first bar: accompany with
    chords or bass in `harmony.parts`, or another mode with `harmony.under_melody`."""
    if cfg.live.mode == "accompany":
        return bool({"chords", "bass"} & set(cfg.harmony.parts))
    return cfg.harmony.under_melody


class HarmonyParts:
    """The chords and bass parts of one `jamd run` (see the module doc).

    `open_model(name)` loads the harmony model (`HarmonyModel.load` by
    default); it is loaded at the first use, so a session that never plays
    chords never pays for it.  A model that does not load is logged once and
    the harmony stays off: the melody plays on.
    """

    def __init__(self, cfg: HarmonyConfig, scheduler: Scheduler, clock: Clock, rng: np.random.Generator,
                 open_model: Callable[[str], HarmonyModel] | None = None, model_cfg: ModelConfig | None = None):
        self.cfg = cfg
        self.model_cfg = model_cfg or ModelConfig()
        self.forecast: MelodyForecast | None = None  # accompany: the player's coming notes guessed
        self._fed: int | None = None  # the grid step up to which the forecast has heard the player
        self.scheduler = scheduler
        self.clock = clock
        self.rng = rng
        self.open_model = open_model or HarmonyModel.load
        self._model: HarmonyModel | None = None
        self._failed: str | None = None  # the model name that failed to load
        self.harmonizer: Harmonizer | None = None
        self.voicer = Voicer(cfg.chords_lowest, cfg.chords_highest)
        self.writers = {part: PartWriter(part) for part in HARMONY_PARTS}
        self._handles: dict[tuple[str, int, int], NoteHandle] = {}  # (part, start, pitch) -> queued note
        self._last: dict[tuple[str, int], NoteHandle] = {}  # (part, pitch) -> its latest note
        self._tags: set[str] = set()  # scheduler tags of the notes queued here
        self._bars: BarHarmonizer | None = None
        self._next_beat: int | None = None  # accompany: the next beat (grid step) to decide
        self._prev: np.ndarray | None = None
        self._late = Throttle()
        # (beat step, chord name as sounding) of the latest chords: tests, and the debug log
        self.chords_played: deque[tuple[int, str]] = deque(maxlen=512)

    # -- the model -----------------------------------------------------------
    def ready(self) -> bool:
        """Load the harmony model if needed; False (logged once) when it cannot be loaded."""
        if self.harmonizer is not None:
            return True
        if self._failed == self.cfg.model:
            return False
        try:
            self.load()
        except Exception as exc:  # a bad model met while playing costs the chords, never the melody
            self._failed = self.cfg.model
            log.error("harmony model %s not loaded, playing without chords and bass: %s", self.cfg.model, exc)
            return False
        return True

    def load(self) -> None:
        """Load the harmony model now; raises what `open_model` raises (`ModelError` for a bad model)."""
        try:
            self._model = self.open_model(self.cfg.model)
        except JamdError as exc:
            raise type(exc)(f"harmony.model: {exc}") from None
        self.harmonizer = Harmonizer(self._model, self.cfg.temperature, self.cfg.melody_fit, self.rng)
        self.forecast = None
        if self.cfg.forecast_model is not None:
            try:
                self.forecast = MelodyForecast.load(self.cfg.forecast_model, self.model_cfg,
                                                    self.cfg.forecast_rollouts, self.rng)
            except JamdError as exc:
                raise type(exc)(f"harmony.forecast_model: {exc}") from None
        on = {"chords": f"chords on channel {self.cfg.chords_channel}", "bass": f"bass on {self.cfg.bass_channel}"}
        log.info("harmony: %s, %s harmonic rhythm, %s pattern, %s", self.cfg.model, self.cfg.rhythm,
                 self.cfg.pattern, ", ".join(on[p] for p in HARMONY_PARTS if p in self.parts))

    def reload(self, cfg: HarmonyConfig) -> None:
        """A reloaded config: settings apply from the next chord; a new model loads at the next use."""
        model_changed = cfg.model != self.cfg.model
        old, self.cfg = self.cfg, cfg
        self.voicer = Voicer(cfg.chords_lowest, cfg.chords_highest)
        if model_changed or cfg.forecast_model != old.forecast_model:
            self.harmonizer, self._model, self._failed = None, None, None
        elif self.harmonizer is not None:
            self.harmonizer.temperature, self.harmonizer.melody_fit = cfg.temperature, cfg.melody_fit
            if self.forecast is not None:
                self.forecast.rollouts = cfg.forecast_rollouts
        self.cut()

    @property
    def parts(self) -> set[str]:
        """The parts played: those of `harmony.parts` among chords and bass; both when it lists
        neither (jamd's own melody with `harmony.under_melody` and parts [melody])."""
        return set(self.cfg.parts) & set(HARMONY_PARTS) or set(HARMONY_PARTS)

    # -- state ------------------------------------------------------------------
    def cut(self) -> None:
        """Forget what was sounding and the chords before (after a panic, which ended the notes)."""
        for w in self.writers.values():
            w.stop()
        self._handles.clear()
        self._last.clear()
        self._bars = None
        self._next_beat = None
        self._fed = None
        self._prev = None
        self.voicer.reset()
        if self.harmonizer is not None:
            self.harmonizer.reset()

    def cancel(self, tag: str) -> None:
        """Drop the chords and bass queued under `tag` (a replaced answer) not yet struck, and start
        afresh; notes already sounding keep their note-offs."""
        for part in HARMONY_PARTS:
            self.scheduler.cancel(f"{tag}-{part}")
        self.cut()

    def release(self) -> None:
        """The harmony switched off while jamd's melody plays on: drop the chords and bass not yet
        struck, end the sounding ones now, and forget them (the melody is left alone)."""
        for tag in self._tags:
            self.scheduler.cancel(tag)
        soon = self.clock.now_step() + OFF_MARGIN_STEPS
        for handle in self._handles.values():
            if handle.on_sent and not handle.off_sent and handle.off_step > soon:
                self.scheduler.move_note_off(handle, soon)
        self.cut()

    def end_at(self, step: float) -> None:
        """End every sounding chord and bass note at `step` (the player stopped); forget the chords."""
        for part, w in self.writers.items():
            for n in w.stop(int(np.ceil(step))):
                self._off(part, n)
        self.cut()

    # -- under a live player ------------------------------------------------
    def next_decision_step(self) -> float | None:
        """Grid step (16ths) when the next beat's chord is due to be chosen; None: none pending."""
        if self._next_beat is None:
            return None
        return self._next_beat - self.cfg.decide_ms * 1e6 / self.clock.step_ns

    @property
    def pending_beat(self) -> int | None:
        """The grid step of the beat whose chord is chosen next (None: not following a player)."""
        return self._next_beat

    @property
    def following(self) -> bool:
        """Whether beats of a live player are being accompanied (a chord decision is pending)."""
        return self._next_beat is not None

    def follow_from(self, beat_step: int) -> None:
        """Start accompanying: the first chord is the one of the beat at `beat_step`; the forecast
        starts listening a bar before it (the player began in that bar)."""
        if self._next_beat is None:
            self._next_beat = beat_step
            self._fed = beat_step - self.clock.steps_per_bar
            if self.forecast is not None:  # the first step it hears, _fed, where the clock's bar has it
                self.forecast.reset(self._fed % self.clock.steps_per_bar, self.clock.steps_per_bar)

    def before_beat(self, heard: list[Note], shift: int, transpose: int) -> None:
        """Choose and schedule the chord of the pending beat, from `heard` (the player's notes so
        far, grid steps, sounding pitches) moved by `shift` to C/Am; `transpose` moves the chord back.

        A beat whose time has already come (a stalled machine) is not struck: its chord holds and
        the next beat is pending.  Needs `ready()`."""
        beat = self._next_beat
        spbeat, bpb = self.clock.steps_per_bar // self.clock.beats_per_bar, self.clock.beats_per_bar
        if beat is None or self.harmonizer is None:
            return
        self._next_beat = beat + spbeat
        in_bar = int(beat // spbeat) % bpb
        before = [Note(n.start, n.pitch + shift, n.duration) for n in heard if n.start < beat]
        prev = chords.melody_features(chords.sounding_from_notes(before, beat - spbeat, spbeat))
        late = self.clock.now_step() >= beat
        change = may_change(in_bar, self.cfg.rhythm, bpb) and not late
        span = None
        if self.forecast is not None and self._fed is not None:
            self.forecast.hear(window_symbols(before, self._fed, beat - self._fed))
            self._fed = beat
            if change or self.harmonizer.current.chord == chords.NO_CHORD:
                # the notes the player will likely play while this chord lasts (to the next change)
                per_chord = beats_per_chord(self.cfg.rhythm, bpb)
                span = self.forecast.onsets((per_chord - in_bar % per_chord) * spbeat, spbeat)
        h = self.harmonizer.decide(prev, in_bar, change=change, span=span)
        if late:
            if self._late.ready():
                log.warning("harmony: a beat's chord was due before it could be chosen; the chord before holds")
            return
        recent = [n.pitch for n in heard if n.end > beat - self.clock.steps_per_bar]
        below = min(recent) if recent else None
        self._beat(h, beat, spbeat, in_bar, bpb, transpose, below)

    def _beat(self, h, beat: int, spbeat: int, in_bar: int, bpb: int, transpose: int, below: int | None) -> None:
        pitches, bass = self.voicer.voice(h.chord, transpose, below, bass_pc=h.bass)
        strike = part_actions(self.cfg.pattern, h.changed, in_bar, bpb)
        if h.changed:
            self.chords_played.append((beat, chords.chord_name(h.chord, transpose)))
        parts = {"chords": pitches, "bass": [bass] if bass is not None else []}
        for part in self.parts:
            self._play(part, self.writers[part].beat(parts[part], strike[part], beat, spbeat))

    # -- under jamd's own melody ------------------------------------------
    def under_bar(self, symbols: list[str], start: int, transpose: int, tag: str = "harmony") -> None:
        """Chords and bass under one bar of jamd's melody (`symbols` in C/Am, from grid step `start`),
        chosen with the whole bar heard.  Needs `ready()`."""
        if self.harmonizer is None:
            return
        spbeat = self.clock.steps_per_bar // self.clock.beats_per_bar
        if self._bars is None:
            self._bars = BarHarmonizer(self.harmonizer, self.voicer, self.cfg, self.clock.beats_per_bar, spbeat)
        for part, writes in self._bars.bar(symbols, start, transpose).items():
            for w in writes if part in self.parts else ():
                self._play(part, w, tag)
        for i, h in enumerate(self._bars.chart[-1]):
            if h.changed:
                self.chords_played.append((start + i * spbeat, chords.chord_name(h.chord, transpose)))

    # -- scheduling ---------------------------------------------------------------
    def _channel(self, part: str) -> tuple[int, int]:
        if part == "chords":
            return self.cfg.chords_channel, self.cfg.chords_velocity
        return self.cfg.bass_channel, self.cfg.bass_velocity

    def _play(self, part: str, w: BeatWrite, tag: str = "harmony") -> None:
        channel, velocity = self._channel(part)
        for n in w.ended:
            self._off(part, n)
        for n in w.extended:
            handle = self._handles.get((part, n.start, n.pitch))
            if handle is not None and not self.scheduler.move_note_off(handle, n.end):
                # its note-off went already (a late beat): the part rests until its next strike
                self._handles.pop((part, n.start, n.pitch), None)
        self._tags.add(f"{tag}-{part}")
        for n in w.started:
            before = self._last.get((part, n.pitch))
            if before is not None and not before.off_sent and before.on_step < n.start < before.off_step:
                # never two note-ons of one pitch without a note-off between (a synth would cut or hang it)
                self.scheduler.move_note_off(before, n.start)
            handle = self.scheduler.schedule_note(n.start, n.end, n.pitch, velocity, channel, f"{tag}-{part}")
            self._handles[(part, n.start, n.pitch)] = self._last[(part, n.pitch)] = handle

    def _off(self, part: str, n: Note) -> None:
        """`n` has its final length: its note-off moves back to the gate, where that is still ahead."""
        handle = self._handles.pop((part, n.start, n.pitch), None)
        if handle is None:
            return
        gated = n.start + n.duration * self.cfg.gate
        if gated < handle.off_step and gated > self.clock.now_step() + OFF_MARGIN_STEPS:
            self.scheduler.move_note_off(handle, gated)
