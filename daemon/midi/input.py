"""jamd's MIDI input: each message stamped with when it arrived, then handed on.

Used by `ports.open_ports`: a python-rtmidi callback stamps and enqueues; while
following MIDI clock a reader thread polls rtmidi instead (see `InputReader`).
Either way the receiver (`Engine.midi_in`) only enqueues.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .realtime import ask_realtime


class ArrivalStamper:
    """When the MIDI system received each message, as a `perf_counter_ns` time.

    The input callback runs on the MIDI system's thread once it holds the GIL,
    which the sender's spin or the engine may keep for a while: stamping the
    callback itself would add that wait to every arrival, and a clock slave fits
    its tempo on those arrivals.  RtMidi also hands over each message's time
    since the previous one, taken where the message was received (JACK's process
    cycle, ALSA's event time), before any of that.  Summed, those deltas place
    the messages exactly relative to one another; the offset to `perf_counter_ns`
    is the smallest (callback time - that position) seen, i.e. the callback that
    waited least.  It may creep up by `LEAK_NS_PER_S`, so a clock that runs at a
    slightly different rate from `perf_counter` cannot leave it stale.
    """

    LEAK_NS_PER_S = 200_000  # 200 us per second: follows a clock up to 200 ppm slower

    def __init__(self) -> None:
        self._rel_ns: float | None = None  # the last message's position on RtMidi's time
        self._offset: float = 0.0
        self._last_cb_ns = 0

    def stamp(self, delta_s: float, now_ns: int) -> int:
        if self._rel_ns is None:
            self._rel_ns, self._offset = 0.0, float(now_ns)
        else:
            self._rel_ns += max(0.0, delta_s) * 1e9
            leak = (now_ns - self._last_cb_ns) * self.LEAK_NS_PER_S / 1e9
            self._offset = min(self._offset + leak, now_ns - self._rel_ns)
        self._last_cb_ns = now_ns
        return int(self._offset + self._rel_ns)


# How often the input reader drains rtmidi's queue: the added handling delay
# (arrival times come from rtmidi, not from the reader).  Each wake-up costs:
# on the project's VM a thread waking every 2 ms took 1.8% of a core (3% with
# an Event), every 10 ms about 0.4%.  20 ms is little next to a 16th (125 ms
# at 120 BPM), and a clock slave's grid is predicted from arrival times.
POLL_S = 0.02


class InputReader:
    """Drains a python-rtmidi input from a thread of its own, by polling (when
    jamd follows MIDI clock; otherwise the input uses a callback).

    A python-rtmidi callback runs on the MIDI system's thread and must take the
    GIL first.  Under JACK that thread is the client's process cycle: while the
    sender or the engine held the GIL, the cycle overran and JACK dropped that
    cycle's input (measured: jamd as a clock slave lost 1-2 of ~400 clocks in a
    quarter of its runs, and with them its song position).  Polled, rtmidi's
    own thread only queues each message in C++ (`queue_size_limit` deep) with
    the time it was received, and never waits for Python; this thread takes
    them out every `POLL_S`, stamps them (`ArrivalStamper`) and hands them on.
    """

    def __init__(self, midiin, on_message: Callable[[list[int], int], None], priority: int = 0):
        self._in = midiin
        self._on_message = on_message
        self._priority = priority
        self._stop = False
        self.stamper = ArrivalStamper()
        self._thread = threading.Thread(target=self._run, name="jamd-midi-in", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        ask_realtime(self._priority, "input")
        get = self._in.get_message
        while not self._stop:
            time.sleep(POLL_S)  # cheaper than an Event's timed wait (see POLL_S)
            while (item := get()) is not None:
                message, delta = item
                self._on_message(message, self.stamper.stamp(delta, time.perf_counter_ns()))

    def stop(self) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._thread.join(1.0)
