"""Features on hand-made melodies whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from jamd.tokens import Note
from jamd.training.evaluation import features
from jamd.training.evaluation.melodies import Melody, cut, from_symbols

C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def scale(pitches=C_MAJOR, steps=4) -> Melody:
    notes = tuple(Note(i * steps, p, steps) for i, p in enumerate(pitches))
    return Melody("scale", notes, len(pitches) * steps)


def test_c_major_scale_pitch_class_transition_matrix():
    expected = np.zeros((12, 12))
    for a, b in [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 11), (11, 0)]:
        expected[a, b] = 1
    np.testing.assert_array_equal(features.pitch_class_transition_matrix(scale()), expected)
    # the report's average matrix is each melody's normalised to sum 1
    np.testing.assert_allclose(features.average_matrix([scale()], "pitch_class_transition_matrix"),
                               expected / 7)


def test_c_major_scale_scalar_features():
    m = scale()
    assert features.total_used_pitch(m)[0] == 8
    assert features.pitch_range(m)[0] == 12
    assert features.avg_pitch_interval(m)[0] == pytest.approx(12 / 7)
    assert features.total_used_note(m)[0] == 8
    assert features.avg_ioi(m)[0] == 1.0  # quarter notes: one beat apart
    hist = features.pitch_class_histogram(m)
    assert hist[0] == pytest.approx(2 / 8) and hist.sum() == pytest.approx(1)


@pytest.mark.parametrize(("steps", "label"), [(1, "1/4"), (2, "1/2"), (3, "3/4"), (4, "1"), (5, "1"),
                                              (6, "3/2"), (7, "3/2"), (8, "2"), (12, "3"), (16, "4+"),
                                              (40, "4+")])
def test_note_lengths_are_classed_in_beats(steps, label):
    assert features.LENGTH_LABELS[features.length_class(steps)] == label


def test_note_length_transition_matrix_counts_consecutive_notes():
    # eighth, eighth, quarter (a rest in between does not matter), half
    m = from_symbols("m", "60 _ 62 _ 64 _ _ _ r _ 65 _ _ _ _ _ _ _".split())
    t = features.note_length_transition_matrix(m)
    i8, i4, i2 = (features.LENGTH_LABELS.index(x) for x in ("1/2", "1", "2"))
    assert t[i8, i8] == 1 and t[i8, i4] == 1 and t[i4, i2] == 1 and t.sum() == 3


def test_empty_melody_gives_zeros_not_errors():
    m = Melody("silence", (), 16)
    values = features.extract([m, scale()])
    assert all(np.isfinite(v).all() for v in values.values())
    assert features.pitch_stats([m])["empty_melodies"] == 1


def test_pitch_stats_pool_all_notes():
    stats = features.pitch_stats([scale([60, 60]), scale([64, 64])])
    assert stats["pitch_mean"] == 62 and stats["pitch_std"] == 2 and stats["pitch_std_per_melody"] == 0


def test_cut_shortens_the_note_that_crosses():
    m = cut(scale(), 6)
    assert m.notes == (Note(0, 60, 4), Note(4, 62, 2)) and m.n_steps == 6


def test_distinct_bars_within_a_melody_exact():
    # bars: A A B (B ends on another note, held past the bar line) and a cut fourth bar left out
    a = [Note(0, 60, 4), Note(4, 62, 4), Note(8, 64, 8)]
    bars = a + [Note(16 + n.start, n.pitch, n.duration) for n in a]
    bars += [Note(32, 60, 4), Note(36, 62, 4), Note(40, 64, 4), Note(44, 65, 12)]  # held past 48
    m = Melody("m", tuple(bars), 56)
    grid = features.bar_grid(m)
    assert len(grid) == 3 and grid[0] == grid[1] != grid[2]
    assert grid[0] == (60, -1, -1, -1, 62, -1, -1, -1, 64, -1, -1, -1, -1, -1, -1, -1)
    assert grid[2][8:] == (64, -1, -1, -1, 65, -1, -1, -1)
    # one melody 2 of 3 bars distinct, one melody all rests (1 of 2), one too short to count
    rests = Melody("r", (), 32)
    short = Melody("s", (Note(0, 60, 16),), 20)
    assert features.distinct_bar_share([m, rests, short]) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert features.distinct_bar_share([short]) == 0.0
    assert features.pitch_stats([m])["distinct_bars"] == pytest.approx(2 / 3)
