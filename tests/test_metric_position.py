"""Issue 16 in the daemon: a model reading the metric position hears the clock's bar position of
every step, a model trained in all keys answers in the player's key, and the shipped model plays
as it did before.

The position models here are "oracles" built with onnx.helper: their logits are a table row
picked by the position input (h and c pass through), so at temperature 0 the symbol generated
for a step is the pitch 60 + the position the daemon fed for it, and the notes a musician
hears spell out the positions.  A recording wrapper around the ONNX Runtime session keeps every
position and token fed.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper
from test_engine import play, run_to

from jamd.cli import main
from jamd.config import Config
from jamd.inference.bar_source import LstmBars
from jamd.inference.forecast import MelodyForecast
from jamd.inference.lstm import LstmGenerator, start_positions
from jamd.inference.model_store import load_info
from jamd.inference.runtime import make_session
from jamd.live.session import LiveSession
from jamd.midi.midifile import read_midi_file, write_midi
from jamd.midi.outputs import MemoryOutput
from jamd.sync.clock import ManualClock
from jamd.tokens import METRIC_POSITIONS, Note, notes_to_symbols

PITCHES = [str(60 + p) for p in range(METRIC_POSITIONS)]  # the oracle's symbol for position p: 60 + p
VOCAB = ["/", "r", "_", *PITCHES]


def oracle(tmp_path, transpose: str = "c", name: str = "oracle"):
    """An LSTM step model (1 layer of 4 units, metric position) whose next symbol is 60 + position."""
    table = np.full((METRIC_POSITIONS, len(VOCAB)), -10.0, np.float32)
    table[np.arange(METRIC_POSITIONS), 3 + np.arange(METRIC_POSITIONS)] = 10.0
    state = [1, 1, 4]
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "position"], ["logits"], axis=0),
         helper.make_node("Identity", ["h"], ["h_out"]), helper.make_node("Identity", ["c"], ["c_out"])],
        "oracle",
        [helper.make_tensor_value_info("token", TP.INT32, [1]),
         helper.make_tensor_value_info("position", TP.INT32, [1]),
         helper.make_tensor_value_info("h", TP.FLOAT, state), helper.make_tensor_value_info("c", TP.FLOAT, state)],
        [helper.make_tensor_value_info("logits", TP.FLOAT, [1, len(VOCAB)]),
         helper.make_tensor_value_info("h_out", TP.FLOAT, state),
         helper.make_tensor_value_info("c_out", TP.FLOAT, state)],
        [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    meta = {"kind": "lstm-step", "units": 4, "layers": 1, "metric_position": True, "positions": METRIC_POSITIONS,
            "transpose": transpose, "vocabulary": VOCAB}
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


class Recording:
    """An ONNX Runtime session that keeps the (token, position) of every step run."""

    def __init__(self, session):
        self.real = session
        self.fed: list[tuple[int, int]] = []
        self.gen: LstmGenerator | None = None

    def get_inputs(self):
        return self.real.get_inputs()

    def get_outputs(self):
        return self.real.get_outputs()

    def io_binding(self):
        return self.real.io_binding()

    def run(self, names, feeds):
        self.fed.append((int(feeds["token"].reshape(-1)[0]), int(feeds["position"].reshape(-1)[0])))
        return self.real.run(names, feeds)

    def run_with_iobinding(self, binding):
        self.fed.append((int(self.gen._tok_flat[0]), int(self.gen._pos_flat[0])))
        return self.real.run_with_iobinding(binding)

    def positions(self) -> list[int]:
        return [p for _, p in self.fed]


def recording_generator(path) -> tuple[LstmGenerator, Recording]:
    rec = Recording(make_session(path, "cpu"))
    gen = LstmGenerator(rec, load_info(path))
    rec.gen = gen
    return gen, rec


def live(tmp_path, mode: str, beats_per_bar: int = 4, transpose: str = "c", **sets):
    """A live session on an in-memory port and a manual clock, playing a recorded oracle at temperature 0."""
    path = oracle(tmp_path, transpose)
    cfg = Config().replace(**{"live.mode": mode, "model.temperature": 0.0, "clock.beats_per_bar": beats_per_bar,
                              "metronome.count_in_bars": 0, **sets})
    clock = ManualClock(120, beats_per_bar)
    out = MemoryOutput(clock.now_ns)
    recs: list[Recording] = []

    def open_model(name):
        gen, rec = recording_generator(path)
        recs.append(rec)
        return LstmBars(gen, name)

    s = LiveSession(cfg, out, open_model, clock=clock)
    s.player = []
    return s, clock, recs


# -- the bar grid of the generator -----------------------------------------------

def test_start_positions_continue_the_grid_backwards():
    assert start_positions(5, 0, 16) == [12, 13, 14, 15, 0]
    assert start_positions(4, 2, 12) == [11, 0, 1, 2]


def test_delimiters_and_seed_hear_their_bar_positions(tmp_path):
    gen, rec = recording_generator(oracle(tmp_path))
    # built at a 4/4 downbeat: 64 delimiters, the last predicting position 0
    assert rec.positions() == start_positions(64, 0, 16) and rec.positions()[-3:] == [14, 15, 0]
    rec.fed.clear()
    gen.reset(4, 12)  # 3/4, the melody starting on its second beat: a new start state
    assert rec.positions() == [(4 - 63 + k) % 12 for k in range(64)]
    assert gen.vocab.symbols[int(np.argmax(gen.next_logits))] == "64"
    rec.fed.clear()
    gen.prime(["60", "_", "_", "62", "_", "_", "_", "_", "64"])  # each token reads the next step's position
    assert rec.positions() == [5, 6, 7, 8, 9, 10, 11, 0, 1]
    assert gen.position == 1


def test_align_runs_the_last_step_again_with_the_clocks_position(tmp_path):
    gen, rec = recording_generator(oracle(tmp_path))
    gen.reset(0, 16)
    gen.prime(["60", "_", "_"])  # the next step would be position 3 ...
    rec.fed.clear()
    gen.align(0, 12)  # ... but the clock says a 3/4 downbeat comes next
    assert rec.fed == [(gen.vocab.id("_"), 0)]
    assert gen.vocab.symbols[int(np.argmax(gen.next_logits))] == "60"
    rec.fed.clear()
    gen.align(0, 12)  # already there: nothing is run
    assert rec.fed == []


def test_forecast_rollouts_hear_the_positions_after_what_was_heard(tmp_path):
    gen, rec = recording_generator(oracle(tmp_path))
    forecast = MelodyForecast(gen, rollouts=2, rng=np.random.default_rng(0), temperature=0.0)
    forecast.reset(8, 12)
    rec.fed.clear()
    forecast.hear(["60", "_", "r"])  # steps at positions 8, 9, 10
    assert rec.positions() == [9, 10, 11]
    rec.fed.clear()
    # the span's beats start at positions 11 (pitch class of 71: 11) and 3 (63: 3), twice each
    span = forecast.onsets(5, 4)
    assert rec.positions() == [0, 1, 2, 3] * 2
    assert span[11] == 1.0 and span[3] == 1.0 and span.sum() == 2.0
    assert (gen.position, gen.bar_steps) == (11, 12)  # the state after `hear`, restored


# -- the live engine feeds the clock's positions -----------------------------------

@pytest.mark.parametrize(("beats", "spb"), [(4, 16), (3, 12)])
def test_continuous_bars_spell_out_the_clocks_bar_positions(tmp_path, beats, spb):
    s, clock, recs = live(tmp_path, "continuous", beats)
    run_to(s, clock, 6 * spb)
    notes = s.engine.stream.notes
    assert len(notes) >= 3 * spb
    # one note a step, whose pitch is 60 + the bar position the model was fed for it
    assert [(n.start % spb, n.pitch, n.duration) for n in notes] == \
        [(i % spb, 60 + i % spb, 1) for i in range(len(notes))]
    assert notes[0].start % spb == 0


@pytest.mark.parametrize(("beats", "spb", "pickup"), [(4, 16, 4), (3, 12, 3)])
def test_a_pickup_phrase_primes_the_model_from_its_bar_line(tmp_path, beats, spb, pickup):
    s, clock, recs = live(tmp_path, "call-response", beats)
    start = 2 * spb - pickup  # the last `pickup` 16ths of bar 1, then a bar: D | G A B G
    phrase = [Note(start, 62, pickup)] + [Note(2 * spb + k * (spb // 4), p, spb // 4)
                                          for k, p in enumerate((67, 69, 71, 67))]
    play(s, clock, phrase)
    run_to(s, clock, 8 * spb)
    assert len(s.engine.phrases) == 1 and s.engine.phrases[0].bars == 2
    shift = s.engine.last_key.shift_to_normal()
    rec = recs[0]
    seed_fed, answer_fed = rec.fed[-4 * spb:-2 * spb], rec.fed[-2 * spb:]
    # the seed: the phrase moved to C/Am, from the bar line before it (pickup: rests first) ...
    moved = [Note(n.start - spb, n.pitch + shift, n.duration) for n in phrase]
    assert [gen_symbol(rec, t) for t, _ in seed_fed] == notes_to_symbols(moved, 2 * spb)
    assert [gen_symbol(rec, t) for t, _ in seed_fed][:spb - pickup + 1] == ["r"] + ["_"] * (spb - pickup - 1) + \
        [str(62 + shift)]
    # ... each token reading the bar position of the step after it
    assert [p for _, p in seed_fed] == [(k + 1) % spb for k in range(2 * spb)]
    assert [p for _, p in answer_fed] == [(k + 1) % spb for k in range(2 * spb)]
    # the answer from the next bar line: 60 + each step's position, moved back to the player's key
    start_answer, notes = s.engine.answers[0]
    assert start_answer % spb == 0
    assert [(n.start - start_answer, n.pitch) for n in notes] == [(i, 60 + i % spb - shift) for i in range(2 * spb)]


def gen_symbol(rec: Recording, token: int) -> str:
    return rec.gen.vocab.symbols[token]


G_PHRASE = [Note(k * 4, p, 4) for k, p in enumerate((67, 71, 74, 71, 72, 69, 66, 67))]  # G major, 2 bars


def test_an_all_keys_model_hears_and_answers_in_the_players_key(tmp_path):
    s, clock, recs = live(tmp_path, "call-response", transpose="all-keys")
    play(s, clock, G_PHRASE)
    run_to(s, clock, 96)
    assert len(s.engine.phrases) == 1 and s.engine.last_key.name == "G major"
    rec = recs[0]
    fed = [gen_symbol(rec, t) for t, _ in rec.fed]
    assert fed[-64:-32] == notes_to_symbols(G_PHRASE, 32)  # the seed the model heard: the phrase in G, unmoved
    start, notes = s.engine.answers[0]
    # what sounds is exactly what the model chose (60 + position), not moved from C/Am to G
    assert [(n.start - start, n.pitch) for n in notes] == [(i, 60 + i % 16) for i in range(32)]
    assert s.engine.transpose == -5  # the chords still choose in C/Am and move by the key


def test_a_c_model_hears_the_same_phrase_in_c(tmp_path):
    s, clock, recs = live(tmp_path, "call-response")
    play(s, clock, G_PHRASE)
    run_to(s, clock, 96)
    rec = recs[0]
    fed = [gen_symbol(rec, t) for t, _ in rec.fed]
    moved = notes_to_symbols([Note(n.start, n.pitch + 5, n.duration) for n in G_PHRASE], 32)  # G -> C: +5
    assert fed[-64:-32] == moved
    start, notes = s.engine.answers[0]
    assert [(n.start - start, n.pitch) for n in notes] == [(i, 55 + i % 16) for i in range(32)]


# -- jamd generate ---------------------------------------------------------------

def g_seed(path) -> None:
    """A G major phrase with a 4-step pickup: D | G A B G | D' B G _."""
    write_midi([Note(12, 62, 4), Note(16, 67, 4), Note(20, 69, 4), Note(24, 71, 4), Note(28, 67, 4),
                Note(32, 74, 4), Note(36, 71, 4), Note(40, 67, 8)], path)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Recorded from `jamd generate --model lstm --bars 4 --random-seed 7 ...` on main at 102fde5 (before
# issue 16's model work): the shipped model, which has no position input, must play exactly as before.
MAIN_OUTPUTS = {
    ("--meter", "4/4"): "75e78fc3f6d92c4a55c5d72e7bde430338dedb84263ff698eecfa110cc907dff",
    ("--meter", "3/4"): "a4c5d63d04ec9509ed21135d9a8769ff8f3b7d2f73fe74053870f8996be47138",
    ("--seed-midi", "G"): "3781d13c4e1525a32d2f045a6b90bf15198771ec482e8b7335ce1982ebf60e11",
}


@pytest.mark.parametrize("extra", list(MAIN_OUTPUTS))
def test_the_shipped_model_generates_byte_identical_files(tmp_path, shipped_lstm, extra):
    if extra[0] == "--seed-midi":
        g_seed(tmp_path / "seed.mid")
        assert sha(tmp_path / "seed.mid") == "b42af1185f60d4f5b272ea104f0527ea9308b5f05e8eba9a90287eb0a262d4f3"
        extra = ("--seed-midi", str(tmp_path / "seed.mid"))
    out = tmp_path / "out.mid"
    assert main(["generate", "--model", "lstm", "--bars", "4", "--random-seed", "7", *extra, "--out", str(out)]) == 0
    assert sha(out) == MAIN_OUTPUTS[(extra[0], "G" if extra[0] == "--seed-midi" else extra[1])]


@pytest.mark.parametrize(("transpose", "moved"), [("all-keys", 0), ("c", -5)])
def test_generate_answers_a_g_phrase_in_g_with_an_all_keys_model(tmp_path, transpose, moved):
    g_seed(tmp_path / "seed.mid")
    model = oracle(tmp_path, transpose)
    out = tmp_path / "out.mid"
    assert main(["generate", "--model", str(model), "--bars", "1", "--temperature", "0", "--seed-midi",
                 str(tmp_path / "seed.mid"), "--out", str(out)]) == 0
    notes = read_midi_file(out, lambda ch: True).notes
    seed = [n for n in notes if n.start < 48]
    assert [n.pitch for n in seed] == [62, 67, 69, 71, 67, 74, 71, 67]  # the phrase, as played
    # the bar after the 3-bar seed: 60 + each step's bar position, moved from C/Am only for a "c" model
    assert [(n.start, n.pitch) for n in notes if n.start >= 48] == [(48 + i, 60 + i + moved) for i in range(16)]


# -- jamd eval -------------------------------------------------------------------

def test_eval_scores_each_tune_on_its_own_bar_grid(tmp_path):
    from jamd.training.evaluation.nll import held_out_nll

    gen, _ = recording_generator(oracle(tmp_path))
    tune = [str(60 + (2 + k) % 12) for k in range(30)]  # 3/4 after a 10-step pickup: positions 2, 3, ...
    on_grid = held_out_nll(gen, [tune], grids=[(2, 12)])
    off_grid = held_out_nll(gen, [tune], grids=[(0, 16)])
    assert on_grid.per_token < 1e-6 < 19.0 < off_grid.per_token  # each miss costs ~20 nats


def test_eval_generates_from_a_4_4_downbeat(tmp_path):
    from jamd.training.evaluation.models import StepSource

    gen, _ = recording_generator(oracle(tmp_path))
    gen.reset(5, 12)  # whatever grid the model was left on
    melodies = StepSource("oracle", gen).generate([20, 20], 0.0, np.random.default_rng(0))
    assert [[n.pitch for n in m.notes] for m in melodies] == [[60 + k % 16 for k in range(20)]] * 2


# -- metadata ----------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"metric_position": "yes"}, "metric_position is 'yes'; it must be true or false"),
    ({"positions": None}, "a model with metric_position needs 'positions'"),
    ({"transpose": "g"}, "transpose is 'g'; it must be one of c, all-keys"),
    ({"layers": 0}, "layers is 0; it must be an integer 1-64"),
])
def test_bad_issue_16_metadata_is_refused_in_one_line(tmp_path, change, message):
    from jamd.errors import ModelError

    path = oracle(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.update(change)
    meta = {k: v for k, v in meta.items() if v is not None}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=message.replace("(", r"\(")) as err:
        load_info(path)
    assert "\n" not in str(err.value)


def test_a_model_whose_inputs_disagree_with_its_metadata_is_refused(tmp_path):
    from jamd.errors import ModelError

    path = oracle(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["metric_position"] = False
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not an LSTM step model .*inputs \\['token', 'position', 'h', 'c'\\]"):
        LstmGenerator.load(str(path))
