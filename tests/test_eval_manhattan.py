"""Mitzenmacher-Owen distance of grouped adjacent pitches."""

from __future__ import annotations

import pytest

from jamd.training.evaluation import manhattan


def test_groups_join_a_semitone_up():
    assert manhattan.group_adjacent([60, 62, 64, 65, 67, 71, 72, 73]) == [
        (60,), (62,), (64, 65), (67,), (71, 72, 73)]


def test_identical_melodies_are_at_zero_and_disjoint_at_two():
    m = [60, 62, 64, 65, 67]
    assert manhattan.distance(m, m) == 0
    assert manhattan.distance(m, [70, 72, 74]) == pytest.approx(2)


def test_the_tail_of_the_longer_melody_counts():
    short = [60, 62, 67]
    longer = short + [50, 52, 55, 57]
    assert manhattan.seed_distance(short, longer) == 0  # the seed's zip drops the tail
    assert manhattan.distance(short, longer) > 0


def test_repetition_and_shift_do_not_count_as_difference():
    m = [60, 62, 64, 67]
    assert manhattan.distance(m, m + m) == 0  # shares, not counts
    assert manhattan.distance(m, [m[-1]] + m[:-1]) == 0  # one note moved to the front
    assert manhattan.seed_distance(m, [m[-1]] + m[:-1]) > 0


def test_set_means():
    figs = manhattan.compare([[60, 62]] * 3, [[60, 62], [64, 67]])
    assert figs["intra_generated"] == 0 and figs["intra_reference"] == pytest.approx(2)
    assert figs["inter"] == pytest.approx(1)
