"""The sender's spin margin follows its own wake-ups (`jamd.sync.spin`, issue 15 section 5)."""

from __future__ import annotations

from jamd.sync.spin import FLOOR_NS, SLACK_NS, WINDOW, AdaptiveSpin


def test_starts_at_the_configured_spin_and_shrinks_once_a_window_is_seen():
    spin = AdaptiveSpin(1_000_000)
    for _ in range(WINDOW - 1):
        spin.observe(60_000)
        assert spin.ns == 1_000_000  # too few wake-ups seen: keep the full spin
    spin.observe(60_000)
    assert spin.ns == 60_000 + SLACK_NS  # 110 µs


def test_never_below_the_floor_nor_above_spin_us():
    spin = AdaptiveSpin(1_000_000)
    for _ in range(WINDOW):
        spin.observe(-5_000)  # early wake-ups count as on time
    assert spin.ns == FLOOR_NS
    spin.observe(3_000_000)  # a 3 ms stall
    assert spin.ns == 1_000_000


def test_one_late_wake_up_holds_the_margin_for_a_window_then_it_decays():
    spin = AdaptiveSpin(1_000_000)
    for _ in range(WINDOW):
        spin.observe(50_000)
    spin.observe(400_000)
    assert spin.ns == 450_000
    for _ in range(WINDOW - 1):
        spin.observe(50_000)
        assert spin.ns == 450_000
    spin.observe(50_000)  # the late one has left the window
    assert spin.ns == FLOOR_NS


def test_a_spin_below_the_floor_and_a_fixed_spin_are_kept_as_configured():
    small = AdaptiveSpin(80_000)
    for _ in range(WINDOW):
        small.observe(0)
    assert small.ns == 80_000
    fixed = AdaptiveSpin(1_000_000, adaptive=False)
    for _ in range(WINDOW):
        fixed.observe(0)
    assert fixed.ns == 1_000_000
