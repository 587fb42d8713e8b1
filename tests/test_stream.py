"""The streamed training windows (training/stream.py) on a tiny synthetic corpus, exact values."""

from __future__ import annotations

import numpy as np
import pytest

from jamd.errors import DataError
from jamd.tokens import Vocabulary
from jamd.training import stream as st
from jamd.training.corpus import TuneRecord
from jamd.training.train_lstm import windows

VOCAB = Vocabulary(["/", "r", "_", "60", "62", "64"])  # ids: / 0, r 1, _ 2, 60 3, 62 4, 64 5


class TinyCorpus:
    """The two signatures and the vocabulary a streaming pipeline uses; counts tunes read."""

    def __init__(self, tunes: list[TuneRecord], vocab: Vocabulary = VOCAB):
        self.tunes, self.vocab, self.read = tunes, vocab, 0

    def iter_tunes(self, indices, seed=None):
        order = list(indices)
        if seed is not None:
            np.random.default_rng(seed).shuffle(order)
        for i in order:
            self.read += 1
            yield self.tunes[i]

    def split(self):
        return list(range(len(self.tunes))), []


def rec(ids, bar_steps=16, pickup=0, name="t"):
    return TuneRecord(name, np.array(ids, dtype=np.int64), bar_steps, pickup, 0)


# tune A: 3/4 (12 steps a bar) with a 2-step pickup; tune B: 4/4, no pickup
A = rec([3, 4, 5, 3], bar_steps=12, pickup=2, name="a")
B = rec([4, 2], name="b")


def spec(L=3, metric=True, transpose="c", vocab=VOCAB):
    model = st.model_vocabulary(vocab, transpose)
    return st.StreamSpec(L, model.id("/"), st.transposition_table(vocab, model, transpose), metric)


def test_segments_put_L_delimiters_after_each_tune_on_the_next_tunes_grid():
    segs = list(st.segments([A, B], spec()))
    assert [s[0].tolist() for s in segs] == [[3, 4, 5, 3, 0, 0, 0], [4, 2, 0, 0, 0]]
    # A: step s sits (s - 2) mod 12 after a downbeat; the delimiters after it count down to B's
    # downbeat on B's 4/4 grid (as the daemon primes a model); after the last tune, B's grid goes on
    assert segs[0][1].tolist() == [10, 11, 0, 1, 13, 14, 15]
    assert segs[1][1].tolist() == [0, 1, 2, 3, 4]
    assert [s[1] for s in st.segments([A], spec(metric=False))] == [None]


def test_windows_with_an_offset_exact():
    # stream: 3 4 5 3 / / / 4 2 / / /  (12 steps); offset 1, L 3: (12 - 1 - 1) // 3 = 3 windows
    got = list(st.iter_windows(st.segments([A, B], spec()), 3, offset=1))
    assert [(x.tolist(), p.tolist(), y.tolist()) for x, p, y in got] == [
        ([4, 5, 3], [0, 1, 13], [5, 3, 0]),  # positions of stream steps 2..4
        ([0, 0, 0], [14, 15, 0], [0, 0, 4]),  # B's first step is its downbeat
        ([4, 2, 0], [1, 2, 3], [2, 0, 0]),
    ]
    assert st.window_count(12, 3, 1) == 3 and all(x.dtype == np.int32 for w in got for x in w)


def test_positions_are_those_of_the_predicted_steps_with_pickup_and_3_4():
    got = list(st.iter_windows(st.segments([A, B], spec()), 3))
    # stream positions: 10 11 0 1 13 14 15 | 0 1 2 3 4; window k reads positions k*3+1 .. k*3+3
    assert [p.tolist() for _, p, _ in got] == [[11, 0, 1], [13, 14, 15], [0, 1, 2]]


@pytest.mark.parametrize("offset", [0, 1, 2, 5, 7])
def test_windows_equal_the_seeds_in_memory_cut(offset):
    tunes = [rec(np.random.default_rng(i).integers(1, 6, 5 + 3 * i)) for i in range(6)]
    L = 4
    stream = np.concatenate([np.concatenate([t.ids, np.zeros(L, np.int64)]) for t in tunes])
    x, y = windows(stream, L, offset)
    got = list(st.iter_windows(st.segments(tunes, spec(L, metric=False)), L, offset))
    assert len(got) == len(x) == st.window_count(len(stream), L, offset)
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), x)
    np.testing.assert_array_equal(np.stack([g[2] for g in got]), y)
    assert st.stream_tokens(TinyCorpus(tunes), list(range(6)), L) == len(stream)


