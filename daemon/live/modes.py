"""The three ways jamd plays with a player, each a small class the engine calls.

The engine owns time, the model, the streams and the phrase capture; a mode
decides what happens at three moments:

* `on_phrase_end(phrase)`: the player finished a phrase;
* `on_tick()`: every engine tick (input handled, before bars are generated);
* `on_bar(bar_step)`: just before the engine generates the bar that starts at
  grid step `bar_step` (16ths): the mode's `bar_due`, then the model hears where
  in the clock's bar that step falls (`align_model`, issue 16's metric position).

`streams` says whether the mode generates bars a bar ahead at all, and
`wants_stream()` whether a stream should start now.
A new mode (the harmony part, say) is a new class here and a name in
`config.MODES`, not more branches in the engine.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from ..tokens import Note
from .note_stream import NoteStream
from .phrase import Phrase

# The first bar of a stream starts at the next bar line at least this far away.
START_MARGIN_NS = 20_000_000
# Accompany's first chords wait for this many notes of the player's first phrase: music21 calls
# F# F# G A (a tune in D) B major, and a wrong key on the first chords is worse than a late start.
# After a first phrase the chords start at once, in the key the player had.
MIN_KEY_NOTES = 5

if TYPE_CHECKING:  # the engine imports this module; modes only call it
    from .engine import Engine

log = logging.getLogger(__name__)


class Mode:
    name: ClassVar[str]
    streams: ClassVar[bool] = True
    chords_under_melody: ClassVar[bool] = True  # harmony on: chords and bass under jamd's own bars

    def __init__(self, engine: Engine):
        self.engine = engine

    def wants_stream(self) -> bool:
        """Whether bars stream while playing (continuous, or accompany while the player plays)."""
        return False

    def on_phrase_end(self, phrase: Phrase) -> None:
        """Default: the phrase re-seeds the model, in the player's key."""
        notes, n_steps = phrase.bar_aligned_notes()
        self.engine.reseed_from(notes, n_steps)

    def on_tick(self) -> None:
        pass

    def on_bar(self, bar_step: int) -> None:
        """Just before the engine generates the bar at grid step `bar_step`: the mode's `bar_due`,
        then the model is told where that bar's first step falls in the clock's bar."""
        self.bar_due(bar_step)
        align_model(self.engine, bar_step)

    def bar_due(self, bar_step: int) -> None:
        """What the mode does before the bar at `bar_step` is generated (default: nothing)."""


def align_model(engine: Engine, step: float) -> None:
    """Tell the engine's model (if it keeps a bar grid: `LstmBars.align`) that the next step it
    generates falls at grid step `step`: its bar position is step mod the clock's 16ths per bar
    (grid step 0 is a downbeat: `Clock.bar_of`)."""
    align = getattr(engine.model, "align", None)
    if align is not None:
        spb = engine.clock.steps_per_bar
        align(int(step) % spb, spb)


class Continuous(Mode):
    """Plays without end from `live.default_seed`; every phrase re-seeds it."""

    name = "continuous"

    def wants_stream(self) -> bool:
        return True


class CallResponse(Mode):
    """Waits for a phrase, answers it from the next bar line, listens again."""

    name = "call-response"
    streams = False  # answers are generated whole, when the phrase ends

    def on_phrase_end(self, phrase: Phrase) -> None:
        super().on_phrase_end(phrase)
        if self.engine.playing:
            self.answer(phrase)

    def answer(self, phrase: Phrase) -> None:
        """Generate the whole answer now and schedule it from the next bar line.

        The start is chosen after generating, so a slow generation moves the
        answer to a later bar line rather than making it late.  An answer
        still playing is replaced: its notes not yet started are dropped.
        """
        engine = self.engine
        spb = engine.clock.steps_per_bar
        bars = engine.response_bars or phrase.bars
        # the answer starts on a bar line (chosen below, once it is generated): its first step is a downbeat
        align_model(engine, 0)
        symbols: list[str] = []
        for i in range(bars):
            symbols += engine.model.next_bar(spb, engine.temperature, engine.rng, first_note=i == 0)
        soon = engine.clock.now_step() + START_MARGIN_NS / engine.clock.step_ns
        start = engine.clock.next_bar_line(max(phrase.closed_at, soon))
        engine.scheduler.cancel(engine.answer_stream.tag)
        engine.harmony.cancel(engine.answer_stream.tag)  # and the chords under it; a new answer starts afresh
        engine.answer_count += 1
        engine.answer_stream = NoteStream(engine.scheduler, engine.shaper, f"answer-{engine.answer_count}")
        engine.answer_stream.write_bar(symbols, start, engine.transpose)
        engine.harmonize(symbols, start, engine.answer_stream.tag)
        engine.answers.append((start, engine.answer_stream.notes))
        engine.events.append(("answer-scheduled", engine.now_ns()))
        log.info("answer: %d bar(s) from bar %d, %s", bars, start // spb,
                 engine.last_key.name if engine.last_key else "default key")


