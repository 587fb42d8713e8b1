"""Live input: decoding MIDI bytes, spotting our own echo, and capturing phrases.

The MIDI input callback only puts `(arrival_ns, bytes)` on a queue; everything
here runs on the engine thread that drains it.  Each note is placed on the
running clock's 16th grid from its arrival time.  A phrase ends on whichever
comes first: `live.silence_bars` of silence after the last note, the
`live.end_cc` controller, or `live.max_phrase_bars`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..config import LiveConfig
from ..midi.pairing import release, strike
from ..sync.clock import Clock
from ..tokens import Note

NOTE_OFF, NOTE_ON, CONTROL = 0x80, 0x90, 0xB0
# Data bytes that follow each channel status (high nibble); 0xC0 and 0xD0 take one.
_DATA_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}


class Event(NamedTuple):
    kind: str  # "on", "off" or "cc"
    channel: int  # 1-16
    a: int  # pitch or controller number
    b: int  # velocity or value


class Decoder:
    """Bytes to `Event`s, with running status; everything else is dropped.

    RtMidi usually hands over whole messages, but a byte stream that leaves
    out repeated status bytes (running status) is legal MIDI, so the last
    channel status is remembered.  SysEx, clock, active sensing, aftertouch,
    pitch bend and program change are not used by jamd and are ignored.
    """

    def __init__(self) -> None:
        self._status = 0

    def decode(self, data: Sequence[int]) -> list[Event]:
        out: list[Event] = []
        # Real-time bytes (clock, start, stop, sensing) may sit anywhere, even
        # inside another message; they are dropped without touching running status.
        data = [b for b in data if b < 0xF8]
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            if b == 0xF0:  # SysEx: skip to its end, cancels running status
                while i < n and data[i] != 0xF7:
                    i += 1
                i += 1
                self._status = 0
                continue
            if b >= 0xF0:  # other system common messages: ignore with their data
                self._status = 0
                i += 1
                while i < n and data[i] < 0x80:
                    i += 1
                continue
            if b & 0x80:
                self._status = b
                i += 1
            if not self._status:  # stray data byte
                i += 1
                continue
            need = _DATA_LEN[self._status & 0xF0]
            body = data[i:i + need]
            i += need
            if len(body) < need or any(x & 0x80 for x in body):
                continue  # truncated or corrupt: drop
            kind, ch = self._status & 0xF0, (self._status & 0x0F) + 1
            if kind == NOTE_ON and body[1] > 0:
                out.append(Event("on", ch, body[0], body[1]))
            elif kind in (NOTE_ON, NOTE_OFF):  # velocity-0 note-on is a note-off
                out.append(Event("off", ch, body[0], 0))
            elif kind == CONTROL:
                out.append(Event("cc", ch, body[0], body[1]))
        return out


class EchoGuard:
    """Recognises jamd's own output coming back to its input.

    The sender reports every note-on it sends; an input note-on equal to one
    of them (same channel, pitch and velocity) within `window_ms` is taken as
    the echo of a patchbay loop and dropped, once.  The note-off of an echoed
    note is dropped too; other note-offs always belong to the player (a bare
    note-off cannot tell whose it is, and dropping the player's would leave a
    note held in the phrase for ever).  A player would have to strike the
    same pitch on jamd's channel with jamd's exact velocity within the window
    to be mistaken for an echo.
    """

    def __init__(self, window_ms: float = 300.0):
        self.window_ns = int(window_ms * 1e6)
        self._sent: deque[tuple[int, Event]] = deque()
        self._echoing: dict[tuple[int, int], int] = {}  # (channel, pitch) of echoed note-ons
        self._lock = threading.Lock()
        self.dropped = 0

    def sent(self, message: Sequence[int], t_ns: int) -> None:
        if len(message) != 3 or message[0] & 0xF0 != NOTE_ON or message[2] == 0:
            return
        event = Event("on", (message[0] & 0x0F) + 1, message[1], message[2])
        with self._lock:
            self._sent.append((t_ns, event))
            while self._sent and t_ns - self._sent[0][0] > self.window_ns:
                self._sent.popleft()

    def is_echo(self, event: Event, t_ns: int) -> bool:
        key = (event.channel, event.a)
        with self._lock:
            if event.kind == "off":
                if self._echoing.get(key, 0) <= 0:
                    return False
                self._echoing[key] -= 1
                self.dropped += 1
                return True
            if event.kind != "on":
                return False
            for i, (sent_ns, ev) in enumerate(self._sent):
                if ev == event and 0 <= t_ns - sent_ns <= self.window_ns:
                    del self._sent[i]
                    self._echoing[key] = self._echoing.get(key, 0) + 1
                    self.dropped += 1
                    return True
        return False


@dataclass
class Phrase:
    notes: list[Note]  # absolute clock steps
    start: int  # step of the first note-on
    end: int  # step after the last note
    closed_at: int  # step where the phrase was declared over
    reason: str  # "silence", "cc" or "max-length"
    steps_per_bar: int = 16
    dropped: int = 0  # notes not kept: the phrase was full (MAX_NOTES_PER_STEP)

    @property
    def bars(self) -> int:
        """Whole bars from the bar line before the phrase to the one after it."""
        first = self.start // self.steps_per_bar
        last = -(-self.end // self.steps_per_bar)
        return max(1, last - first)

    def bar_aligned_notes(self) -> tuple[list[Note], int]:
        """Notes relative to the bar line before the phrase, and that length in steps
        (padded to a whole bar, so the model sees the phrase where it sat in the bar)."""
        origin = (self.start // self.steps_per_bar) * self.steps_per_bar
        rel = [Note(n.start - origin, n.pitch, n.duration) for n in self.notes]
        return rel, self.bars * self.steps_per_bar


# At most this many notes per 16th step of `live.max_phrase_bars` are kept in a
# phrase (512 in 8 bars of 4/4): far more than a melody or its chords, while a
# flood of notes (issue 4: 10,000 messages/s) cannot grow a phrase without
# bound and make its key detection take seconds.
MAX_NOTES_PER_STEP = 4


@dataclass
class PhraseCapture:
    """Builds phrases from note events, on the clock's 16th grid.

    A pitch struck again on the same 16th step is one note on the grid (the
    longer of the two), and a phrase keeps at most MAX_NOTES_PER_STEP notes
    per step of its maximum length; notes beyond that still count as playing
    (they keep the phrase from ending by silence) but are not kept.
    """

    clock: Clock
    cfg: LiveConfig
    notes: list[Note] = field(default_factory=list)
    held: dict[int, int] = field(default_factory=dict)  # pitch -> onset step
    start: int | None = None
    last_end: int = 0
    dropped: int = 0  # notes of the current phrase not kept because it was full
    _index: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)  # (onset, pitch) -> i

    @property
    def active(self) -> bool:
        return self.start is not None

    def _max_steps(self) -> int:
        return self.cfg.max_phrase_bars * self.clock.steps_per_bar

    def silence_deadline(self) -> int | None:
        """The step where silence will end the phrase (None while notes are held)."""
        if self.start is None or self.held:
            return None
        return self.last_end + int(round(self.cfg.silence_bars * self.clock.steps_per_bar))

    def note_on(self, pitch: int, t_ns: int) -> None:
        step = self.clock.quantise(t_ns)
        if self.start is None:
            self.start, self.last_end = step, step
        # re-struck without a note-off: the old note ends here (the rule files share)
        onset = strike(self.held, pitch, step)
        if onset is not None:
            self._finish(pitch, onset, step)

    def note_off(self, pitch: int, t_ns: int) -> None:
        onset = release(self.held, pitch)
        if onset is not None:
            self._finish(pitch, onset, self.clock.quantise(t_ns))

    def _finish(self, pitch: int, onset: int, step: int) -> None:
        end = max(step, onset + 1)
        self.last_end = max(self.last_end, end)
        i = self._index.get((onset, pitch))
        if i is not None:  # struck again on the same step: one note, the longer
            if end - onset > self.notes[i].duration:
                self.notes[i] = Note(onset, pitch, end - onset)
        elif len(self.notes) < MAX_NOTES_PER_STEP * self._max_steps():
            self._index[(onset, pitch)] = len(self.notes)
            self.notes.append(Note(onset, pitch, end - onset))
        else:
            self.dropped += 1

    def heard(self, now_step: float) -> list[Note]:
        """The phrase so far: finished notes, and the held ones as if released at `now_step`."""
        now = int(now_step)
        return self.notes + [Note(onset, pitch, max(now, onset + 1) - onset) for pitch, onset in self.held.items()]

    def latest_bar(self, before_step: int) -> list[Note]:
        """Notes that start in the bar that ends at `before_step` (for accompany)."""
        lo = before_step - self.clock.steps_per_bar
        return [n for n in self.notes if lo <= n.start < before_step]

    def poll(self, t_ns: int, lead_steps: float = 0.0, end_cc: bool = False) -> Phrase | None:
        """The finished phrase, if it ended by `t_ns`, else None.

        `lead_steps` declares a silence ending that close to its deadline as
        over already, so an answer can be ready exactly on that bar line; a
        note struck in that last sliver would have been quantised onto the
        answer's first step anyway.
        """
        if self.start is None:
            return None
        now = self.clock.step_at(t_ns)
        if end_cc:
            return self._close(int(round(now)), "cc")
        if now - self.start >= self._max_steps():
            return self._close(self.start + self._max_steps(), "max-length")
        deadline = self.silence_deadline()
        if deadline is not None and now >= deadline - lead_steps:
            return self._close(deadline, "silence")
        return None

    def _close(self, at: int, reason: str) -> Phrase | None:
        for pitch, onset in list(self.held.items()):
            self._finish(pitch, onset, at)
        self.held.clear()
        notes = sorted(n if n.end <= at or n.start >= at else Note(n.start, n.pitch, at - n.start)
                       for n in self.notes if n.start < at)
        start, dropped = self.start, self.dropped
        self.notes, self.held, self.start, self.last_end, self._index = [], {}, None, 0, {}
        self.dropped = 0
        if not notes or start is None:
            return None
        end = max(n.end for n in notes)
        return Phrase(notes, start, end, at, reason, self.clock.steps_per_bar, dropped)
