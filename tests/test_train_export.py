"""A tiny training run on real Erk tunes proves the Keras -> ONNX path end to end.

CI does not retrain the shipped model; this trains a 16-unit LSTM for a few
steps on the 27 tunes of music21's erk5.abc, resumes it, exports it with the
parity check and generates from the export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from corpora import erk5_folder

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from jamd.cli import main  # noqa: E402
from jamd.errors import JamdError  # noqa: E402
from jamd.inference.lstm import LstmGenerator  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    overrides = [*erk5_folder(tmp), "corpus.workers=1",
                 "training.units=16", "training.batch_size=8", "training.max_steps_per_epoch=3",
                 "training.sequence_length=16", "corpus.validation_fraction=0.2"]
    sets = [a for o in overrides for a in ("--set", o)]
    return tmp, sets


def trained_run(tiny_run):
    """(tmp, sets, run folder): the module's run, trained for one epoch here if the first test did not run."""
    tmp, sets = tiny_run
    run_dir = tmp / "run"
    if not (run_dir / "best.keras").exists():
        assert main(["train", "--epochs", "1", "--out", str(run_dir), "--no-progress", *sets]) == 0
    return tmp, sets, run_dir


@pytest.mark.train
def test_train_resume_export_generate(tiny_run):
    tmp, sets = tiny_run
    run_dir, model = tmp / "run", tmp / "tiny.onnx"
    assert main(["train", "--epochs", "2", "--out", str(run_dir), "--export", str(model),
                 "--no-progress", *sets]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]["val_loss"]) == 2
    assert all(np.isfinite(state["history"]["loss"]))
    assert (run_dir / "loss.png").stat().st_size > 5000

    # run again with one more epoch: it resumes after epoch 2 instead of starting over
    assert main(["train", "--epochs", "3", "--out", str(run_dir), "--export", str(model),
                 "--no-progress", *sets]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]["loss"]) == 3

    import onnx

    proto = onnx.load(str(model))
    ops = {n.op_type for n in proto.graph.node}
    assert "LSTM" in ops and not ops & {"Loop", "Scan"}
    # tf2onnx's graph around the LSTM op is rebuilt lean: the token's and the metric position's
    # input columns gathered and added, the LSTM, a Gemm out
    lean = ["Gather", "Gather", "Add", "LSTM", "Reshape", "Gemm"]
    assert [n.op_type for n in proto.graph.node] == lean
    assert [i.name for i in proto.graph.input] == ["token", "position", "h", "c"]
    assert [o.name for o in proto.graph.output] == ["logits", "h_out", "c_out"]
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["export"]["parity_max_abs_diff"] <= 1e-4 and meta["export"]["parity_steps"] == 200
    assert "LSTM" in meta["export"]["tf2onnx_ops"] and meta["export"]["ops"] == lean
    assert meta["kind"] == "lstm-step" and meta["step_quarter_length"] == 0.25
    assert meta["corpus"]["stats"]["kept"] > 10
    assert meta["training"]["figures"]["epochs_run"] == 3
    embedded = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(embedded["jamd"])["vocabulary"] == meta["vocabulary"]

    gen = LstmGenerator.load(str(model))
    out = gen.generate(64, 1.0, np.random.default_rng(0))
    assert len(out) == 64 and set(out) <= set(gen.vocab.symbols) - {"/"}

    # exported again with bar repetition, and without --set: the run's own corpus (the erk5
    # folder it was trained on), not the configuration's erk
    repeating = tmp / "repeating.onnx"
    assert main(["export", str(run_dir), "--out", str(repeating),
                 "--bar-repeat", '{"chance": 0.2, "min_logp": -1.5}']) == 0
    meta = json.loads(repeating.with_suffix(".json").read_text())
    assert meta["bar_repeat"] == {"chance": 0.2, "min_logp": -1.5}
    assert meta["corpus"]["source"] != "erk" and meta["corpus"]["stats"]["kept"] > 10
    embedded = {p.key: p.value for p in onnx.load(str(repeating)).metadata_props}
    assert json.loads(embedded["jamd"])["bar_repeat"] == meta["bar_repeat"]
    assert LstmGenerator.load(str(repeating)).repeat.settings.chance == 0.2
    for bad in (["--bar-repeat", '{"chance": 2}'], ["--bar-repeat", "0.2"], ["--selection", '{"candidates": 2}']):
        wrong = tmp / "wrong.onnx"
        assert main(["export", str(run_dir), "--out", str(wrong), *bad]) == 2, bad
        assert not wrong.exists()


