"""The generation thread of `jamd run`: input in, bars of notes scheduled out.

One thread drains the input queue (MIDI bytes put there by the port callback,
config reloads put there by the main thread), captures phrases, applies CC
controls and keeps generation at least `clock.lookahead_bars` ahead of
playback, bar by bar, in one of three modes:

* continuous: plays without end from `live.default_seed`; every phrase the
  player finishes re-seeds it (in the player's key);
* call-response: waits for a phrase, then answers with N bars starting on the
  next bar line, then listens again;
* accompany: plays while the player plays, re-seeded from their latest bar.

It never sleeps on time itself: it waits on the input queue with a timeout
that is the next thing it has to do.  Only the sender thread keeps time.
"""

from __future__ import annotations

import gc
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import MODES, Config
from ..inference.bar_source import BarSource
from ..music import keys
from ..sync.clock import Clock
from ..sync.clock_follower import ClockFollower, FollowedClock, SyncEvent
from ..sync.link import LINK_POLL_S, LinkFollower
from ..sync.scheduler import NoteHandle, Scheduler, ask_realtime
from ..sync.transport import MasterSync, Metronome
from ..tokens import HOLD, Note, fit_pitch_to_vocab, is_pitch, notes_to_symbols, parse_seed
from .phrase import Decoder, EchoGuard, Event, Phrase, PhraseCapture
from .shaping import Shaper

log = logging.getLogger(__name__)

# A silence is declared over this long before its deadline, so the answer can
# be generated in time to start on the bar line where the silence ends.
ANSWER_LEAD_NS = 200_000_000
# The first bar of a stream starts at the next bar line at least this far away.
START_MARGIN_NS = 20_000_000
MAX_WAIT_S = 0.25
# Woken by input, the engine lets this long's worth of it gather before handling
# it.  Every message is timestamped in the input callback, so this costs a
# phrase nothing, and a control CC this little; but a flood (10,000 messages/s,
# issue 4 section 8) then wakes the engine a few hundred times a second instead
# of once per message, and the input callback, which runs in the MIDI system's
# own thread (JACK's process cycle), no longer waits for the GIL behind the
# engine for every message.  Measured (`jamd bench --suite realtime --flood`):
# without this the flood delayed the output's arrival by up to tens of ms although
# the sender sent every event on time; with it, within a JACK period of no input.
INPUT_BATCH_S = 0.002


@dataclass
class _Open:
    """The note being written across bar boundaries by the stream."""

    pitch: int  # sounding pitch, after transposition and shaping
    start: int
    handle: NoteHandle


class NoteStream:
    """Turns generated bars of symbols into scheduled notes.

    A held note may continue into the next bar, whose symbols do not exist
    yet; so a note is scheduled with a provisional note-off at the end of the
    bar it is known to reach, and the note-off is moved later if the next bar
    holds it on.  Every note-on therefore always has a note-off queued.
    """

    def __init__(self, scheduler: Scheduler, shaper: Shaper, tag: str):
        self.scheduler = scheduler
        self.shaper = shaper
        self.tag = tag
        self.open: _Open | None = None
        self.notes: list[Note] = []  # what was written, in sounding pitches (tests, key checks)

    def _close(self, end: int) -> None:
        o = self.open
        if o is None:
            return
        self.scheduler.move_note_off(o.handle, self.shaper.off_step(o.start, end))
        self.notes[-1] = Note(o.start, o.pitch, end - o.start)
        self.open = None

    def write_bar(self, symbols: list[str], start: int, transpose: int) -> None:
        step = start
        for step, s in enumerate(symbols, start):
            if s == HOLD:
                continue
            self._close(step)
            if is_pitch(s):
                pitch = self.shaper.pitch(int(s) + transpose)
                handle = self.scheduler.schedule_note(
                    step, self.shaper.off_step(step, start + len(symbols)), pitch,
                    self.shaper.velocity, self.shaper.channel, self.tag)
                self.open = _Open(pitch, step, handle)
                self.notes.append(Note(step, pitch, start + len(symbols) - step))
        end = start + len(symbols)
        if self.open is not None and self.open.handle.off_step < self.shaper.off_step(self.open.start, end):
            self.scheduler.move_note_off(self.open.handle, self.shaper.off_step(self.open.start, end))
            o = self.open
            self.notes[-1] = Note(o.start, o.pitch, end - o.start)

    def cut(self) -> None:
        """Forget the open note (after a panic, which has already ended it)."""
        self.open = None