def test_shards_interleave_and_a_limit_evens_them():
    tunes = [rec([3, 4, 5, 3, 4, 5, 3]) for _ in range(4)]  # 4 x (7 + 2) = 36 steps, L 2: 17 windows
    all_w = [w[0].tolist() for w in st.iter_windows(st.segments(tunes, spec(2)), 2)]
    s0 = [w[0].tolist() for w in st.iter_windows(st.segments(tunes, spec(2)), 2, shard=0, shards=2)]
    s1 = [w[0].tolist() for w in st.iter_windows(st.segments(tunes, spec(2)), 2, shard=1, shards=2)]
    assert len(all_w) == 17 and s0 == all_w[0::2] and s1 == all_w[1::2]
    even = list(st.iter_windows(st.segments(tunes, spec(2)), 2, shard=0, shards=2, limit=8))
    assert len(even) == 8 == len(s1)


def test_all_keys_vocabulary_and_transposition_table():
    model = st.model_vocabulary(VOCAB, "all-keys")
    assert model.pitch_range == (54, 69) and model.symbols[:3] == ("/", "r", "_")  # 60-6 .. 64+5
    assert len(model) == 3 + 16
    table = st.transposition_table(VOCAB, model, "all-keys")
    assert table.shape == (12, 6)
    for r, shift in enumerate(st.SHIFTS):
        assert model.decode(table[r]) == ["/", "r", "_", str(60 + shift), str(62 + shift), str(64 + shift)]
    assert st.transposition_table(VOCAB, VOCAB, "c").tolist() == [[0, 1, 2, 3, 4, 5]]
    assert st.model_vocabulary(VOCAB, "c") is VOCAB


def test_all_keys_moves_each_tune_by_one_drawn_shift():
    s = spec(L=2, metric=False, transpose="all-keys")
    model = st.model_vocabulary(VOCAB, "all-keys")
    tunes = [rec([3, 2, 4, 1]) for _ in range(240)]
    shifts = []
    for ids, _ in st.segments(tunes, s, np.random.default_rng(0)):
        sym = model.decode(ids)
        assert sym[1] == "_" and sym[3] == "r" and sym[4:] == ["/", "/"]
        shifts.append(int(sym[0]) - 60)
        assert int(sym[2]) - 62 == shifts[-1]  # the whole tune moves together
    counts = np.bincount(np.array(shifts) + 6, minlength=12)
    assert counts.min() >= 8 and set(shifts) == set(st.SHIFTS)  # all 12 keys, none rare
    # no rng (validation without a seed's draw): the tune stays in C
    ids, _ = next(st.segments(tunes[:1], s))
    assert model.decode(ids[:3]) == ["60", "_", "62"]


def test_epoch_draws_are_a_function_of_seed_and_epoch():
    a, b = st.epoch_draws(7, 3, 64), st.epoch_draws(7, 3, 64)
    assert a == b and 0 <= a.offset < 64
    offsets = {st.epoch_draws(7, e, 64).offset for e in range(20)}
    assert len(offsets) > 5  # the windows move between epochs


def test_epoch_windows_read_the_tunes_in_the_drawn_order_lazily():
    corpus = TinyCorpus([rec([3, 4, 5] * 20, name=str(i)) for i in range(1000)])
    draws = st.epoch_draws(0, 0, 8)
    gen = st.epoch_windows(corpus, list(range(1000)), spec(8, metric=False), draws)()
    first = next(gen)
    assert corpus.read <= 2  # one tune (68 steps) gives several windows: the rest is unread
    # the first tune read is the one the order seed puts first
    order = list(range(1000))
    np.random.default_rng(draws.order_seed).shuffle(order)
    assert first[0].tolist() == (corpus.tunes[order[0]].ids.tolist() + [0] * 8)[draws.offset:draws.offset + 8]


def test_validation_arrays_exact_and_limited():
    x, p, y = st.validation_arrays(TinyCorpus([A, B]), [0, 1], spec())
    assert x.tolist() == [[3, 4, 5], [3, 0, 0], [0, 4, 2]] and y.tolist() == [[4, 5, 3], [0, 0, 0], [4, 2, 0]]
    assert p.tolist() == [[11, 0, 1], [13, 14, 15], [0, 1, 2]]
    x1, _, _ = st.validation_arrays(TinyCorpus([A, B]), [0, 1], spec(), limit=1)
    assert x1.tolist() == [[3, 4, 5]]
    with pytest.raises(DataError, match="validation tunes too few for sequence_length 3"):
        st.validation_arrays(TinyCorpus([A]), [], spec())


