"""The time filter of the MIDI clock follower: where the master's ticks fall.

It filters *time*, not ticks: the arrival times of the last `window` + 1
clocks (0xF8) are fitted with a least-squares line, time = a + b * tick, and
each new arrival is first judged against that line's prediction before it may
join the fit (a robust fit that rejects outliers; the alternative is a
delay-locked loop, F. Adriaensen, "Using a DLL to filter time", LAC 2005, which
is a second-order filter of the same prediction error).  Its slope b is the
tick length; jitter of the arrivals averages out (±0.3 ms of jitter costs about
0.02% of tempo over 24 ticks).  Each new tick, against the line:

* on the line (within the threshold): it joins the fit;
* k tick lengths late (1 <= k <= 6), after an interval about k + 1 times the
  expected one, with nothing pending, and the next ticks on the line too: k
  ticks were lost on the way (a non-real-time JACK server drops one now and
  then, or every clock of a few process cycles it missed).  The arrival is the
  tick k on, and the caller counts the lost ones, so the position never falls
  behind;
* off the line: held back.  One late delivery is forgotten when the next
  tick is back on the line.  `confirm` in a row on the same side are judged
  by the intervals between them:
  - an interval no tempo in the configured range could give (a stall of
    hundreds of ms, a burst at 0.1 ms spacing) is the transport catching up,
    not a tempo: those ticks count for the position but never reach the fit;
  - about the same offset each time: the phase moved (or a JACK period
    boundary was crossed): they join the fit;
  - further off each time: a new tempo.  The window restarts from those
    ticks, so a change is seen within a few ticks and settled within a beat.

The tick length is always clamped to the configured tempo range (`clock.bpm`'s
bounds, in quarters per minute).  "Far off" is 4 times the spread of the
residuals, never less than `min_threshold_ns`; the spread is learnt slowly from
each tick's residual against the line fitted before it and survives restarts,
so it adapts to the transport's own jitter (RtMidi stamps all JACK events of
one period with one time: arrivals quantised by the period, 5.3 ms in the rig).

Units: `seq` counts clocks since the follower was made; times are ns.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

NS_PER_MIN = 60_000_000_000
TICKS_PER_QUARTER = 24
# A gap this many tick lengths long while the transport is stopped means the
# clock paused (a master silent while stopped): the old line says nothing
# about where ticks fall now.  While running, a gap is a stall: the line stays.
GAP_TICKS = 4.0
PAUSE_MIN_NS = 300_000_000  # ... and at least this long: a loaded machine stalls for 200 ms
MIN_FIT = 6  # points before residuals are trusted to judge new ticks
_SPREAD_K = 4.0  # "far off": this many robust standard deviations
_SPREAD_TICKS = 48  # the spread estimate's memory, in ticks (an EMA)
# An interval of 1.5 to 2.5 expected tick lengths, landing on the line one tick
# on, is one lost tick (a jittered 2x interval); k + 0.5 to k + 1.5, landing k
# ticks on, k lost in a row: a non-realtime JACK server that misses a few process
# cycles on a loaded machine drops every clock in them (measured in the rig: 3 in
# a row, 75 ms at 100 BPM).  The ticks after must confirm it on the line, so a
# stall's burst or a slower tempo never passes for lost ticks.
_LOST_LO, _LOST_HI = 1.5, 2.5
_LOST_MAX = 6


def tick_ns_for(bpm: float) -> float:
    """Length of one MIDI clock (1/24 quarter) in ns at `bpm` quarters per minute."""
    return NS_PER_MIN / (bpm * TICKS_PER_QUARTER)


class Line(NamedTuple):
    """time(seq) = t_ref + y_ref + slope * (seq - x_ref), kept in small floats
    around an integer time so perf_counter values lose no precision."""

    t_ref: int
    x_ref: float
    y_ref: float
    slope: float  # ns per tick

    def at(self, seq: float) -> float:
        return self.t_ref + self.y_ref + self.slope * (seq - self.x_ref)


def fit_line(points: Sequence[tuple[int, int]], slope_if_one: float | None) -> Line | None:
    """Least-squares line through (seq, t_ns) points; one point keeps a known slope."""
    if not points:
        return None
    t_ref = points[0][1]
    if len(points) == 1:
        return None if slope_if_one is None else Line(t_ref, float(points[0][0]), 0.0, slope_if_one)
    n = len(points)
    xs = [float(s) for s, _ in points]
    ys = [float(t - t_ref) for _, t in points]
    xm, ym = sum(xs) / n, sum(ys) / n
    sxx = sum((x - xm) ** 2 for x in xs)
    sxy = sum((x - xm) * (y - ym) for x, y in zip(xs, ys, strict=True))
    return Line(t_ref, xm, ym, sxy / sxx)


class TickFit:
    """The robust line through recent clock arrivals; see the module docstring.

    `bpm_range`: (lowest, highest) tempo in quarters per minute the slope may take.
    """

    def __init__(self, window: int, confirm: int, min_threshold_ns: int,
                 bpm_range: tuple[float, float] = (20.0, 300.0)):
        self.window = window
        self.confirm = confirm
        self.min_threshold_ns = min_threshold_ns
        lo, hi = bpm_range
        self.min_tick_ns, self.max_tick_ns = tick_ns_for(hi), tick_ns_for(lo)
        self.line: Line | None = None
        self._points: deque[tuple[int, int]] = deque(maxlen=window + 1)  # (seq, arrival)
        self._suspects: list[tuple[int, int, float]] = []  # (seq, arrival, residual) off the line
        self._spread_ns = 0.0  # std of the residuals, kept across restarts
        self._spread_known = False
        self._last_t: int | None = None
        self.catching_up = 0  # ticks taken as a stall's or burst's catching up (count, for benches/tests)
        self.lost_ticks = 0  # ticks inferred lost
        self._pending: list[tuple[int, int]] = []  # (seq, arrival) from a tick that may follow lost ones
        self._pending_lost = 1  # how many: the pending run sits on the line this many ticks on

    def add(self, seq: int, t_ns: int, running: bool) -> tuple[int, bool]:
        """Clock number `seq` arrived at `t_ns`; `running`: the transport is playing
        (a gap is then a stall, not a pause).

        Returns (lost, tempo_changed): `lost` ticks (0 to `_LOST_MAX`) were inferred missing
        before this one, so this arrival is clock `seq + lost`; `tempo_changed`
        when a sustained change restarted the fit.
        """
        line, last = self.line, self._last_t
        self._last_t = t_ns
        if (last is not None and line is not None and not running
                and t_ns - last > max(GAP_TICKS * line.slope, PAUSE_MIN_NS)):
            # The clock paused while stopped: keep the tempo, forget where the old ticks fell.
            self._points.clear()
            self._suspects.clear()
        if last is not None and line is not None and not self.filled:
            # No spread to judge by yet: a burst (far faster than any tempo in range)
            # stays out, and after a long interval (a lost tick, a stall) the fit
            # starts again from here rather than mislabel every tick after it.
            if t_ns - last < self.min_tick_ns / 4:
                return 0, False
            if t_ns - last > _LOST_LO * line.slope:
                # and the slope goes too: it came from a few intervals at most, maybe
                # a late tick's catch-up; kept, every true interval after it would
                # look long and the fit would never refill (seen: stuck at 300 BPM)
                self._points.clear()
                self.line = None
        if line is None or len(self._points) < 3:
            self._add(seq, t_ns)
            return 0, False
        threshold = self.threshold()
        residual = t_ns - line.at(seq)
        if self._pending:
            return self._judge_pending(seq, t_ns, line, threshold), False
        if not self._suspects and last is not None and t_ns - last > _LOST_LO * line.slope:
            # k ticks lost in a row (a JACK server that missed a few cycles): the
            # arrival sits on the line k ticks on, after an interval of about k + 1.
            k = round(residual / line.slope)
            on_next = abs(t_ns - line.at(seq + k))
            if (self.filled and 1 <= k <= _LOST_MAX and t_ns - last < (k + _LOST_HI - 1) * line.slope
                    and on_next <= threshold and on_next < abs(residual)):
                self._pending, self._pending_lost = [(seq, t_ns)], k  # the next ticks decide
                return 0, False
        if not self.filled or abs(residual) <= threshold:
            self._suspects.clear()  # those were outliers or a stall: they never reach the fit
            if self.filled:
                self._learn_spread(residual)
            self._add(seq, t_ns)
            return 0, False
        if self._suspects and (self._suspects[-1][2] > 0) != (residual > 0):
            self._suspects.clear()
        self._suspects.append((seq, t_ns, residual))
        if len(self._suspects) < self.confirm:
            return 0, False
        suspects = self._suspects
        intervals = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(suspects, suspects[1:], strict=False)]
        if (any(not self.min_tick_ns <= iv <= self.max_tick_ns for iv in intervals)
                or abs(suspects[-1][2]) < abs(suspects[0][2]) - threshold / 2):
            # No tempo in range gives these intervals, or each tick is nearer the
            # line than the one before: a stall and its burst, the transport
            # catching up.  They count for the position (the caller's seq) and
            # never bend the line; judge the next ones afresh.
            self.catching_up += 1
            self._suspects = suspects[1:]
            return 0, False
        self._suspects = []
        k = round(statistics.median(r for _, _, r in suspects) / line.slope)
        if 1 <= k <= _LOST_MAX and all(abs(r - k * line.slope) <= threshold for _, _, r in suspects):
            # On the line k ticks on, at the master's pace: k ticks were lost
            # (more losses close together than the pending check can tell), not a
            # phase move of whole ticks, which no master makes.
            for s, t, r in suspects:
                self._learn_spread(r - k * line.slope)
                self._points.append((s + k, t))
            self._refit()
            self.lost_ticks += k
            return k, False
        if abs(suspects[-1][2] - suspects[0][2]) <= threshold / 2:
            # Off the line by about the same amount each time: the phase moved
            # (or a JACK period boundary was crossed), not the tempo.  These are
            # real ticks: the fit absorbs them, and the spread learns from them.
            for s, t, r in suspects:
                self._learn_spread(r)
                self._points.append((s, t))
            self._refit()
            return 0, False
        # Further off with every tick at a plausible pace: a new tempo.  Start again from those ticks.
        self._points.clear()
        for s, t, _ in suspects:
            self._points.append((s, t))
        self._refit()
        return 0, True

    def _judge_pending(self, seq: int, t_ns: int, line: Line, threshold: float) -> int:
        """After a tick k tick lengths late (`_pending_lost`): k lost ticks or a late run?

        A loaded machine delays a run of ticks by up to a period or two and then
        catches up: one tick on, each of them would look early.  Only when the
        `confirm` ticks from it sit on the line one tick on, all within the
        threshold and together at least 3 times closer than as counted, was a
        tick lost (then they are relabelled and 1 is returned); otherwise those
        on the line as counted join the fit and 0 is returned.
        """
        self._pending.append((seq, t_ns))
        if len(self._pending) < self.confirm:
            return 0
        held, self._pending, k = self._pending, [], self._pending_lost
        as_counted = [t - line.at(s) for s, t in held]
        one_on = [t - line.at(s + k) for s, t in held]
        lost = (all(abs(r) <= threshold for r in one_on)
                and 3 * sum(abs(r) for r in one_on) < sum(abs(r) for r in as_counted))
        for (s, t), r in zip(held, one_on if lost else as_counted, strict=True):
            if abs(r) <= threshold:
                self._learn_spread(r)
                self._points.append((s + k * lost, t))
        self._refit()
        self.lost_ticks += k * lost
        return k * int(lost)

    @property
    def filled(self) -> bool:
        """Enough points that residuals are trusted to judge new ticks."""
        return len(self._points) >= MIN_FIT

    def threshold(self) -> float:
        """How far off the line (ns) a tick may arrive and still join the fit."""
        return max(float(self.min_threshold_ns), _SPREAD_K * self._spread_ns)

    def _add(self, seq: int, t_ns: int) -> None:
        self._points.append((seq, t_ns))
        self._refit()

    def _learn_spread(self, residual: float) -> None:
        # Out-of-sample residuals (each tick against the line fitted before it)
        # are learnt slowly and survive window restarts: a fit through a few
        # points follows their noise and would make the transport look cleaner
        # than it is.  The mean absolute residual times 1.25 estimates the
        # standard deviation (exact for Gaussian noise, close for uniform).
        self._spread_ns += (1.25 * abs(residual) - self._spread_ns) / _SPREAD_TICKS

    def _clamped(self, line: Line | None) -> Line | None:
        if line is None or self.min_tick_ns <= line.slope <= self.max_tick_ns:
            return line
        return line._replace(slope=min(max(line.slope, self.min_tick_ns), self.max_tick_ns))

    def _refit(self) -> None:
        old = self.line
        line = self._clamped(fit_line(self._points, None if old is None else old.slope))
        if line is None:
            return
        if len(self._points) >= MIN_FIT:
            residuals = [t - line.at(s) for s, t in self._points]
            if not self._spread_known:
                # The first full window seeds the spread: in-sample MAD, scaled by
                # n / (n - 2) because a line through n points fits 2 of them away.
                self._spread_ns = 1.4826 * statistics.median(abs(r) for r in residuals) * MIN_FIT / (MIN_FIT - 2)
                self._spread_known = True
            # Outliers that came in while the window was filling: drop, refit once.
            limit = self.threshold()
            kept = [p for p, r in zip(self._points, residuals, strict=True) if abs(r) <= limit]
            if len(kept) >= 2 and len(kept) < len(self._points):
                self._points = deque(kept, maxlen=self.window + 1)
                line = self._clamped(fit_line(self._points, line.slope)) or line
        self.line = line
