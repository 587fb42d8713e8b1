"""Manhattan distance between grouped adjacent pitches (Mitzenmacher & Owen; seed 4.2, A.3.1).

Grouping is the seed's: walking through the notes, a pitch exactly one
semitone above the last pitch of the current group joins that group,
anything else starts a new one (in C major that joins E-F and B-C, and
chromatic runs).

The seed's `manhattan_distance` then pairs the groups of two files with
`zip` and the pitches inside two paired groups with `zip` again, summing
|x - y| of raw MIDI pitches.  `zip` stops at the shorter sequence, so the
tail of the longer file (and of the longer group) is ignored: a melody and
the same melody followed by 100 more notes are at distance 0.  Pairing by
position has a second fault: one note inserted at the start shifts every
later group, so a melody is far from itself moved by one note.

Here the distance is seed 4.2's formula, d(I1, I2) = sum_p |I1^p - I2^p|,
with p running over every pitch group that occurs in either melody and I^p
the share of the melody's groups that are p.  Every group of both melodies
counts, so nothing is ignored; the order of groups within a melody no
longer matters (the transition matrices measure order); and because it
uses shares, not counts, melodies of different lengths compare fairly.
The distance lies in [0, 2]: 0 for the same groups in the same
proportions, 2 for no group in common.  The seed's version is kept as
`seed_distance`, so its figures (141.35 vs 234.88) can still be reproduced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

Group = tuple[int, ...]


def group_adjacent(pitches: Sequence[int]) -> list[Group]:
    groups: list[list[int]] = []
    for p in pitches:
        if groups and p == groups[-1][-1] + 1:
            groups[-1].append(p)
        else:
            groups.append([p])
    return [tuple(g) for g in groups]


def group_shares(pitches: Sequence[int]) -> dict[Group, float]:
    counts = Counter(group_adjacent(pitches))
    total = sum(counts.values())
    return {g: c / total for g, c in counts.items()} if total else {}


def shares_distance(a: dict[Group, float], b: dict[Group, float]) -> float:
    return float(sum(abs(a.get(g, 0.0) - b.get(g, 0.0)) for g in a.keys() | b.keys()))


def distance(pitches1: Sequence[int], pitches2: Sequence[int]) -> float:
    """sum_p |I1^p - I2^p| over the union of both melodies' pitch groups."""
    return shares_distance(group_shares(pitches1), group_shares(pitches2))


def seed_groups_distance(groups1: Sequence[Group], groups2: Sequence[Group]) -> float:
    total = 0
    for g1, g2 in zip(groups1, groups2, strict=False):
        total += sum(abs(x - y) for x, y in zip(g1, g2, strict=False))
    return float(total)


def seed_distance(pitches1: Sequence[int], pitches2: Sequence[int]) -> float:
    """The seed's version (A.3.1), tails ignored by `zip`; for comparison only."""
    return seed_groups_distance(group_adjacent(pitches1), group_adjacent(pitches2))


def _mean_pairs(a: list, b: list | None, fn) -> float:
    """Mean over all pairs between two sets, or over distinct pairs within one."""
    if b is None:
        vals = [fn(a[i], a[j]) for i in range(len(a)) for j in range(i + 1, len(a))]
    else:
        vals = [fn(x, y) for x in a for y in b]
    return float(np.mean(vals)) if vals else 0.0


def _padded(groups: Sequence[Group]) -> np.ndarray:
    """Groups as rows of a NaN-padded array, so the seed's double zip becomes array slicing."""
    width = max((len(g) for g in groups), default=1)
    out = np.full((len(groups), width), np.nan)
    for i, g in enumerate(groups):
        out[i, :len(g)] = g
    return out


def _seed_padded_distance(a: np.ndarray, b: np.ndarray) -> float:
    k, w = min(len(a), len(b)), min(a.shape[1], b.shape[1])
    return float(np.nansum(np.abs(a[:k, :w] - b[:k, :w])))  # NaN where a group has no partner pitch


def compare(generated: list[list[int]], reference: list[list[int]]) -> dict[str, float]:
    """Mean distances within each set and between them, this module's and the seed's."""
    gs, rs = [group_shares(p) for p in generated], [group_shares(p) for p in reference]
    gg = [_padded(group_adjacent(p)) for p in generated]
    rg = [_padded(group_adjacent(p)) for p in reference]
    return {
        "intra_generated": _mean_pairs(gs, None, shares_distance),
        "intra_reference": _mean_pairs(rs, None, shares_distance),
        "inter": _mean_pairs(gs, rs, shares_distance),
        "seed_intra_generated": _mean_pairs(gg, None, _seed_padded_distance),
        "seed_intra_reference": _mean_pairs(rg, None, _seed_padded_distance),
        "seed_inter": _mean_pairs(gg, rg, _seed_padded_distance),
    }