def test_window_dataset_batches_features_lazily():
    pytest.importorskip("tensorflow")
    corpus = TinyCorpus([rec([3, 4, 5] * 20, name=str(i)) for i in range(1000)])
    s = spec(8)
    draws = st.epoch_draws(0, 1, 8)
    ds = st.window_dataset(st.epoch_windows(corpus, list(range(1000)), s, draws), s, batch_size=4,
                           shuffle_buffer=16, shuffle_seed=draws.shuffle_seed, block=4)
    feats, y = next(iter(ds))
    assert set(feats) == {"tokens", "position"}
    assert feats["tokens"].shape == (4, 8) and feats["position"].shape == (4, 8) and y.shape == (4, 8)
    assert feats["tokens"].dtype.name == "int32"
    np.testing.assert_array_equal(feats["tokens"].numpy()[:, 1:], y.numpy()[:, :-1])  # y is x moved one step
    # the shuffle buffer (16 windows + a block or two + prefetch) needs a few tunes, not the corpus
    assert corpus.read < 50, corpus.read
    plain = st.window_dataset(st.epoch_windows(corpus, [0, 1], spec(8, metric=False), draws), spec(8, metric=False),
                              batch_size=100, shuffle_buffer=4, shuffle_seed=1)
    batches = list(plain)
    n = st.window_count(2 * (60 + 8), 8, draws.offset)
    assert len(batches) == 1 and batches[0][0].shape == (n, 8)  # the short last batch is kept


@pytest.mark.parametrize("block", [1, 3, 7, 1000])
def test_window_dataset_blocks_keep_the_windows_and_their_order(block):
    """Windows cross into TensorFlow in blocks (for speed); unbatched, they are the generator's
    windows in its order, whatever the block size (the last block short), so the seeded shuffle
    draws the same batches as one window at a time."""
    pytest.importorskip("tensorflow")
    corpus = TinyCorpus([rec([3 + (i + k) % 3 for k in range(17 + i)], name=str(i)) for i in range(9)])
    s = spec(5)
    gen = st.epoch_windows(corpus, list(range(9)), s, st.epoch_draws(0, 2, 5))
    want = list(gen())
    assert len(want) > 7 and len(want) % 7  # several blocks of 7 and a short one
    ds = st.window_dataset(gen, s, batch_size=1, shuffle_buffer=1, shuffle_seed=0, block=block)
    got = [(f["tokens"].numpy()[0], f["position"].numpy()[0], y.numpy()[0]) for f, y in ds]
    assert len(got) == len(want)
    for (gx, gp, gy), (wx, wp, wy) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gp, wp)
        np.testing.assert_array_equal(gy, wy)
    shuffled = [st.window_dataset(gen, s, batch_size=4, shuffle_buffer=8, shuffle_seed=3, block=b)
                for b in (1, block)]
    a, b = ([y.numpy().tolist() for _, y in d] for d in shuffled)
    assert a == b  # the same batches one window at a time and in blocks


@pytest.mark.train
def test_training_all_keys_with_metric_position_records_what_the_export_needs(tmp_path):
    """A real run on erk5.abc: the vocabulary widened by -6..+5, the config in state.json,
    a model reading tokens and positions."""
    pytest.importorskip("tensorflow")
    import json

    import keras
    from corpora import erk5_folder

    from jamd import config
    from jamd.training.corpus import load_corpus
    from jamd.training.lstm_model import OneHot  # noqa: F401  (registers the layer for loading)
    from jamd.training.train_lstm import train

    cfg = config.load(None, [*erk5_folder(tmp_path), "corpus.workers=1", "training.units=8", "training.batch_size=8",
                             "training.max_steps_per_epoch=2", "training.sequence_length=16", "training.epochs=1",
                             "training.layers=2", "training.metric_position=true", "training.transpose=all-keys"])
    figures = train(cfg, tmp_path / "run", progress=False)
    assert figures["epochs_run"] == 1 and figures["chief"] and figures["replicas"] == 1
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    lo, hi = load_corpus(cfg.corpus, progress=False).vocab.pitch_range
    vocab = Vocabulary(state["vocabulary"])
    assert vocab.pitch_range == (lo - 6, hi + 5) and vocab == st.model_vocabulary(
        load_corpus(cfg.corpus, progress=False).vocab, "all-keys")
    assert {k: state["config"]["training"][k] for k in ("layers", "metric_position", "transpose")} == {
        "layers": 2, "metric_position": True, "transpose": "all-keys"}
    model = keras.models.load_model(tmp_path / "run" / "best.keras")
    assert [i.name for i in model.inputs] == ["tokens", "position"]
    assert model.get_layer("lstm_2") is not None and model.get_layer("output").units == len(vocab)
