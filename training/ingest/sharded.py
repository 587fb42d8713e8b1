"""`ShardedCorpus`: the corpus the trainers read, its tunes left in the store's shards.

It offers what `EncodedCorpus` offers (`vocab`, `tunes`, `split`, `ids`,
`stream`, `iter_tunes`, `stats`, `source`) with only per-tune metadata in
memory (name, shard, place, length); ids are read a shard at a time and the
last `SHARDS_HELD` shards are kept, so streaming the whole corpus in shard
order holds one shard, not the corpus.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from jamd.tokens import Vocabulary, steps_per_bar

from ..corpus import JoinedStream, MissingSymbolError, Tune, TuneRecord
from . import shards
from .split import split_with_erk

SHARDS_HELD = 4


class TuneView(Sequence):
    """`corpus.tunes`: each `Tune` read from its shard when asked for."""

    def __init__(self, corpus: ShardedCorpus):
        self._corpus = corpus

    def __len__(self) -> int:
        return len(self._corpus.names)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._corpus.tune(index)


class ShardedCorpus(JoinedStream):
    """Kept tunes of a source, in shards under `folder`; see the module docstring.

    names[i], shard_of[i], local[i], lengths[i]: tune i's name, shard file, index in that shard
    and length in 16th steps.  erk_names: the tunes the Erk corpus keeps (None: this corpus holds
    all of Erk's files), so `split` keeps Erk's held-out tunes held out.
    """

    def __init__(self, folder: Path, vocab: Vocabulary, source: str, stats: dict, names: list[str],
                 shard_of: list[str], local: np.ndarray, lengths: np.ndarray, validation_fraction: float = 0.1,
                 split_seed: int = 0, erk_names: list[str] | None = None):
        self.folder, self.vocab, self.source, self.stats = folder, vocab, source, stats
        self.names, self.shard_of, self.local, self.lengths = names, shard_of, local, lengths
        self.validation_fraction, self.split_seed, self.erk_names = validation_fraction, split_seed, erk_names
        self.tunes = TuneView(self)
        self._held: OrderedDict[str, tuple[np.ndarray, np.ndarray, list[list]]] = OrderedDict()
        self._tables: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"ShardedCorpus({self.source!r}, {len(self)} tunes, {self.n_tokens} tokens, {self.vocab!r})"

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def _shard(self, name: str) -> tuple[np.ndarray, np.ndarray, list[list]]:
        held = self._held.get(name)
        if held is None:
            held = shards.read_shard(self.folder / name)
            self._held[name] = held
            if len(self._held) > SHARDS_HELD:
                self._held.popitem(last=False)
        else:
            self._held.move_to_end(name)
        return held

    def _codes(self, index: int) -> tuple[np.ndarray, list]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"tune {index} of {len(self)}")
        index %= len(self)
        codes, offsets, meta = self._shard(self.shard_of[index])
        k = int(self.local[index])
        return codes[offsets[k]:offsets[k + 1]], meta[k]

    def _table(self, vocab: Vocabulary) -> np.ndarray:
        """Shard codes (0..129) to `vocab`'s ids (-1: missing there)."""
        table = self._tables.get(vocab.symbols)
        if table is None:
            table = np.array([vocab.id(s) if s in vocab else -1 for s in shards.CODE_SYMBOLS], dtype=np.int64)
            self._tables[vocab.symbols] = table
        return table

    def tune(self, index: int) -> Tune:
        codes, (_name, key, shift, meter, pickup, changes) = self._codes(index)
        name = self.names[index]  # the shard's name is the parsing run's; this one is this corpus's root's
        symbols = [shards.CODE_SYMBOLS[c] for c in codes.tolist()]
        return Tune(name, symbols, key, shift, meter, pickup, changes)

    def ids(self, index: int, vocab: Vocabulary | None = None) -> np.ndarray:
        """One tune as int64 ids, in `vocab` (a model's) when given; MissingSymbolError when it lacks one."""
        codes, meta = self._codes(index)
        out = self._table(vocab or self.vocab)[codes]
        if out.size and out.min() < 0:
            symbol = shards.CODE_SYMBOLS[int(codes[np.argmin(out)])]
            raise MissingSymbolError(f"tune {self.names[index]}: symbol {symbol!r} is not in the vocabulary {vocab!r}")
        return out

    def split(self, validation_fraction: float | None = None,
              seed: int | None = None) -> tuple[list[int], list[int]]:
        """(train, validation) tune indices, fixed by tune name and seed; Erk's tunes on Erk's sides
        (`ingest.split.split_with_erk`)."""
        fraction = self.validation_fraction if validation_fraction is None else validation_fraction
        seed = self.split_seed if seed is None else seed
        return split_with_erk(self.names, fraction, seed, self.erk_names)

    def iter_tunes(self, indices: Iterable[int], seed: int | None = None) -> Iterator[TuneRecord]:
        """The tunes `indices` as `TuneRecord`s (ids in this corpus's vocabulary).

        seed None: in the given order.  Else shuffled shard by shard: the shards in a random
        order, each one's tunes in a random order, so only a few shards are ever held.
        """
        order = list(indices)
        if seed is not None:
            rng = np.random.default_rng(seed)
            groups: dict[str, list[int]] = {}
            for i in order:
                groups.setdefault(self.shard_of[i], []).append(i)
            names = list(groups)
            order = []
            for k in rng.permutation(len(names)):
                group = groups[names[k]]
                order += [group[j] for j in rng.permutation(len(group))]
        for i in order:
            codes, (_name, _key, shift, meter, pickup, _changes) = self._codes(i)
            yield TuneRecord(self.names[i], self._table(self.vocab)[codes], steps_per_bar(meter), pickup, shift)