class Engine:
    """The generation thread: owns the model, the modes and the phrase capture."""

    def __init__(self, cfg: Config, clock: Clock, scheduler: Scheduler,
                 open_model: Callable[[str], BarSource], echo: EchoGuard | None = None,
                 now_ns: Callable[[], int] | None = None, clock_scheduler: Scheduler | None = None):
        self.cfg = cfg
        self.clock = clock
        self.scheduler = scheduler
        self.open_model = open_model
        self.echo = echo
        self.now_ns = now_ns or clock.now_ns
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.decoder = Decoder()
        self.capture = PhraseCapture(clock, cfg.live)
        self.shaper = Shaper(cfg.output)
        self.rng = np.random.default_rng(cfg.model.random_seed)
        self.temperature = cfg.model.temperature
        self.mode = cfg.live.mode
        self.response_bars = cfg.live.response_bars
        self.model_name = cfg.model.name
        self.model: BarSource = open_model(self.model_name)
        self.playing = True
        self.stream = NoteStream(scheduler, self.shaper, "stream")
        self.next_bar: int | None = None  # where the next generated bar goes; None: not streaming
        self.answer_stream = NoteStream(scheduler, self.shaper, "answer-0")
        self.answer_count = 0
        self.answers: list[tuple[int, list[Note]]] = []  # (first step, notes) of each answer
        self._followed_bar: int | None = None
        self.transpose = 0  # semitones from the model's C/Am back to the player's key
        self.seed: list[str] = []
        self.last_key: keys.Key | None = None
        self.phrases: list[Phrase] = []  # finished phrases, newest last (tests, benchmark)
        self.events: list[tuple[str, int]] = []  # (what, perf_counter_ns): "phrase-end", "answer-scheduled"
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = False
        self.warm_up: Callable[[], None] | None = None  # run first on the engine thread
        self._reseed_default()
        self.metronome = Metronome(cfg.metronome, clock, scheduler)
        # jamd as master (clock.send): ticks and transport for a slaved DAW, on
        # the note output or on a clock port of its own (`clock_scheduler`).
        self.master: MasterSync | None = None
        if cfg.clock.send:
            self.master = MasterSync(clock, clock_scheduler or scheduler, clock_scheduler is None,
                                     cfg.clock.send_while_stopped)
        # jamd as a Link peer (clock.source: link): the session sets the clock's grid.
        self.link: LinkFollower | None = None
        self._link_offset: int | None = None
        # jamd as slave (clock.source: midi): the follower sets the clock's grid.
        self.follower: ClockFollower | None = None
        self.step_offset = 0  # jamd step s is the master's song 16th s - step_offset
        if cfg.clock.source == "midi":
            if not isinstance(clock, FollowedClock):
                raise TypeError("clock.source: midi needs a FollowedClock")
            self.follower = ClockFollower(cfg.clock.follow_window, cfg.clock.loss_timeout_ms * 1_000_000)
            self.playing = False  # until the master's Start or Continue
            log.info("waiting for Start or Continue from the MIDI clock on the input")
        else:
            if cfg.clock.source == "link":
                if not isinstance(clock, FollowedClock):
                    raise TypeError("clock.source: link needs a FollowedClock")
                self.link = LinkFollower(cfg.clock.bpm, clock.beats_per_bar, cfg.clock.link_start_stop)
                self._link_sync(starting=True)
            if self.link is None or self.playing:
                self._start_playing(self.cfg.metronome.count_in_bars, master_start=True)
            if self.master is not None:
                # queued now, so the clock runs from the start, through the warm-up
                self.master.fill(self.clock.now_step() + self._lookahead_steps())

    # -- the thread ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="jamd-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self.inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.link is not None:
            self.link.close()

    def midi_in(self, message: list[int], t_ns: int | None = None) -> None:
        """The input callback's whole job: timestamp and enqueue."""
        self.inbox.put((self.now_ns() if t_ns is None else t_ns, message))

    def reload(self, cfg: Config) -> None:
        self.inbox.put(("config", cfg))

    def _run(self) -> None:
        try:
            ask_realtime(self.cfg.clock.realtime_priority - 1, "engine")
            if self.warm_up is not None:
                # Here, not in a thread of its own: a normal-priority thread
                # holding the GIL through a long import, preempted on a busy
                # machine, would keep the real-time sender waiting for the GIL.
                self.warm_up()
                # All that is loaded by now (music21, ONNX Runtime, numpy) lives as long
                # as the daemon: keep it out of the cyclic collector's full passes, which
                # hold the GIL (and so the sender) for tens of ms over a heap this size
                # and which a flood of input, allocating as it goes, triggers more often.
                gc.freeze()
            while not self._stop:
                try:
                    item = self.inbox.get(timeout=self._wait_s())
                except queue.Empty:
                    item = ()
                if item:  # input: let the rest of a burst arrive first (see INPUT_BATCH_S)
                    time.sleep(INPUT_BATCH_S)
                while True:
                    if item is None:
                        return
                    if item:
                        self.handle(item)
                    try:
                        item = self.inbox.get_nowait()
                    except queue.Empty:
                        break
                self.tick()
        except BaseException as exc:  # any failure must reach the main thread, which silences the port
            self.error = exc
            log.error("engine thread failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            if self.on_error is not None:
                self.on_error(exc)

    def _wait_s(self) -> float:
        """Until the next thing to do: a bar to generate or a phrase to close."""
        now = self.clock.now_step()
        todo = [now + MAX_WAIT_S * 1e9 / self.clock.step_ns]
        if self.next_bar is not None:
            todo.append(self.next_bar - self._lookahead_steps())
        deadline = self.capture.silence_deadline()
        if deadline is not None:
            todo.append(deadline - self._lead_steps())
        if self.capture.active and self.capture.start is not None:
            todo.append(self.capture.start + self.cfg.live.max_phrase_bars * self.clock.steps_per_bar)
        if self.link is not None:
            todo.append(now + LINK_POLL_S * 1e9 / self.clock.step_ns)
        if self.follower is not None:
            lost_at = self.follower.loss_deadline_ns()
            if lost_at is not None:
                todo.append(self.clock.step_at(lost_at + 1))
        return max(0.0, (min(todo) - now) * self.clock.step_ns / 1e9)

    def run_once(self) -> None:
        """Handle everything queued and tick once, on this thread (tests)."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item:
                self.handle(item)
        self.tick()

    # -- input ---------------------------------------------------------------
    def handle(self, item: tuple) -> None:
        if item[0] == "config":
            self.apply_config(item[1])
            return
        t_ns, data = item
        if self.follower is not None and data and (data[0] >= 0xF0 or max(data) >= 0xF8):
            self._sync(t_ns, data)
            if data[0] >= 0xF0:
                return  # clock, transport or song position: nothing for the decoder
        try:
            events = self.decoder.decode(data)
        except Exception as exc:  # bad input never costs the user more than a log line
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
                self._phrase_done(self.capture.poll(t_ns, end_cc=True), t_ns)
            elif ctl.channel is None or ev.channel == ctl.channel:
                self.control(ev.a, ev.b)
        elif ev.kind == "on":
            if not self.capture.active:
                self._followed_bar = None
            self.capture.note_on(ev.a, t_ns)
        else:
            self.capture.note_off(ev.a, t_ns)

    def control(self, number: int, value: int) -> None:
        """One CC from the player (numbers from `control.*`)."""
        ctl = self.cfg.control
        if number == ctl.panic_cc:
            log.info("panic")
            self.silence()
        elif number == ctl.temperature_cc:
            self.temperature = round(value / 127 * 2, 3)
            log.info("temperature %.2f", self.temperature)
        elif number == ctl.mode_cc:
            self.set_mode(MODES[min(value * len(MODES) // 128, len(MODES) - 1)])
        elif number == ctl.start_stop_cc:
            if value >= 64 and not self.playing:
                if self.follower is not None and not self.follower.running:
                    log.info("start: waits for the MIDI clock's Start or Continue")
                    return
                log.info("start")
                if self.follower is not None:
                    self.playing = True
                    self._stream_from(self.clock.now_step())
                else:
                    self._start_playing(self.cfg.metronome.count_in_bars)
            elif value < 64 and self.playing:
                log.info("stop")
                self._stop_playing()
        elif number == ctl.response_length_cc:
            self.response_bars = value
            log.info("answers: %s", f"{value} bars" if value else "as long as the phrase")
        elif number == ctl.model_select_cc:
            models = self.cfg.model.models
            self.set_model(models[min(value * len(models) // 128, len(models) - 1)])

    # -- state changes -----------------------------------------------------
    def silence(self) -> None:
        """Panic: all notes off now, drop what is queued, end any answer."""
        dropped = self.scheduler.panic()
        self.stream.cut()
        self.answer_stream.cut()
        self.next_bar = None
        now = self.clock.now_step()
        # The panic dropped the whole queue: clicks and (on a shared port) the
        # clock go on from here; the slave must never miss a tick.
        self.metronome.after_panic(now)
        if self.master is not None:
            self.master.after_panic(now, dropped)
        if self.mode == "continuous" and self.playing:
            self._begin_stream()

    def _stop_playing(self) -> None:
        """Stop (CC, Link, the master's Stop or a lost clock): silence, no more bars or
        clicks, and a slaved DAW stops too."""
        self.playing = False
        self.silence()
        self.metronome.stop()
        if self.master is not None:
            self.master.stop(self.clock.now_step())

    def _start_playing(self, count_in_bars: int, master_start: bool = False) -> None:
        """Start on jamd's own clock: count-in, then the first bar (and the slave's Start)."""
        self.playing = True
        soon = self.clock.now_step() + START_MARGIN_NS / self.clock.step_ns
        first = self.metronome.start(self.clock.next_bar_line(soon), count_in_bars)
        if self.master is not None:
            if master_start:
                self.master.start(first)
            else:
                self.master.resume(first)
        if self.mode == "continuous":
            self.next_bar = first

    def set_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        log.info("mode %s", mode)
        self.mode = mode
        self.silence()

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
        if self.seed:
            self.model.reseed(self._fit(self.seed))
        else:
            self._reseed_default()

    def apply_config(self, cfg: Config) -> None:
        """A reloaded config.yaml: tempo, shaping, modes and controls change live."""
        old = self.cfg
        self.cfg = cfg
        if self.link is not None and cfg.clock.bpm != old.clock.bpm:
            self.link.set_tempo(cfg.clock.bpm)  # proposed to the session; every peer follows
            log.info("Link: proposed %g BPM", cfg.clock.bpm)
        elif self.follower is None and self.link is None and (
                cfg.clock.bpm, cfg.clock.beats_per_bar, cfg.clock.beat_unit) != (
                old.clock.bpm, old.clock.beats_per_bar, old.clock.beat_unit):
            self.clock.set_tempo(cfg.clock.bpm, cfg.clock.beats_per_bar, cfg.clock.beat_unit)
            log.info("clock %s", self.clock.describe())
        self.scheduler.spin_ns = cfg.clock.spin_us * 1000
        self.scheduler.tick_spin_ns = cfg.clock.tick_spin_us * 1000
        self.scheduler.offset_ns = int(cfg.output.offset_ms * 1e6)
        self.shaper = Shaper(cfg.output)
        self.stream.shaper = self.answer_stream.shaper = self.shaper
        self.capture.cfg = cfg.live
        if cfg.model.temperature != old.model.temperature:
            self.temperature = cfg.model.temperature
        if cfg.live.response_bars != old.live.response_bars:
            self.response_bars = cfg.live.response_bars
        if cfg.live.mode != old.live.mode:
            self.set_mode(cfg.live.mode)
        if cfg.model.name != old.model.name:
            self.set_model(cfg.model.name)
        self.metronome.cfg = cfg.metronome
        if cfg.midi != old.midi or (cfg.clock.source, cfg.clock.send, cfg.clock.port) != (
                old.clock.source, old.clock.send, old.clock.port):
            log.warning("midi.* and clock source/send/port changes take effect at the next start of jamd run")

    # -- seeding -----------------------------------------------------------
    def _fit(self, symbols: list[str]) -> list[str]:
        vocab = self.model.vocab
        return [str(fit_pitch_to_vocab(int(s), vocab)) if is_pitch(s) else s for s in symbols]

    def _reseed_default(self) -> None:
        self.seed = parse_seed(self.cfg.live.default_seed)
        self.transpose = 0
        self.model.reseed(self._fit(self.seed))

    def reseed_from(self, notes: list[Note], n_steps: int, key_notes: list[Note] | None = None) -> None:
        """Detect the key of `notes` (or of `key_notes`), move them to C/Am, prime the model."""
        key = keys.detect_key(key_notes or notes)
        shift = key.shift_to_normal()
        symbols = notes_to_symbols(keys.transpose_notes(notes, shift), n_steps)
        self.seed = self._fit(symbols)
        self.transpose = -shift
        self.last_key = key
        self.model.reseed(self.seed)
        log.debug("seeded from %d notes in %s (moved %+d)", len(notes), key.name, shift)

    # -- generation --------------------------------------------------------
    def _lookahead_steps(self) -> float:
        return self.cfg.clock.lookahead_bars * self.clock.steps_per_bar

    def _lead_steps(self) -> float:
        silence = self.cfg.live.silence_bars * self.clock.steps_per_bar
        return min(ANSWER_LEAD_NS / self.clock.step_ns, silence / 2)

    def song_bar(self, step: float) -> int:
        """The master's bar number (1 = its Start) of jamd step `step` when following;
        jamd's own bar number otherwise."""
        spb = self.clock.steps_per_bar
        if self.follower is not None:
            return int((step - self.step_offset) // spb) + 1
        return int(step // spb)

    def _begin_stream(self) -> None:
        if self.next_bar is None:
            soon = self.clock.now_step() + START_MARGIN_NS / self.clock.step_ns
            self.next_bar = self.clock.next_bar_line(soon)

    def _phrase_done(self, phrase: Phrase | None, t_ns: int) -> None:
        if phrase is None:
            return
        self.events.append(("phrase-end", t_ns))
        self.phrases.append(phrase)
        log.info("phrase: %d notes%s, %d bar(s), ended by %s", len(phrase.notes),
                 f" ({phrase.dropped} more not kept: phrase full)" if phrase.dropped else "",
                 phrase.bars, phrase.reason)
        if self.mode == "accompany":
            self.next_bar = None  # the player stopped: so does the accompaniment
            return
        notes, n_steps = phrase.bar_aligned_notes()
        self.reseed_from(notes, n_steps)
        if self.mode == "call-response" and self.playing:
            self.answer(phrase)

    def answer(self, phrase: Phrase) -> None:
        """Generate the whole answer now and schedule it from the next bar line.

        The start is chosen after generating, so a slow generation moves the
        answer to a later bar line rather than making it late.  An answer
        still playing is replaced: its notes not yet started are dropped.
        """
        spb = self.clock.steps_per_bar
        bars = self.response_bars or phrase.bars
        symbols: list[str] = []
        for i in range(bars):
            symbols += self.model.next_bar(spb, self.temperature, self.rng, first_note=i == 0)
        soon = self.clock.now_step() + START_MARGIN_NS / self.clock.step_ns
        start = self.clock.next_bar_line(max(phrase.closed_at, soon))
        self.scheduler.cancel(self.answer_stream.tag)
        self.answer_count += 1
        self.answer_stream = NoteStream(self.scheduler, self.shaper, f"answer-{self.answer_count}")
        self.answer_stream.write_bar(symbols, start, self.transpose)
        self.answers.append((start, self.answer_stream.notes))
        self.events.append(("answer-scheduled", self.now_ns()))
        log.info("answer: %d bar(s) from bar %d, %s", bars, start // spb,
                 self.last_key.name if self.last_key else "default key")

    def tick(self) -> None:
        if self.link is not None:
            self._link_sync()
        if self.follower is not None:
            for ev in self.follower.check(self.now_ns()):
                self._sync_event(ev)
        self._phrase_done(self.capture.poll(self.now_ns(), self._lead_steps()), self.now_ns())
        if self.mode == "accompany" and self.capture.active and self.playing:
            self._begin_stream()
        self._fill()
        horizon = self.clock.now_step() + self._lookahead_steps()
        if self.playing:
            self.metronome.fill(horizon)
        if self.master is not None:
            self.master.fill(horizon)

    # -- following an Ableton Link session (clock.source: link) ----------------
    def _link_sync(self, starting: bool = False) -> None:
        """Put the clock on the session's grid; act on a jump of its beat timeline
        (jamd joined a session that counts beats from elsewhere) and on start/stop."""
        link = self.link
        assert link is not None and isinstance(self.clock, FollowedClock)
        spb = self.clock.steps_per_bar
        per_beat = self.clock.steps_per_beat
        beat, (origin_ns, origin_step, step_ns), playing = link.state(per_beat)
        here = self.clock.now_step()
        jumped = self._link_offset is not None and abs(beat * per_beat + self._link_offset - here) > per_beat
        if self._link_offset is None or jumped:
            # Link's bars are jamd's bars (the offset is whole bars) and jamd's
            # steps never run backwards.
            self._link_offset = spb * math.ceil((here - beat * per_beat) / spb)
        self.clock.follow((origin_ns, origin_step + self._link_offset, step_ns))
        if jumped:
            log.info("Link: the session's beat timeline moved; re-aligned on its bar lines")
            self.silence()
            return
        peers = link.poll_peers()
        if peers is not None:
            log.info("Link: %d peer(s), %.1f BPM", peers, 60e9 / step_ns / per_beat)
        if starting:
            log.info("Link: enabled, %d peer(s) so far, %.1f BPM", link.peers, 60e9 / step_ns / per_beat)
            self.playing = playing
            if not playing:
                log.info("Link: waiting for the session to start playing")
        elif playing and not self.playing:
            log.info("Link: the session started")
            self._start_playing(0)
        elif not playing and self.playing:
            log.info("Link: the session stopped")
            self._stop_playing()

    # -- following an external MIDI clock (clock.source: midi) ---------------
    def _sync(self, t_ns: int, data: list[int]) -> None:
        follower = self.follower
        assert follower is not None and isinstance(self.clock, FollowedClock)
        for ev in follower.feed(t_ns, data):
            self._sync_event(ev)
        if follower.running:
            # After every clock: the grid follows the master's, queued notes included.
            self.clock.follow(follower.timebase(self.step_offset))

    def _sync_event(self, ev: SyncEvent) -> None:
        follower = self.follower
        assert follower is not None and isinstance(self.clock, FollowedClock)
        spb = self.clock.steps_per_bar
        if ev.kind in ("stop", "lost"):
            if ev.kind == "lost":
                log.warning("MIDI clock lost (none for %d ms): stopped; waiting for Start or Continue",
                            self.cfg.clock.loss_timeout_ms)
            else:
                log.info("clock: Stop at song position %s", _where(ev.position_16th, spb))
            self._stop_playing()
        elif ev.kind in ("start", "continue") or (ev.kind == "position" and follower.running):
            self.silence()
            # Song 16th p becomes jamd step p + step_offset: a whole number of bars
            # on, so song bar lines are jamd bar lines, and at least a bar past
            # jamd's present so its steps never run backwards.
            p = ev.position_16th
            self.step_offset = spb * (math.ceil((self.clock.now_step() - p) / spb) + 1)
            self.clock.follow(follower.timebase(self.step_offset))
            self.playing = True
            self._stream_from(p + self.step_offset)
            bpm = follower.bpm
            log.info("clock: %s at song position %s%s", ev.kind.capitalize(), _where(p, spb),
                     f", {bpm:.1f} BPM" if bpm else "")
        elif ev.kind == "position":
            log.info("clock: song position %s", _where(ev.position_16th, spb))
        elif ev.kind == "tempo":
            log.debug("clock: tempo change detected, now %.1f BPM", follower.bpm or 0.0)

    def _stream_from(self, step: float) -> None:
        """Following: play from `step` on (the next bar line for bars, the next beat for clicks)."""
        self.next_bar = None
        if self.mode == "continuous" or (self.mode == "accompany" and self.capture.active):
            self.next_bar = self.clock.next_bar_line(step)
        self.metronome.start_at(step)

    def _fill(self) -> None:
        """Continuous and accompany: generate bars until the lookahead is covered."""
        if not self.playing or self.mode == "call-response":
            self.next_bar = None
            return
        spb = self.clock.steps_per_bar
        while self.next_bar is not None and self.next_bar <= self.clock.now_step() + self._lookahead_steps():
            if self.next_bar < self.clock.now_step():
                # Generation fell behind (a stalled machine): skip to the next
                # bar line instead of sending a burst of late notes.
                log.warning("generation fell behind; skipping to the next bar line")
                self.stream.cut()
                self.next_bar = self.clock.next_bar_line(self.clock.now_step() + 1)
            if self.mode == "accompany":
                self._follow_player()
            symbols = self.model.next_bar(spb, self.temperature, self.rng)
            # one line per bar (debug): lets the JACK tests check one bar per bar line
            log.debug("bar %d from %s: %s", self.song_bar(self.next_bar), self.model_name, " ".join(symbols))
            self.stream.write_bar(symbols, self.next_bar, self.transpose)
            self.next_bar += spb

    def _follow_player(self) -> None:
        """Accompany: re-seed from the player's latest complete bar, once per bar."""
        spb = self.clock.steps_per_bar
        bar_line = int(self.clock.now_step() // spb) * spb
        if bar_line == self._followed_bar:
            return
        self._followed_bar = bar_line
        latest = self.capture.latest_bar(bar_line)
        if latest:
            first = bar_line - spb
            self.reseed_from([Note(n.start - first, n.pitch, n.duration) for n in latest], spb,
                             key_notes=self.capture.notes)



def _where(position_16th: float, steps_per_bar: int) -> str:
    """A song position as a musician reads it: 16th 36 in 4/4 is "bar 3, 16th 5"."""
    n = int(position_16th)
    return f"bar {n // steps_per_bar + 1}, 16th {n % steps_per_bar + 1}"
