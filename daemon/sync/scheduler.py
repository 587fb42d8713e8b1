"""The sender thread: sends each MIDI message at its scheduled time.

Events are queued by grid position (steps of the one `Clock`); the sender turns
a position into a deadline only when it is next, so a tempo change applies to
everything still queued.  For each deadline it waits (a condition-variable
wait, so a new earlier event or a panic wakes it), then spins on
`perf_counter_ns` for the last `spin_us` at most: the OS wakes a sleeping
thread up to a few hundred microseconds late, a spin does not (how much of
`spin_us` is needed follows the sender's own recent wake-ups: `sync.spin`).

Lateness never accumulates (deadlines come from the clock, not from the
previous send).  A late event is sent at once, counted and logged (at most one
log line per second, so a stalled machine is not also flooded with logs).
The sender never batches: it sends only what is due now and then waits for
the next deadline, so events due at different times never go out together.
After a stall (a starved machine), a note whose note-off time has already
passed is skipped and counted instead of being sent as an on+off blip.

No stuck notes: every note is scheduled as a pair (note-on, note-off), the
sender keeps the set of sounding notes, and `panic()` / `stop()` send a
note-off for each of them and CC 123 on every channel used, on the sender
thread itself (so messages never interleave from two threads).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..midi.outputs import NOTE_OFF, NOTE_ON, Output
from ..midi.realtime import ask_realtime
from .clock import Clock, ManualClock
from .spin import AdaptiveSpin

log = logging.getLogger(__name__)

# At equal times note-offs go first, so a repeated pitch is re-struck, not cut.
_PRIO_OFF, _PRIO_OTHER, _PRIO_ON = 0, 1, 2
LATE_NS = 1_000_000  # later than this counts as late (1 ms)
_LOG_EVERY_NS = 1_000_000_000


@dataclass
class NoteHandle:
    """A scheduled note; lets the engine extend a held note or cancel it."""

    channel: int
    pitch: int
    on_step: float
    off_step: float
    tag: str
    on_sent: bool = False
    off_sent: bool = False
    cancelled: bool = False
    _off_event: _Event | None = field(default=None, repr=False)


@dataclass(order=True)
class _Event:
    step: float
    prio: int
    seq: int
    message: tuple[int, ...] = field(compare=False)
    note: NoteHandle | None = field(default=None, compare=False)
    dead: bool = field(default=False, compare=False)


@dataclass
class TimingStats:
    sent: int = 0
    late: int = 0
    skipped: int = 0  # notes whose note-on was due after their note-off had passed
    max_late_ns: int = 0
    errors_ns: list[int] = field(default_factory=list)  # kept only when recording

    def as_dict(self) -> dict:
        return {"sent": self.sent, "late": self.late, "skipped": self.skipped,
                "max_late_ms": self.max_late_ns / 1e6}


class Scheduler:
    """Queue of timed MIDI messages and the thread that sends them."""

    def __init__(self, clock: Clock, output: Output, spin_us: int = 1000, offset_ms: float = 0.0,
                 record_errors: bool = False, on_sent: Callable[[tuple[int, ...], int], None] | None = None,
                 realtime_priority: int = 0, tick_spin_us: int | None = None, adaptive_spin: bool = True):
        self.clock = clock
        self.output = output
        self.spin_ns = spin_us * 1000
        # MIDI clock ticks (0xF8) come 48 times a second at 120 BPM: a full spin
        # before each would cost ~5% of a core, so they may spin less.
        self.tick_spin_ns = self.spin_ns if tick_spin_us is None else tick_spin_us * 1000
        # ...and both spin no longer than the sender's recent wake-ups need (sync.spin)
        self.spin = AdaptiveSpin(self.spin_ns, adaptive_spin)
        self.offset_ns = int(offset_ms * 1e6)  # positive: send early (DAW latency)
        self.stats = TimingStats()
        self.record_errors = record_errors
        self.on_sent = on_sent
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._sounding: dict[tuple[int, int], int] = {}  # (channel, pitch) -> count
        self._channels: set[int] = set()
        self._panic_requests = 0
        self._panic_done = 0
        self._dropped: list[tuple[float, tuple[int, ...]]] = []  # by the last panic
        self._running = False
        self._thread: threading.Thread | None = None
        self._last_late_log = 0
        self._late_since_log = 0
        self.error: BaseException | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self.realtime_priority = realtime_priority
        self.realtime = False  # whether the sender got SCHED_FIFO
        clock.on_sooner(self._wake)  # a grid moved earlier must not find the sender asleep

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- scheduling (any thread) ---------------------------------------------
    def schedule_note(self, on_step: float, off_step: float, pitch: int, velocity: int,
                      channel: int, tag: str = "") -> NoteHandle:
        """Queue a note-on and its note-off together (1-based channel)."""
        if off_step <= on_step:
            raise ValueError(f"note-off at {off_step} is not after note-on at {on_step}")
        note = NoteHandle(channel, pitch, on_step, off_step, tag)
        on = _Event(on_step, _PRIO_ON, next(self._seq), (NOTE_ON | (channel - 1), pitch, velocity), note)
        off = _Event(off_step, _PRIO_OFF, next(self._seq), (NOTE_OFF | (channel - 1), pitch, 0), note)
        note._off_event = off
        with self._cond:
            self._channels.add(channel)
            heapq.heappush(self._heap, on)
            heapq.heappush(self._heap, off)
            self._cond.notify()
        return note

    def schedule(self, step: float, message: Sequence[int]) -> None:
        """Queue any other message (CC, program change...)."""
        with self._cond:
            heapq.heappush(self._heap, _Event(step, _PRIO_OTHER, next(self._seq), tuple(message)))
            self._cond.notify()

    def move_note_off(self, note: NoteHandle, off_step: float) -> bool:
        """Move a note's note-off (a held note grew). False if it already ended."""
        with self._cond:
            old = note._off_event
            if note.off_sent or note.cancelled or old is None or off_step <= note.on_step:
                return False
            old.dead = True
            new = _Event(off_step, _PRIO_OFF, next(self._seq), old.message, note)
            note._off_event, note.off_step = new, off_step
            heapq.heappush(self._heap, new)
            self._cond.notify()
            return True

    def cancel(self, tag: str) -> int:
        """Drop every queued note with `tag` whose note-on was not sent yet.

        Notes already sounding keep their note-off.  Returns how many went.
        """
        n = 0
        with self._cond:
            for ev in self._heap:
                note = ev.note
                if note is not None and note.tag == tag and not note.on_sent and not ev.dead:
                    ev.dead = True
                    note.cancelled = True
                    n += 1
            self._cond.notify()
        return n // 2

    def drop_messages(self, statuses: set[int], from_step: float) -> int:
        """Unqueue the non-note messages with one of these status bytes due at or
        after `from_step` (a MIDI clock Start taken back).  Returns how many."""
        n = 0
        with self._cond:
            for ev in self._heap:
                if ev.note is None and not ev.dead and ev.message[0] in statuses and ev.step >= from_step:
                    ev.dead = True
                    n += 1
            self._cond.notify()
        return n

    def pending(self) -> int:
        with self._cond:
            return sum(1 for ev in self._heap if not ev.dead)

    def last_step(self) -> float:
        """The latest queued position (the end of what is scheduled)."""
        with self._cond:
            return max((ev.step for ev in self._heap if not ev.dead), default=float("-inf"))

    def sounding(self) -> list[tuple[int, int]]:
        with self._cond:
            return sorted(self._sounding)

    # -- panic ---------------------------------------------------------------
    def panic(self, wait: bool = True, timeout: float = 1.0) -> list[tuple[float, tuple[int, ...]]] | None:
        """Drop everything queued; note-off every sounding note; CC 123.

        Runs on the sender thread when it runs (so it cannot interleave with a
        send); otherwise right here.  Returns the other messages it dropped
        unsent, `(step, message)` (MIDI clock must not lose a tick), or None
        when it did not wait for the panic to happen.
        """
        with self._cond:
            if not self._running:
                self._do_panic()
                return self._dropped
            self._panic_requests += 1
            ticket = self._panic_requests
            self._cond.notify()
            if wait and self._cond.wait_for(lambda: self._panic_done >= ticket or not self._running, timeout):
                return self._dropped if self._panic_done >= ticket else None
            return None

    def _do_panic(self) -> None:
        # caller holds self._cond (or the sender is not running)
        self._dropped = []
        for ev in sorted(self._heap):
            if ev.dead:
                continue
            if ev.note is not None:
                ev.note.cancelled = not ev.note.on_sent
            else:
                self._dropped.append((ev.step, ev.message))
        self._heap.clear()
        sounding = sorted(self._sounding)
        self._sounding.clear()
        for channel, pitch in sounding:
            self._send((NOTE_OFF | (channel - 1), pitch, 0))
        self.output.panic(sorted(self._channels) or [1])

    # -- the thread ------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="jamd-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Panic, then end the thread. Safe to call twice or after a crash."""
        if self._thread is not None and self._thread.is_alive():
            self.panic(wait=True, timeout=timeout)
            with self._cond:
                self._running = False
                self._cond.notify_all()
            self._thread.join(timeout)
        else:
            with self._cond:
                self._running = False
                self._do_panic()

    def _send(self, message: tuple[int, ...]) -> None:
        self.output.send(message)
        if self.on_sent is not None:
            self.on_sent(message, self.clock.now_ns())

    def flush_until(self, step: float) -> int:
        """Send everything due up to `step` on this thread, in order; for tests
        with a `ManualClock` (the sender thread must not be running)."""
        n = 0
        with self._cond:
            while self._heap and self._heap[0].step <= step:
                ev = heapq.heappop(self._heap)
                if ev.dead:
                    continue
                deadline = self.clock.time_of(ev.step) - self.offset_ns
                if isinstance(self.clock, ManualClock):
                    self.clock.t_ns = deadline
                self._dispatch(ev, deadline)
                n += 1
        return n

    def _run(self) -> None:
        try:
            self.realtime = ask_realtime(self.realtime_priority, "sender")
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - any failure must still silence the output
            self.error = exc
            log.error("sender thread failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
            with self._cond:
                self._running = False
                try:
                    self._do_panic()
                except Exception as exc2:  # the port itself may be what failed
                    log.error("could not silence the output: %s", exc2)
                self._cond.notify_all()
            if self.on_error is not None:
                self.on_error(exc)

    def _loop(self) -> None:
        clock = self.clock
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._panic_done < self._panic_requests:
                        self._do_panic()
                        self._panic_done = self._panic_requests
                        cond.notify_all()
                    if not self._running:
                        return
                    while self._heap and self._heap[0].dead:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        cond.wait()
                        continue
                    head = self._heap[0]
                    deadline = clock.time_of(head.step) - self.offset_ns
                    spin = min(self.tick_spin_ns if head.message[0] == 0xF8 else self.spin_ns, self.spin.ns)
                    now = clock.now_ns()
                    wait_ns = deadline - spin - now
                    if wait_ns <= 0:
                        break
                    # Woken early by a new event, a panic or stop: look again.
                    if not cond.wait(wait_ns / 1e9):  # timed out: how late it woke sets the spin
                        self.spin.observe(clock.now_ns() - now - wait_ns)
                # Spin outside the lock, so schedulers are never held up by it.
            while clock.now_ns() < deadline:
                pass
            with cond:
                if not self._heap or self._heap[0] is not head or head.dead:
                    continue  # cancelled or overtaken while spinning: look again
                if self._panic_done < self._panic_requests:
                    continue
                heapq.heappop(self._heap)
                self._dispatch(head, deadline)

    def _dispatch(self, ev: _Event, deadline: int) -> None:
        note = ev.note
        key = None
        now = self.clock.now_ns()
        if note is not None:
            key = (note.channel, note.pitch)
            if ev.prio == _PRIO_ON:
                if now >= self.clock.time_of(note.off_step) - self.offset_ns:
                    # So late that the note would already be over (the machine
                    # stalled): skip it, rather than bunch its on and off into
                    # one blip with everything else that is overdue.
                    note.cancelled = True
                    self.stats.skipped += 1
                    log.warning("skipped a note due %.1f ms ago", (now - deadline) / 1e6)
                    return
                note.on_sent = True
            else:
                note.off_sent = True
                if not note.on_sent:
                    return  # its note-on was skipped or dropped by a panic: nothing to end
        self._send(ev.message)
        err = now - deadline
        st = self.stats
        st.sent += 1
        if self.record_errors:
            st.errors_ns.append(err)
        if err > LATE_NS:
            st.late += 1
            st.max_late_ns = max(st.max_late_ns, err)
            self._late_since_log += 1
            if now - self._last_late_log > _LOG_EVERY_NS:
                log.warning("sent %d event(s) late, the last by %.1f ms", self._late_since_log, err / 1e6)
                self._last_late_log, self._late_since_log = now, 0
        if key is not None:
            if ev.prio == _PRIO_ON:
                self._sounding[key] = self._sounding.get(key, 0) + 1
            elif key in self._sounding:
                self._sounding[key] -= 1
                if self._sounding[key] <= 0:
                    del self._sounding[key]
