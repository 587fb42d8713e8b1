"""The train/validation split, with Erk's held-out tunes held out in every corpus.

Issue 16 trains on the whole folk corpus and measures on Erk's validation
tunes, so a tune of Erk (named like "essenFolksong/erk5.abc#3") must land on
the side it lands on in the Erk corpus itself, whatever else the corpus
holds.  `split_by_name` alone cannot promise that: it ranks names by a hash
and takes the first round(n * fraction), so the cut depends on n.  Here the
Erk tunes are split among themselves exactly as the Erk corpus splits them
(by `split_by_name` over Erk's kept tunes), and every other tune by the same
rule over the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

ERK_NAME = re.compile(r"^essenFolksong/erk[^/#]*\.abc#")


def split_by_name(names: Sequence[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices into `names`: ordered by a hash of (seed, name), the first
    round(n * fraction) validate, so an item lands on the same side whatever the parse order."""
    n = len(names)

    def rank(i: int) -> bytes:
        return hashlib.blake2b(f"{seed}\0{names[i]}".encode(), digest_size=8).digest()

    order = sorted(range(n), key=rank)
    k = round(n * fraction)
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)  # a non-zero fraction always validates on something
    return sorted(order[k:]), sorted(order[:k])


def split_with_erk(names: Sequence[str], fraction: float, seed: int,
                   erk_names: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """(train, validation) indices into `names`, Erk's tunes on Erk's sides.

    erk_names: the tunes the Erk corpus keeps (its split is computed from them); None: the
    Erk-named tunes among `names` (right when the corpus holds all of Erk's files).  An
    Erk-named tune that Erk does not keep is split with the others.
    """
    erk = [i for i, name in enumerate(names) if ERK_NAME.match(name)]
    if not erk:
        return split_by_name(names, fraction, seed)
    reference = [names[i] for i in erk] if erk_names is None else list(erk_names)
    ref_train, ref_val = split_by_name(reference, fraction, seed)
    side = {reference[i]: "train" for i in ref_train} | {reference[i]: "val" for i in ref_val}
    train = [i for i in erk if side.get(names[i]) == "train"]
    val = [i for i in erk if side.get(names[i]) == "val"]
    in_erk = set(erk)
    rest = [i for i, name in enumerate(names) if i not in in_erk or name not in side]
    rest_train, rest_val = split_by_name([names[i] for i in rest], fraction, seed)
    return sorted(train + [rest[i] for i in rest_train]), sorted(val + [rest[i] for i in rest_val])