@pytest.mark.train
def test_export_fails_loudly_when_parity_breaks(tiny_run, monkeypatch):
    import jamd.export.lstm_onnx as lo

    tmp, sets, run_dir = trained_run(tiny_run)
    monkeypatch.setattr(lo, "parity", lambda *a, **k: 0.5)
    from jamd import config
    from jamd.export.export_run import export_run

    cfg = config.load(None, [s for s in sets if s != "--set"])
    target = tmp / "broken.onnx"
    with pytest.raises(JamdError, match=r"export parity failed: .* differ by 0.5 over 200 steps"):
        export_run(run_dir, target, cfg)
    assert not target.exists()


@pytest.mark.train
def test_lean_graph_steps_like_tf2onnx_graph(tiny_run):
    """The rebuilt graph gives what tf2onnx's own graph gives, step by step."""
    import keras
    import onnx
    import onnxruntime as ort

    import jamd.export.lstm_onnx as lo
    from jamd.training.lstm_model import OneHot, build_step_model

    tmp, sets = tiny_run
    # the seed's interface (one layer, no metric position) is the one rebuilt lean from tf2onnx's graph
    run_dir = tmp / "run-plain"
    assert main(["train", "--epochs", "1", "--out", str(run_dir), "--no-progress", *sets,
                 "--set", "training.metric_position=false"]) == 0
    model = keras.models.load_model(run_dir / "best.keras", custom_objects={"OneHot": OneHot})
    converted = lo.convert(build_step_model(model))
    lean = lo.lean_step_graph(converted)
    ref = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    ses = ort.InferenceSession(lean.SerializeToString(), providers=["CPUExecutionProvider"])
    units = model.get_layer("lstm").units
    h = c = np.zeros((1, units), np.float32)
    h2 = c2 = np.zeros((1, 1, units), np.float32)
    vocab_size = model.get_layer("output").units
    for t in np.random.default_rng(0).integers(0, vocab_size, 100):
        l1, h, c = ref.run(None, {"token": np.array([[t]], np.int32), "h": h, "c": c})
        l2, h2, c2 = ses.run(None, {"token": np.array([t], np.int32), "h": h2, "c": c2})
        np.testing.assert_allclose(l2, l1, atol=1e-5)
        np.testing.assert_allclose(h2[0], h, atol=1e-6)
        np.testing.assert_allclose(c2[0], c, atol=1e-6)
    onnx.checker.check_model(lean)


@pytest.mark.train
def test_export_without_the_runs_corpus_folder_uses_the_recorded_stats(tiny_run, capsys):
    import shutil

    tmp, sets, run_dir = trained_run(tiny_run)
    state = json.loads((run_dir / "state.json").read_text())
    tunes = tmp / "tunes"
    assert state["corpus"]["source"] == str(tunes) and state["corpus"]["stats"]["files"] == 1
    moved = tmp / "moved-away"
    shutil.move(tunes, moved)
    try:
        model = tmp / "no-corpus.onnx"
        capsys.readouterr()
        assert main(["export", str(run_dir), "--out", str(model)]) == 0
        meta = json.loads(model.with_suffix(".json").read_text())
        # what the run trained on, recorded in state.json, not what a folder holds at export time
        assert meta["corpus"]["source"] == str(tunes) and meta["corpus"]["stats"] == state["corpus"]["stats"]
        assert meta["export"]["parity_steps"] == 200 and meta["export"]["parity_max_abs_diff"] <= 1e-4
        said = warnings(capsys)
        assert len(said) == 1 and said[0].startswith(f"{run_dir}: the run's corpus {tunes} is not available (")
        assert said[0].endswith("; the parity check runs on symbols drawn from the run's vocabulary (seed 0)")
        # a corpus named on the command line is the fallback's parity corpus
        assert main(["export", str(run_dir), "--out", str(model), "--set", f"corpus.source={moved}",
                     "--set", f"corpus.cache_dir={tmp / 'cache'}"]) == 0
        said = warnings(capsys)
        assert len(said) == 1 and said[0].endswith(f"; the parity check runs on corpus.source {moved}")
        meta = json.loads(model.with_suffix(".json").read_text())
        assert meta["corpus"]["source"] == str(tunes) and meta["corpus"]["stats"] == state["corpus"]["stats"]
    finally:
        shutil.move(moved, tunes)


def warnings(capsys) -> list[str]:
    """The export's warning lines on stderr (jamd's own log handler writes them), without the prefix."""
    mark = "WARNING jamd.export.export_run: "
    return [line.split(mark, 1)[1] for line in capsys.readouterr().err.splitlines() if mark in line]
