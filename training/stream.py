"""Training windows streamed from the corpus with tf.data: the corpus is never all in memory.

The seed's stream is kept: tunes joined, each followed by `sequence_length`
(L) delimiters "/".  An epoch cuts it into non-overlapping L-step windows that
start at a random offset 0..L-1, so every token is a target once per epoch and
the windows differ between epochs.  Here the stream is never built: the tunes
come one at a time from `corpus.iter_tunes` (in an order shuffled per epoch),
a rolling buffer of less than one tune plus L+1 steps cuts the windows, and
tf.data shuffles them in a buffer of `training.shuffle_buffer` windows.

A window is (x, y): token ids x[t] = stream[o + kL + t] and targets
y[t] = stream[o + kL + t + 1], t = 0..L-1, both (L,) int32.  With metric
position the features are {"tokens": x, "position": p} where p[t] is the bar
position (`jamd.tokens.bar_positions`, 16ths after the downbeat) of the step
y[t] sits on: the step the model predicts at t.  The delimiters between two tunes
run on the second tune's grid, counting down to its first step (as the daemon
primes a model before a phrase); after the last tune they continue its grid.

transpose "all-keys": each tune of an epoch is moved by a random -6..+5
semitones, uniformly, so it lands in each of the 12 keys equally often.  The
tunes are stored in C major / A minor (TuneRecord.shift moved them there from
their original key, which is thus one of the 12 draws); moving by at most a
tritone either way keeps them near the register they were written in.  The
model's vocabulary covers the corpus's pitch range widened by -6..+5
(`model_vocabulary`).

Epoch e's windows are a function of (seed, e) alone, so a resumed run and every
worker of a cluster draw the same windows; with several input pipelines
(workers) pipeline p takes windows k with k mod n = p, and each takes the same
count (a cluster's steps must agree), dropping at most n-1 windows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from jamd.errors import DataError
from jamd.tokens import DELIMITER, Vocabulary, bar_positions, fold_to_midi, is_pitch

SHIFTS = tuple(range(-6, 6))  # all-keys: semitones a tune may be moved by (12 keys)


def model_vocabulary(corpus_vocab: Vocabulary, transpose: str) -> Vocabulary:
    """The model's vocabulary: the corpus's ("c"), or ("all-keys") its pitches moved by every
    shift in -6..+5 semitones, folded into MIDI's 0-127 (pitch range lo-6 .. hi+5)."""
    if transpose == "c":
        return corpus_vocab
    return Vocabulary.from_pitches({fold_to_midi(p + s) for p in corpus_vocab.pitches for s in SHIFTS})


def transposition_table(corpus_vocab: Vocabulary, vocab: Vocabulary, transpose: str) -> np.ndarray:
    """(rows, len(corpus_vocab)) int64: row r maps a corpus id to `vocab`'s id of the symbol moved
    by SHIFTS[r] semitones ("all-keys": 12 rows) or unmoved ("c": one row).  Specials keep their
    symbol.  Raises DataError when `vocab` lacks a symbol (a vocabulary from another corpus)."""
    shifts = SHIFTS if transpose == "all-keys" else (0,)
    table = np.empty((len(shifts), len(corpus_vocab)), dtype=np.int64)
    for r, s in enumerate(shifts):
        for i, sym in enumerate(corpus_vocab.symbols):
            moved = str(fold_to_midi(int(sym) + s)) if is_pitch(sym) else sym
            if moved not in vocab:
                raise DataError(f"symbol {moved!r} is not in the model's vocabulary {vocab!r}")
            table[r, i] = vocab.id(moved)
    return table


@dataclass(frozen=True)
class StreamSpec:
    """How tunes become windows: sequence length L, the model's delimiter id, the
    transposition table (`transposition_table`) and whether positions are produced."""

    length: int
    delimiter: int
    table: np.ndarray
    metric_position: bool


