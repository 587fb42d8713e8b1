"""Bar repetition (jamd.inference.repeat): exact decisions on a fake model, then the real lstm-folk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jamd.config import ModelConfig
from jamd.errors import ModelError
from jamd.inference.bar_source import LstmBars
from jamd.inference.lstm import LstmGenerator
from jamd.inference.model_store import check_metadata
from jamd.inference.repeat import BarRepeat, RepeatSettings
from jamd.inference.sampling import SymbolSampler, log_softmax
from jamd.tokens import DELIMITER, Vocabulary

VOCAB = Vocabulary([DELIMITER, "r", "_", "60", "62", "64"])  # / 0, r 1, _ 2, 60 3, 62 4, 64 5
BAR = 4  # 16ths per bar in the fake model


class FakeModel(SymbolSampler):
    """A step model whose logits favour one symbol (`liked`) by `margin`; state = what it heard."""

    def __init__(self, liked: int = 3, margin: float = 4.0):
        self.vocab, self._delimiter = VOCAB, 0
        self.liked, self.margin = liked, margin
        self.reset()

    def reset(self):
        self.position, self.bar_steps, self.heard_ids = 0, BAR, []
        self._logits = self._logits_for()

    def _logits_for(self):
        z = np.zeros(len(VOCAB))
        z[self.liked] = self.margin
        return z

    @property
    def next_logits(self):
        return self._logits

    def feed(self, idx):
        self.heard_ids.append(idx)
        self.position = (self.position + 1) % self.bar_steps
        self._logits = self._logits_for()
        return self._logits

    def snapshot(self):
        return (list(self.heard_ids), self.position, self._logits.copy())

    def restore(self, state):
        self.heard_ids, self.position, self._logits = list(state[0]), state[1], state[2].copy()


def model_with(chance=1.0, lookback=8, min_logp=-50.0, **kw):
    m = FakeModel(**kw)
    m.repeat = BarRepeat(RepeatSettings(chance, lookback, min_logp), BAR, excluded=(0,))
    return m


def hear(m, ids):
    for i in ids:
        m.feed(i)
        m.repeat.heard(i, m.position)


def test_only_whole_bars_from_a_bar_line_are_remembered_and_never_one_with_a_delimiter():
    m = model_with(lookback=2)
    m.position = 2  # a seed entering half-way through a bar
    hear(m, [3, 4])  # the rest of that bar: not a whole bar
    hear(m, [3, 4, 5, 1, 0, 2, 2, 2, 5, 5, 5, 5, 4, 4])  # one bar, one with "/", one bar, half a bar
    assert list(m.repeat.bars) == [(3, 4, 5, 1), (5, 5, 5, 5)]
    hear(m, [4, 4])
    assert list(m.repeat.bars) == [(5, 5, 5, 5), (4, 4, 4, 4)]  # lookback 2: the oldest goes
    m.repeat.regrid(BAR)
    assert list(m.repeat.bars) == [(5, 5, 5, 5), (4, 4, 4, 4)] and m.repeat._bar == []
    m.repeat.regrid(3)  # another meter: the bars no longer fit
    assert not m.repeat.bars and m.repeat.bar_steps == 3


def test_a_repeat_is_the_likeliest_bar_fed_to_the_model_and_remembered():
    m = model_with(liked=4, margin=12.0)  # the model all but insists on 62
    hear(m, [3, 3, 3, 3, 4, 4, 4, 4, 5, 1, 2, 2])
    rng = np.random.default_rng(4)
    before = list(m.heard_ids)
    got = m.repeated_bar(rng)
    assert got == ["62", "62", "62", "62"]
    assert m.heard_ids == [*before, 4, 4, 4, 4] and m.position == 0  # the model heard exactly that bar
    assert m.repeat.bars[-1] == (4, 4, 4, 4) and m.repeat.repeats == 1


def test_not_at_a_bar_line_without_bars_or_without_the_draw_nothing_changes():
    m = model_with()
    rng = np.random.default_rng(4)
    assert m.repeated_bar(rng) is None  # nothing heard yet
    hear(m, [3, 3, 3, 3, 4])
    state = m.snapshot()
    assert m.repeated_bar(rng) is None  # position 1: not a bar line
    assert m.snapshot()[0] == state[0]
    never = model_with(chance=0.0)
    hear(never, [3, 3, 3, 3])
    rng, untouched = np.random.default_rng(5), np.random.default_rng(5)
    assert never.repeated_bar(rng) is None
    assert rng.random() == untouched.random()  # chance 0 draws nothing: the stream is as before


def test_a_bar_the_model_finds_unlikely_is_vetoed_and_the_state_is_as_before():
    m = model_with(liked=5, margin=6.0, min_logp=-1.0)
    hear(m, [3, 4, 3, 4])  # the model gives 60 and 62 about e^-6 each
    state = m.snapshot()
    assert m.repeated_bar(np.random.default_rng(1)) is None
    assert m.snapshot()[0] == state[0] and m.snapshot()[1] == state[1]
    per_16th = float(np.mean([log_softmax(m.next_logits)[i] for i in (3, 4, 3, 4)]))
    assert per_16th < -1.0  # why it was vetoed
    m.repeat.settings = RepeatSettings(1.0, 8, per_16th - 1e-9)  # a bar just likely enough
    assert m.repeated_bar(np.random.default_rng(1)) == ["60", "62", "60", "62"]


def test_generate_cuts_a_repeat_at_the_length_asked_for():
    m = model_with(liked=3, margin=20.0)
    out = m.generate(6, 1.0, np.random.default_rng(0))
    assert out == ["60"] * 6  # bar 1 sampled, bar 2 a repeat cut to 2 of its 4 16ths
    assert m.repeat.repeats == 1


@pytest.mark.parametrize("bad, message", [
    ([1], "bar_repeat is [1]; it must be an object"),
    ("off", 'bar_repeat is "off"; it must be an object'),
    ({"chance": 1.5}, "bar_repeat.chance is 1.5; it must be a number 0-1"),
    # values as JSON spells them, the way the user wrote them (not Python's nan, True, None)
    ({"chance": float("nan")}, "bar_repeat.chance is NaN; it must be a number 0-1"),
    ({"chance": None}, "bar_repeat.chance is null; it must be a number 0-1"),
    ({"chance": "x"}, 'bar_repeat.chance is "x"; it must be a number 0-1'),
    ({"lookback": 0}, "bar_repeat.lookback is 0; it must be an integer 1-64"),
    ({"lookback": 2.5}, "bar_repeat.lookback is 2.5"),
    ({"min_logp": 1}, "bar_repeat.min_logp is 1; it must be a number <= 0"),
    ({"min_logp": float("-inf")}, "bar_repeat.min_logp is -Infinity; it must be a number <= 0"),
    ({"chance": True}, "bar_repeat.chance is true; it must be a number 0-1"),
    ({"copies": 3}, "bar_repeat.copies is not a setting"),
])
def test_bad_bar_repeat_metadata_is_one_line_naming_the_field(tmp_path, bad, message):
    import json

    raw = json.loads((LstmGenerator.load("lstm-folk").info.path.with_suffix(".json")).read_text())
    raw["bar_repeat"] = bad
    with pytest.raises(ModelError, match=None) as err:
        check_metadata(raw, tmp_path / "m.json")
    assert message in str(err.value) and "\n" not in str(err.value)


# -- the real model ---------------------------------------------------------------------------


def replayed_logits(symbols, position=0):
    """A fresh lstm-folk (no repetition) fed `symbols` from `position`: its next logits."""
    fresh = LstmGenerator.load("lstm-folk", ModelConfig(bar_repeat=0.0))
    fresh.reset(position, 16)
    fresh.prime(symbols)
    return fresh.next_logits


def bars_of(symbols):
    return [tuple(symbols[i:i + 16]) for i in range(0, len(symbols) - 15, 16)]


def test_lstm_folk_repeats_by_its_metadata_and_the_setting_overrides_it():
    gen = LstmGenerator.load("lstm-folk")
    assert gen.repeat is not None and gen.repeat.settings == RepeatSettings(0.18, 8, -1.0)
    assert LstmGenerator.load("lstm-folk", ModelConfig(bar_repeat=0.0)).repeat is None
    assert LstmGenerator.load("lstm-folk", ModelConfig(bar_repeat=0.5)).repeat.settings.chance == 0.5
    assert LstmGenerator.load("lstm").repeat is None  # no metadata, no setting: exactly as before


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chance=st.sampled_from([0.3, 1.0]), n_bars=st.integers(1, 7),
       extra=st.sampled_from([0, 0, 5, 15]), temperature=st.sampled_from([0.5, 1.0]))
def test_generated_melodies_are_what_the_model_heard(seed, chance, n_bars, extra, temperature):
    """Whatever is repeated: the melody has the length asked for and no delimiter, each repeat is an
    earlier whole bar, and (whole bars asked for, so no repeat is cut) the model's state is that
    of a model fed exactly the melody played."""
    gen = LstmGenerator.load("lstm-folk", ModelConfig(bar_repeat=chance))
    gen.reset(0, 16)
    n_steps = 16 * n_bars + extra
    out = gen.generate(n_steps, temperature, np.random.default_rng(seed))
    assert len(out) == n_steps and DELIMITER not in out
    if extra == 0:
        np.testing.assert_allclose(gen.next_logits, replayed_logits(out), rtol=1e-5, atol=1e-5)
    bars = bars_of(out)
    repeated = sum(b in bars[:i] for i, b in enumerate(bars) if i)
    assert repeated >= gen.repeat.repeats - (1 if extra else 0)  # a repeat cut at the end is not a bar


def test_live_bars_repeat_whole_bars_only_and_never_open_an_answer_with_one():
    gen = LstmGenerator.load("lstm-folk", ModelConfig(bar_repeat=1.0))
    src = LstmBars(gen, "lstm-folk")
    src.align(0, 16)
    src.reseed(["60", "_", "62", "_", "64", "_", "_", "_", "60", "_", "_", "_", "67", "_", "_", "_"])
    restarts = []
    restart = src._restart
    src._restart = lambda: (restarts.append(1), restart())  # a song end rebuilds the state from the seed
    rng = np.random.default_rng(4)
    played = list(src._seed)
    first = src.next_bar(16, 0.9, rng, first_note=True)
    assert first[0] not in ("_", "r")  # an answer opens on a pitch, never on a replayed bar's hold
    played += first
    for _ in range(6):
        played += src.next_bar(16, 0.9, rng)
    short = src.next_bar(8, 0.9, rng)  # half a bar: a repeat does not fit
    played += short
    assert gen.repeat.repeats >= 1
    bars = bars_of(played)
    assert any(b in bars[:i] for i, b in enumerate(bars) if i)
    assert not restarts  # with this seed the model never ends its song, so its state is all it played:
    np.testing.assert_allclose(gen.next_logits, replayed_logits(played), rtol=1e-5, atol=1e-5)


def test_null_bar_repeat_metadata_means_off_like_an_empty_object(tmp_path):
    import json

    raw = json.loads((LstmGenerator.load("lstm-folk").info.path.with_suffix(".json")).read_text())
    raw["bar_repeat"] = None
    check_metadata(raw, tmp_path / "m.json")  # accepted, as {} is
    assert RepeatSettings.from_metadata(None) == RepeatSettings.from_metadata({}) == RepeatSettings()
    assert RepeatSettings.from_metadata(None).chance == 0.0


def test_a_large_negative_min_logp_is_accepted(tmp_path):
    import json

    raw = json.loads((LstmGenerator.load("lstm-folk").info.path.with_suffix(".json")).read_text())
    raw["bar_repeat"] = {"min_logp": -1e7}  # "a number <= 0" means what it says
    check_metadata(raw, tmp_path / "m.json")