class Accompany(Mode):
    """Plays while the player plays: chords and bass chosen beat by beat from what they played
    (`harmony_part`), and/or a second melody re-seeded from their latest bar once per bar.

    Which parts play is `harmony.parts`; with the harmony switched off (`control.harmony_cc`)
    only the melody part does.
    """

    name = "accompany"
    chords_under_melody = False  # the chords follow the player, not jamd's second melody

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self._followed: tuple[int | None, int] | None = None  # (phrase start, bar line) last followed
        self._keyed: int | None = None  # the start of the phrase whose key the chords follow
        self._until: float | None = None  # after a phrase cut at its longest: the chords end here unless
        # the player goes on

    def parts(self) -> set[str]:
        return set(self.engine.cfg.harmony.parts) if self.engine.harmony_on else {"melody"}

    def wants_stream(self) -> bool:
        return self.engine.capture.active and "melody" in self.parts()

    def on_phrase_end(self, phrase: Phrase) -> None:
        self.engine.next_bar = None  # the player stopped: so does the accompaniment
        if phrase.reason == "max-length":
            # cut at live.max_phrase_bars while they play on: the chords go on, unless no new
            # phrase starts before a silence would have ended this one
            self._until = phrase.end + self.engine.cfg.live.silence_bars * self.engine.clock.steps_per_bar
        else:
            self._end_chords()

    def _end_chords(self) -> None:
        spbeat = self.engine.clock.steps_per_bar // self.engine.clock.beats_per_bar
        now = self.engine.clock.now_step()
        self.engine.harmony.end_at(-(-now // spbeat) * spbeat)  # at the next beat
        self._until = None

    def on_tick(self) -> None:
        engine = self.engine
        if not engine.playing:
            return
        parts = self.parts()
        if "melody" in parts and engine.capture.active:
            engine.begin_stream()
        if engine.capture.active:
            self._until = None
        elif self._until is not None and engine.clock.now_step() >= self._until:
            self._end_chords()
        if {"chords", "bass"} & parts and (engine.capture.active or engine.harmony.following):
            if engine.harmony.ready():
                self._chords()

    def _chords(self) -> None:
        """Choose every beat's chord that is due (``harmony.decide_ms`` before its beat)."""
        engine, harmony, clock = self.engine, self.engine.harmony, self.engine.clock
        spbeat = clock.steps_per_bar // clock.beats_per_bar
        now = clock.now_step()
        if not harmony.following:
            if engine.seeding.key is None and len(engine.capture.heard(now)) < MIN_KEY_NOTES:
                return  # the first phrase: listen until its key can be told
            harmony.follow_from(int(now // spbeat + 1) * spbeat)
        while (due := harmony.next_decision_step()) is not None and due <= now:
            notes = engine.capture.heard(harmony.pending_beat)  # a held note sounds up to the beat
            if len(notes) >= MIN_KEY_NOTES and self._keyed != engine.capture.start:
                self._follow_key(notes)  # a new phrase: the key from its first notes (else the last phrase's)
            harmony.before_beat(notes, -engine.transpose, engine.transpose)
            if len(notes) >= MIN_KEY_NOTES and harmony.pending_beat is not None \
                    and harmony.pending_beat % clock.steps_per_bar == 0:
                # the key of the phrase so far for the next bar, found now (music21 takes ~16 ms)
                # rather than just before the downbeat's chord is due
                self._follow_key(notes)

    def _follow_key(self, notes: list[Note]) -> None:
        self._keyed = self.engine.capture.start
        self.engine.seeding.follow_key(notes)

    def bar_due(self, bar_step: int) -> None:
        """Re-seed from the player's latest complete bar, once per bar of a phrase."""
        engine = self.engine
        spb = engine.clock.steps_per_bar
        bar_line = int(engine.clock.now_step() // spb) * spb
        key = (engine.capture.start, bar_line)
        if key == self._followed:
            return
        self._followed = key
        latest = engine.capture.latest_bar(bar_line)
        if latest:
            first = bar_line - spb
            engine.reseed_from([Note(n.start - first, n.pitch, n.duration) for n in latest], spb,
                               key_notes=engine.capture.notes)


MODE_CLASSES: dict[str, type[Mode]] = {m.name: m for m in (Continuous, CallResponse, Accompany)}