def model_spec(corpus_vocab: Vocabulary, training: Any) -> tuple[Vocabulary, StreamSpec]:
    """The model's vocabulary and the stream spec for a corpus's vocabulary and `training` settings
    (`sequence_length`, `transpose`, `metric_position`), as `jamd train` cuts its windows."""
    vocab = model_vocabulary(corpus_vocab, training.transpose)
    return vocab, StreamSpec(training.sequence_length, vocab.id(DELIMITER),
                             transposition_table(corpus_vocab, vocab, training.transpose), training.metric_position)


def segments(tunes: Iterable[Any], spec: StreamSpec, rng: np.random.Generator | None = None
             ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each tune (a TuneRecord) as (ids, positions): its ids in the model's vocabulary followed by
    L delimiters, (len + L,) int64, and the bar positions of those steps, (len + L,) int32 (None
    without metric position).  With several table rows, `rng` picks each tune's row (its key)."""
    L = spec.length
    rows = spec.table.shape[0]
    tunes = iter(tunes)
    t = next(tunes, None)
    while t is not None:
        after = next(tunes, None)  # one tune ahead: its grid places the delimiters before it
        # no rng: the unmoved row (C major / A minor)
        row = 0 if rows == 1 else int(rng.integers(0, rows)) if rng is not None else SHIFTS.index(0)
        ids = np.concatenate([spec.table[row][np.asarray(t.ids, dtype=np.int64)],
                              np.full(L, spec.delimiter, dtype=np.int64)])
        pos = None
        if spec.metric_position:
            # The L delimiters before a tune count down to its first step on ITS grid, as the
            # daemon primes a model (jamd.inference.lstm.start_positions): the last one, which
            # predicts the tune's first step, reads that step's position.  After the last tune
            # they continue its own grid.
            nxt = after or t
            tail_start = -L if after is not None else len(t.ids)
            pos = np.concatenate([bar_positions(len(t.ids), t.bar_steps, t.pickup_steps),
                                  bar_positions(L, nxt.bar_steps, nxt.pickup_steps, start=tail_start)])
        yield ids, pos
        t = after


def iter_windows(segs: Iterable[tuple[np.ndarray, np.ndarray | None]], length: int, offset: int = 0,
                 shard: int = 0, shards: int = 1, limit: int | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """(x, positions, y) of the non-overlapping windows of the joined segments, starting `offset`
    steps in, each (length,) int32 (positions None when the segments have none); window k is
    kept when k mod shards = shard, at most `limit` of them.  Holds one segment plus a window."""
    L = length
    ids = np.zeros(0, dtype=np.int64)
    pos: np.ndarray | None = np.zeros(0, dtype=np.int32)
    skip, k, kept = offset, 0, 0
    for seg_ids, seg_pos in segs:
        ids = np.concatenate([ids, seg_ids])
        pos = None if seg_pos is None else np.concatenate([pos, seg_pos])
        if skip:
            cut = min(skip, len(ids))
            ids, pos, skip = ids[cut:], None if pos is None else pos[cut:], skip - cut
        start = 0
        while start + L + 1 <= len(ids):
            if k % shards == shard:
                if limit is not None and kept >= limit:
                    return
                yield (ids[start:start + L].astype(np.int32),
                       None if pos is None else pos[start + 1:start + L + 1].astype(np.int32),
                       ids[start + 1:start + L + 1].astype(np.int32))
                kept += 1
            k += 1
            start += L
        ids = ids[start:]
        pos = None if pos is None else pos[start:]


def window_count(n_tokens: int, length: int, offset: int = 0) -> int:
    """Windows an epoch cuts from a stream of `n_tokens` steps starting `offset` in."""
    return max(0, (n_tokens - 1 - offset) // length)


def stream_tokens(corpus: Any, indices: list[int], length: int) -> int:
    """Steps in the joined stream of tunes `indices` (each tune + L delimiters), counted by one
    lazy pass over `corpus.iter_tunes` (only one tune in memory at a time)."""
    return sum(len(t.ids) + length for t in corpus.iter_tunes(indices))


@dataclass(frozen=True)
class Epoch:
    """The random draws of one epoch: window offset, tune order seed and key seed."""

    offset: int
    order_seed: int
    key_seed: int
    shuffle_seed: int


def epoch_draws(seed: int, epoch: int, length: int) -> Epoch:
    """Epoch `epoch`'s draws, a function of (seed, epoch) alone (resume and workers agree)."""
    rng = np.random.default_rng([seed, epoch])
    offset = int(rng.integers(0, length))
    order, key, shuffle = (int(v) for v in rng.integers(0, 2**31 - 1, 3))
    return Epoch(offset, order, key, shuffle)


def epoch_windows(corpus: Any, indices: list[int], spec: StreamSpec, draws: Epoch, shard: int = 0,
                  shards: int = 1, limit: int | None = None) -> Callable[[], Iterator]:
    """A generator function over one epoch's windows (tunes in the order of draws.order_seed, keys
    drawn by draws.key_seed), as `iter_windows` yields them; each call starts over."""
    def gen() -> Iterator:
        tunes = corpus.iter_tunes(indices, seed=draws.order_seed)
        yield from iter_windows(segments(tunes, spec, np.random.default_rng(draws.key_seed)),
                                spec.length, draws.offset, shard, shards, limit)
    return gen


def validation_arrays(corpus: Any, indices: list[int], spec: StreamSpec, seed: int = 0,
                      limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Fixed validation windows (tunes in index order, offset 0, keys drawn by `seed` for
    all-keys; the first `limit`): x, positions (None without metric position), y, each
    (windows, L) int32.  DataError when the tunes give no window."""
    got = list(iter_windows(segments(corpus.iter_tunes(indices), spec, np.random.default_rng(seed)),
                            spec.length, limit=limit))
    if not got:
        raise DataError(f"validation tunes too few for sequence_length {spec.length}")
    x, p, y = zip(*got, strict=True)
    return np.stack(x), None if p[0] is None else np.stack(p), np.stack(y)


def features(x: Any, positions: Any) -> Any:
    """The model's inputs: x alone, or {"tokens": x, "position": positions}."""
    return x if positions is None else {"tokens": x, "position": positions}


def window_dataset(gen: Callable[[], Iterator], spec: StreamSpec, batch_size: int, shuffle_buffer: int,
                   shuffle_seed: int, drop_remainder: bool = False, block: int = 256):
    """tf.data over `gen`'s windows: shuffled in a buffer of `shuffle_buffer` windows, batched
    ((batch, L) int32 features and targets), prefetched.  The generator is read lazily.

    The generator's windows cross into TensorFlow `block` at a time, as (block, L) arrays that
    `unbatch` splits again: `from_generator` costs about 150 µs per element it converts, which
    held one window at a time to ~380,000 tokens/s, a tenth of what a GPU trains
    (docs/BENCHMARKS.md "Training throughput").  The windows and their order are the same, so the
    shuffle (seeded) draws the same batches."""
    import tensorflow as tf

    L = spec.length
    x_spec = tf.TensorSpec((None, L), tf.int32)
    f_spec = features(x_spec, x_spec if spec.metric_position else None)

    def blocks() -> Iterator:
        windows = gen()
        while group := list(itertools.islice(windows, block)):  # the last one may be short
            x, p, y = zip(*group, strict=True)
            yield features(np.stack(x), None if p[0] is None else np.stack(p)), np.stack(y)

    ds = tf.data.Dataset.from_generator(blocks, output_signature=(f_spec, x_spec)).unbatch()
    ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def array_dataset(x: np.ndarray, p: np.ndarray | None, y: np.ndarray, batch_size: int,
                  shard: int = 0, shards: int = 1, limit: int | None = None, drop_remainder: bool = False):
    """tf.data over fixed windows (validation): rows k with k mod shards = shard, at most `limit`."""
    import tensorflow as tf

    rows = np.arange(len(x))[shard::shards][:limit]
    ds = tf.data.Dataset.from_tensor_slices((features(x[rows], None if p is None else p[rows]), y[rows]))
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
