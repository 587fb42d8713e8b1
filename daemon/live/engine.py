"""The generation thread of `jamd run`: input in, bars of notes scheduled out.

One thread drains the input queue (MIDI bytes put there by the port callback,
config reloads put there by the main thread), captures phrases, applies CC
controls and keeps generation at least `clock.lookahead_bars` ahead of
playback, bar by bar.  What it does with a phrase, a tick and a bar line
depends on the mode (`modes`: continuous, call-response, accompany); following
a DAW's MIDI clock or a Link session is the sync package's (`sync.follow_*`).

It never sleeps on time itself: it waits on the input queue with a timeout
that is the next thing it has to do.  Only the sender thread keeps time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..config import Config
from ..inference.bar_source import BarSource
from ..music import keys
from ..sync.clock import Clock
from ..sync.clock_follower import ClockFollower
from ..sync.follow import Follower
from ..sync.follow_link import LinkSync
from ..sync.follow_midi import MidiClockSync
from ..sync.scheduler import Scheduler
from ..sync.transport import MasterSync, Metronome
from ..tokens import Note
from . import controls, devices
from .harmony_part import HarmonyParts, needed_at_start
from .loop import EngineLoop, Throttle
from .modes import MODE_CLASSES, START_MARGIN_NS, Mode
from .note_stream import NoteStream
from .phrase import Decoder, EchoGuard, Event, Phrase, PhraseCapture
from .saved_state import StateSaver
from .seeding import Seeding
from .shaping import Shaper

log = logging.getLogger(__name__)

# A silence is declared over this long before its deadline, so the answer can
# be generated in time to start on the bar line where the silence ends.
ANSWER_LEAD_NS = 200_000_000
MAX_WAIT_S = 0.25


class Engine(EngineLoop):
    """The generation thread: owns the model, the mode, the streams and the phrase capture.

    It is the `sync.follow.Player` that a clock follower drives.
    """

    def __init__(self, cfg: Config, clock: Clock, scheduler: Scheduler,
                 open_model: Callable[[str], BarSource], echo: EchoGuard | None = None,
                 now_ns: Callable[[], int] | None = None, clock_scheduler: Scheduler | None = None,
                 open_harmony: Callable[[str], object] | None = None):
        super().__init__(now_ns or clock.now_ns)
        self.cfg = cfg
        self.clock = clock
        self.scheduler = scheduler
        self.open_model = open_model
        self.echo = echo
        self.decoder = Decoder()
        self.capture = PhraseCapture(clock, cfg.live)
        self.shaper = Shaper(cfg.output)
        self.rng = np.random.default_rng(cfg.model.random_seed)
        self.temperature = cfg.model.temperature
        self._mode: Mode = MODE_CLASSES[cfg.live.mode](self)
        self.response_bars = cfg.live.response_bars
        self.model_name = cfg.model.name
        self.model: BarSource = open_model(self.model_name)
        self.playing = True
        self.stream = NoteStream(scheduler, self.shaper, "stream")
        self.next_bar: int | None = None  # where the next generated bar goes; None: not streaming
        self.answer_stream = NoteStream(scheduler, self.shaper, "answer-0")
        self.answer_count = 0
        self.answers: list[tuple[int, list[Note]]] = []  # (first step, notes) of each answer
        self.seeding = Seeding(clock)
        # chords and bass (harmony.*): under the player in accompany, under jamd's melody when switched on
        self.harmony = HarmonyParts(cfg.harmony, scheduler, clock, self.rng, open_harmony, cfg.model)
        self._harmony_switch: bool | None = None  # control.harmony_cc's last word; None: the config's
        if needed_at_start(cfg):
            self.harmony.load()  # at start a bad harmony model is refused, like a bad melody model
        self.phrases: list[Phrase] = []  # finished phrases, newest last (tests, benchmark)
        self.events: list[tuple[str, int]] = []  # (what, perf_counter_ns): "phrase-end", "answer-scheduled"
        self._first_bar: int | None = None  # the first bar after Start/Continue (see stream_from)
        self._behind = Throttle()  # "fell behind" logs a line a second at most
        self._unreadable = Throttle()
        self.refused = Throttle()  # OSC values the engine's state refuses (`controls.osc`)
        self.started_ns = self.now_ns()  # uptime in /jamd/status
        self.saver: StateSaver | None = None  # remembers mode, model, ... for the next start (`jamd run`)
        self.seeding.prime_default(self.model, cfg.live.default_seed)
        self.metronome = Metronome(cfg.metronome, clock, scheduler)
        # jamd as master (clock.send): ticks and transport for a slaved DAW, on
        # the note output or on a clock port of its own (`clock_scheduler`).
        self.master: MasterSync | None = None
        if cfg.clock.send:
            self.master = MasterSync(clock, clock_scheduler or scheduler, clock_scheduler is None,
                                     cfg.clock.send_while_stopped)
        # Following a DAW's MIDI clock (clock.source: midi) or a Link session
        # (link), the follower sets the clock's grid and the transport.
        self.sync: Follower = Follower(clock)
        if cfg.clock.source == "midi":
            self.sync = MidiClockSync(cfg.clock, clock, self)
        else:
            if cfg.clock.source == "link":
                self.sync = LinkSync(cfg.clock, clock, self)
            if cfg.clock.source != "link" or self.playing:
                self.start_playing(self.cfg.metronome.count_in_bars, master_start=True)
            if self.master is not None:
                # queued now, so the clock runs from the start, through the warm-up
                self.master.fill(self.clock.now_step() + self._lookahead_steps())

    @property
    def realtime_priority(self) -> int:
        """One below the sender's: the engine holds the GIL the sender needs (see `ask_realtime`)."""
        return self.cfg.clock.realtime_priority - 1

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        self.sync.close()
        if self.saver is not None:
            self.saver.flush(self)  # a change less than a second old is not lost

    @property
    def mode(self) -> str:
        """The mode's name (`config.MODES`)."""
        return self._mode.name

    @property
    def follower(self) -> ClockFollower | None:
        """The MIDI clock follower (clock.source: midi), else None."""
        return self.sync.follower if isinstance(self.sync, MidiClockSync) else None

    def _wait_s(self) -> float:
        """Until the next thing to do: a bar to generate or a phrase to close."""
        now = self.clock.now_step()
        todo = [now + MAX_WAIT_S * 1e9 / self.clock.step_ns]
        if self.next_bar is not None:
            todo.append(self.next_bar - self._lookahead_steps())
        decide = self.harmony.next_decision_step()
        if decide is not None:
            todo.append(decide)
        deadline = self.capture.silence_deadline()
        if deadline is not None:
            todo.append(deadline - self._lead_steps())
        if self.capture.active and self.capture.start is not None:
            todo.append(self.capture.start + self.cfg.live.max_phrase_bars * self.clock.steps_per_bar)
        wake = self.sync.wake_step(now)
        if wake is not None:
            todo.append(wake)
        wait_s = max(0.0, (min(todo) - now) * self.clock.step_ns / 1e9)
        return wait_s if self.saver is None else min(wait_s, self.saver.due_in_s())

    # -- input ---------------------------------------------------------------
    def handle(self, item: tuple) -> None:
        if item[0] == "config":
            self.apply_config(item[1])
            return
        if item[0] == "osc":  # ("osc", name, value, reply) from the OSC server's thread (`live.osc`)
            controls.osc(self, *item[1:])
            return
        if item[0] == "device":  # ("device", devices, side, name) from the device watcher (`live.devices`)
            devices.on_device(self, *item[1:])
            return
        t_ns, data = item
        if self.sync.feed(t_ns, data):
            return  # clock, transport or song position: nothing for the decoder
        try:
            events = self.decoder.decode(data)
        except Exception as exc:  # bad input never costs the user more than a log line
            if self._unreadable.ready():
                log.warning("ignored an unreadable MIDI message %s: %s", list(data)[:8], exc)
            return
        for ev in events:
            if self.echo is not None and self.echo.is_echo(ev, t_ns):
                continue
            self._event(ev, t_ns)

    def _event(self, ev: Event, t_ns: int) -> None:
        ctl = self.cfg.control
        if ev.kind == "cc":
            if ev.a == self.cfg.live.end_cc:
                self.phrase_done(self.capture.poll(t_ns, end_cc=True), t_ns)
            elif ctl.channel is None or ev.channel == ctl.channel:
                self.control(ev.a, ev.b)
        elif not self.cfg.live.is_melody_channel(ev.channel):
            return  # live.input_channels: notes elsewhere (drums on 10) are not melody
        elif ev.kind == "on":
            self.capture.note_on(ev.a, t_ns)
        else:
            self.capture.note_off(ev.a, t_ns)

    def control(self, number: int, value: int) -> None:
        """One CC from the player (numbers from `control.*`; see `controls.control`)."""
        controls.control(self, number, value)

    # -- state changes -----------------------------------------------------
    def silence(self) -> None:
        """Panic: all notes off now, drop what is queued, end any answer."""
        dropped = self.scheduler.panic()
        self.stream.cut()
        self.answer_stream.cut()
        self.harmony.cut()
        self.next_bar = None
        now = self.clock.now_step()
        # The panic dropped the whole queue: clicks and (on a shared port) the
        # clock go on from here; the slave must never miss a tick.
        self.metronome.after_panic(now)
        if self.master is not None:
            self.master.after_panic(now, dropped)
        if self._mode.wants_stream() and self.playing:
            self.begin_stream()

    def stop_playing(self) -> None:
        """Stop (CC, Link, the master's Stop or a lost clock): silence, no more bars or
        clicks, and a slaved DAW stops too."""
        self.playing = False
        self.silence()
        self.metronome.stop()
        if self.master is not None:
            self.master.stop(self.clock.now_step())

    def start_playing(self, count_in_bars: int, master_start: bool = False) -> None:
        """Start on jamd's own clock: count-in, then the first bar (and the slave's Start)."""
        self.playing = True
        soon = self.clock.now_step() + START_MARGIN_NS / self.clock.step_ns
        first = self.metronome.start(self.clock.next_bar_line(soon), count_in_bars)
        if self.master is not None:
            if master_start:
                self.master.start(first)
            else:
                self.master.resume(first)
        if self._mode.wants_stream():
            self.next_bar = first

    def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        log.info("mode %s", mode)
        self._mode = MODE_CLASSES[mode](self)
        self.silence()

    @property
    def harmony_on(self) -> bool:
        """Whether chords and bass play: accompany's `harmony.parts`, or under jamd's melody in the
        other modes (`harmony.under_melody`); `control.harmony_cc` overrides both."""
        if self._harmony_switch is not None:
            return self._harmony_switch
        return self.mode == "accompany" or self.cfg.harmony.under_melody

    def set_harmony(self, on: bool) -> None:
        """Switch chords and bass on or off (the CC).  In accompany the parts change, like a mode
        change: everything sounding ends.  Under jamd's own melody only the chords and bass stop
        (or start with the next bar written); the melody plays on."""
        if on == self.harmony_on:
            return
        self._harmony_switch = on
        log.info("harmony %s", "on" if on else "off")
        if self.mode == "accompany":
            self.silence()
        elif not on:
            self.harmony.release()

    def harmonize(self, symbols: list[str], start: int, tag: str) -> None:
        """Chords and bass under jamd's own bars `symbols` (C/Am, from grid step `start`), when
        the mode plays them there and the harmony is on."""
        if self._mode.chords_under_melody and self.harmony_on and self.harmony.ready():
            spb = self.clock.steps_per_bar
            for i in range(0, len(symbols), spb):
                self.harmony.under_bar(symbols[i:i + spb], start + i, self.transpose, tag)

    def set_model(self, name: str) -> None:
        if name == self.model_name:
            return
        try:
            model = self.open_model(name)
        except Exception as exc:  # keep playing the old model
            log.error("model %s not loaded, keeping %s: %s", name, self.model_name, exc)
            return
        log.info("model %s", name)
        self.silence()
        self.model, self.model_name = model, name
        self.seeding.prime_again(self.model, self.cfg.live.default_seed)

    def apply_config(self, cfg: Config) -> None:
        """A reloaded config.yaml (see `controls.apply_config`)."""
        controls.apply_config(self, cfg)

    # -- seeding -----------------------------------------------------------
    @property
    def transpose(self) -> int:
        """Semitones from the model's C/Am back to the player's key."""
        return self.seeding.transpose

    @property
    def last_key(self) -> keys.Key | None:
        """The key of the player's latest phrase (None: none yet)."""
        return self.seeding.key

    def reseed_from(self, notes: list[Note], n_steps: int, key_notes: list[Note] | None = None) -> None:
        """Detect the key of `notes` (or of `key_notes`), move them to C/Am, prime the model."""
        self.seeding.prime_from(self.model, notes, n_steps, key_notes)

    # -- generation --------------------------------------------------------
    def _lookahead_steps(self) -> float:
        return self.cfg.clock.lookahead_bars * self.clock.steps_per_bar

    def _lead_steps(self) -> float:
        silence = self.cfg.live.silence_bars * self.clock.steps_per_bar
        return min(ANSWER_LEAD_NS / self.clock.step_ns, silence / 2)

    def song_bar(self, step: float) -> int:
        """The master's bar number (1 = its Start) of jamd step `step` when following;
        jamd's own bar number otherwise."""
        return self.sync.song_bar(step, self.clock.steps_per_bar)

    def begin_stream(self) -> None:
        """Stream from the next bar line, or from where the bars already queued end: a stream
        stopped and started again within the lookahead never writes a bar twice."""
        if self.next_bar is None:
            soon = self.clock.now_step() + START_MARGIN_NS / self.clock.step_ns
            start = self.clock.next_bar_line(soon)
            if self.stream.end is not None and start <= self.stream.end:
                start = self.stream.end  # contiguous: a held note may go on
            else:
                self.stream.cut()  # a gap: the open note ends where it was due to
                self.harmony.cut()
            self.next_bar = start

    def phrase_done(self, phrase: Phrase | None, t_ns: int) -> None:
        if phrase is None:
            return
        self.events.append(("phrase-end", t_ns))
        self.phrases.append(phrase)
        log.info("phrase: %d notes%s, %d bar(s), ended by %s", len(phrase.notes),
                 f" ({phrase.dropped} more not kept: phrase full)" if phrase.dropped else "",
                 phrase.bars, phrase.reason)
        self._mode.on_phrase_end(phrase)

    def tick(self) -> None:
        self.sync.tick(self.now_ns())
        self.phrase_done(self.capture.poll(self.now_ns(), self._lead_steps()), self.now_ns())
        self._mode.on_tick()
        self._fill()
        horizon = self.clock.now_step() + self._lookahead_steps()
        if self.playing:
            self.metronome.fill(horizon)
        if self.master is not None:
            self.master.fill(horizon)
        if self.saver is not None:  # after CCs, OSC and reloads: written here, never on the sender's path
            self.saver.poll(self)

    def stream_from(self, step: float) -> None:
        """Following: play from `step` on (the next bar line for bars, the next beat for clicks)."""
        self.next_bar = self._first_bar = None
        if self._mode.wants_stream():
            self.next_bar = self._first_bar = self.clock.next_bar_line(step)
        self.metronome.start_at(step)

    def _fill(self) -> None:
        """Continuous and accompany: generate bars until the lookahead is covered.

        One debug line a bar: the JACK tests count them."""
        if not self.playing or not self._mode.streams:
            self.next_bar = None
            return
        spb = self.clock.steps_per_bar
        budget = int(self.cfg.clock.lookahead_bars) + 2  # bars per call, so a Stop queued meanwhile is heard
        while budget and self.next_bar is not None and self.next_bar <= self.clock.now_step() + self._lookahead_steps():
            self._mode.on_bar(self.next_bar)
            symbols = self.model.next_bar(spb, self.temperature, self.rng)
            budget -= 1
            # Fell behind (a stalled machine): skip to the next bar line rather than send
            # a burst of late notes.  The first bar after Start may be up to a 16th late:
            # the master's Start arrives on its first 16th.
            late = self.clock.now_step() - self.next_bar
            if late >= 1 or (late > 0 and self.next_bar != self._first_bar):
                if self._behind.ready():
                    log.warning("generation fell behind; skipping to the next bar line")
                self.stream.cut()
                self.harmony.cut()
                self.next_bar = self.clock.next_bar_line(self.clock.now_step() + 1)
                continue
            log.debug("bar %d from %s: %s", self.song_bar(self.next_bar), self.model_name, " ".join(symbols))
            self.stream.write_bar(symbols, self.next_bar, self.transpose)
            self.harmonize(symbols, self.next_bar, self.stream.tag)
            self.next_bar += spb
