"""Arrival times of MIDI input: rtmidi's deltas placed on perf_counter_ns (exact arithmetic)."""

from __future__ import annotations

from jamd.midi.input import ArrivalStamper


def test_arrivals_come_from_rtmidis_deltas_not_from_when_they_were_read():
    s = ArrivalStamper()

    def near(stamp: int, expected: int) -> bool:  # the offset may creep by LEAK_NS_PER_S
        return abs(stamp - expected) <= 10_000

    # received 10 ms apart, but read late by varying amounts (a reader that polls,
    # a thread that waited for the GIL): the stamps keep the 10 ms spacing
    assert near(s.stamp(0.0, 1_000_000_000 + 500_000), 1_000_500_000)
    assert near(s.stamp(0.010, 1_010_000_000 + 3_000_000), 1_010_500_000)
    assert near(s.stamp(0.010, 1_020_000_000 + 100_000), 1_020_100_000)  # read sooner: the offset improves
    assert near(s.stamp(0.010, 1_030_000_000 + 2_000_000), 1_030_100_000)
    # two messages of one JACK period: same time, delta 0
    assert near(s.stamp(0.0, 1_030_000_000 + 2_050_000), 1_030_100_000)


def test_the_offset_may_creep_up_so_a_slower_clock_cannot_leave_it_stale():
    s = ArrivalStamper()
    s.stamp(0.0, 0)
    # rtmidi's clock runs 100 ppm slow: each second of deltas is 1.0001 s of perf_counter;
    # read promptly each time, the stamp never lags what was read by more than the leak allows
    t = 0
    lags = []
    for _ in range(60):
        t += 1_000_100_000
        lags.append(t - s.stamp(1.0, t))
    # it lags by the drift of one second at most, and does not grow with time
    assert max(lags) <= 100_000
    assert lags[-1] <= lags[0]
