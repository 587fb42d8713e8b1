"""A broken model costs one line and exit 3, never a traceback or wrong notes.

Every field jamd reads from a model's metadata (the ``.json`` sidecar, or the
copy embedded in the ONNX file) is broken in each way it can be: missing, of
the wrong type, out of range, of the wrong length; and the model file itself
is empty, truncated, garbage or a directory.  A sidecar that disagrees with
the ONNX file's own copy (a vocabulary shifted by an octave, which would play
every note 12 semitones off with exit 0) is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jamd.cli import main
from jamd.errors import ModelError
from jamd.inference import model_store
from jamd.inference.model_store import shipped_models_dir

MODELS = {"lstm": "lstm-step", "gan": "gan-bar", "cgan": "cgan-bar"}


def copy_model(tmp_path: Path, name: str, sidecar: object = None, keep_embedded: bool = True) -> Path:
    """models/NAME.onnx copied into tmp_path; `sidecar` (a dict, or bytes) replaces its .json,
    and without `keep_embedded` the ONNX file's own metadata copy is stripped."""
    src = shipped_models_dir() / f"{name}.onnx"
    dst = tmp_path / f"{name}.onnx"
    if keep_embedded:
        shutil.copyfile(src, dst)
    else:
        onnx = pytest.importorskip("onnx")
        proto = onnx.load(str(src))
        del proto.metadata_props[:]
        onnx.save(proto, str(dst))
    meta = json.loads(src.with_suffix(".json").read_text())
    if sidecar is None:
        sidecar = meta
    data = sidecar if isinstance(sidecar, bytes) else json.dumps(sidecar).encode()
    dst.with_suffix(".json").write_bytes(data)
    return dst


def shipped_meta(name: str) -> dict:
    return json.loads((shipped_models_dir() / f"{name}.json").read_text())


def generate(capsys, tmp_path: Path, model: Path) -> tuple[int, str]:
    code = main(["generate", "--model", str(model), "--bars", "1", "--out", str(tmp_path / "out.mid")])
    return code, capsys.readouterr().err


def assert_model_error(capsys, tmp_path: Path, model: Path, *fragments: str) -> str:
    code, err = generate(capsys, tmp_path, model)
    lines = [line for line in err.splitlines() if line.startswith("jamd: ")]
    assert code == 3, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert len(lines[0].replace(str(tmp_path), "")) < 300, lines[0]  # a bad value is quoted short
    return lines[0]


def _without(meta: dict, key: str) -> dict:
    return {k: v for k, v in meta.items() if k != key}


def _with(meta: dict, key: str, value: object) -> dict:
    return {**meta, key: value}


def _vocab_cases(vocab: list[str]) -> list[tuple[str, object, str]]:
    pitches = [s for s in vocab if s.isdigit()]
    return [
        ("not a list", "/ r _ 60 62", "vocabulary must be a list"),
        ("a number in it", [*vocab[:-1], 60], "vocabulary must be a list"),
        ("an unknown symbol", [*vocab[:-1], "x"], "'x'"),
        ("a pitch out of range", [*vocab[:-1], "128"], "'128'"),
        ("a zero-padded pitch", [*vocab[:-1], "072"], "'072'"),
        ("a negative pitch", [*vocab[:-1], "-1"], "'-1'"),
        ("no delimiter", [s for s in vocab if s != "/"], "delimiter"),
        ("no rest", [s for s in vocab if s != "r"], "rest"),
        ("no hold", [s for s in vocab if s != "_"], "hold"),
        ("no pitches", ["/", "r", "_"], "no pitches"),
        ("a duplicate", [*vocab[:-1], pitches[0]], "duplicate"),
        ("empty", [], "vocabulary lacks"),
        ("a dict", {"a": 1}, "vocabulary must be a list"),
    ]


@pytest.mark.parametrize("name", MODELS)
def test_the_shipped_models_pass_their_checks(name):
    info = model_store.load_info(shipped_models_dir() / f"{name}.onnx")
    assert info.kind == MODELS[name] and info.raw == shipped_meta(name)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("case", range(13))
def test_a_broken_vocabulary_is_one_line(capsys, tmp_path, name, case):
    meta = shipped_meta(name)
    what, value, fragment = _vocab_cases(meta["vocabulary"])[case]
    model = copy_model(tmp_path, name, _with(meta, "vocabulary", value))
    assert_model_error(capsys, tmp_path, model, str(model.with_suffix(".json")), fragment)


@pytest.mark.parametrize("name", MODELS)
def test_a_missing_vocabulary_or_kind_is_one_line(capsys, tmp_path, name):
    for key in ("vocabulary", "kind"):
        model = copy_model(tmp_path, name, _without(shipped_meta(name), key))
        assert_model_error(capsys, tmp_path, model, f"'{key}'")


KIND_CASES = [(3, "3"), (None, "None"), ("transformer", "'transformer'"), (["lstm-step"], "['lstm-step']"),
              ("LSTM-STEP", "'LSTM-STEP'")]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("value, quoted", KIND_CASES)
def test_a_bad_kind_is_one_line(capsys, tmp_path, name, value, quoted):
    model = copy_model(tmp_path, name, _with(shipped_meta(name), "kind", value))
    assert_model_error(capsys, tmp_path, model, "kind", quoted)


# field, kinds it belongs to, bad values (wrong type, out of range)
INT_FIELDS = {
    "units": (["lstm"], ["256", 256.0, True, 0, -3, 10**9, None, [256]]),
    "start_symbols": (["lstm"], ["64", 0, -1, 1.5, 10**6]),
    "steps_per_bar": (["gan", "cgan"], ["16", 16.5, False, 0, -16, 10**5, None]),
    "latent_dim": (["gan", "cgan"], ["100", 0, -1, 100.5, 10**7]),
}


@pytest.mark.parametrize("field", INT_FIELDS)
def test_a_bad_integer_field_is_one_line(capsys, tmp_path, field):
    names, bad = INT_FIELDS[field]
    for name in names:
        for value in bad:
            model = copy_model(tmp_path, name, _with(shipped_meta(name), field, value))
            line = assert_model_error(capsys, tmp_path, model, field)
            assert "integer" in line, line
        if field != "start_symbols":  # optional: the default 64
            model = copy_model(tmp_path, name, _without(shipped_meta(name), field))
            assert_model_error(capsys, tmp_path, model, f"'{field}'", "needs")


@pytest.mark.parametrize("name", MODELS)
def test_a_bad_step_length_is_one_line(capsys, tmp_path, name):
    for value in (0, -0.25, "0.25", 100, None, True):
        model = copy_model(tmp_path, name, _with(shipped_meta(name), "step_quarter_length", value))
        assert_model_error(capsys, tmp_path, model, "step_quarter_length")


@pytest.mark.parametrize("data, fragment", [(b"[1, 2]", "JSON object"), (b"{not json", "not valid JSON"),
                                            (b"", "not valid JSON"), (b'{"kind": "lstm-\xff"}', "UTF-8"),
                                            (b"null", "JSON object"), (b'"lstm-step"', "JSON object")])
def test_a_sidecar_that_is_no_json_object_is_one_line(capsys, tmp_path, data, fragment):
    model = copy_model(tmp_path, "lstm", data)
    assert_model_error(capsys, tmp_path, model, str(model.with_suffix(".json")), fragment)


@pytest.mark.parametrize("name", MODELS)
def test_a_sidecar_that_disagrees_with_the_embedded_metadata_is_refused(capsys, tmp_path, name):
    meta = shipped_meta(name)
    # the vocabulary an octave up: the same length and shape, every note 12 semitones off
    shifted = [str(int(s) + 12) if s.isdigit() else s for s in meta["vocabulary"]]
    model = copy_model(tmp_path, name, _with(meta, "vocabulary", shifted))
    first = next(i for i, s in enumerate(meta["vocabulary"]) if s.isdigit())
    assert_model_error(capsys, tmp_path, model, f"vocabulary[{first}] is '{shifted[first]}' here but "
                       f"'{meta['vocabulary'][first]}' in the metadata embedded in {model.name}")
    # a valid value of another model: kind, or a size that the checks alone allow
    other = {"lstm": ("units", 128), "gan": ("steps_per_bar", 12), "cgan": ("latent_dim", 64)}[name]
    model = copy_model(tmp_path, name, _with(meta, *other))
    assert_model_error(capsys, tmp_path, model, f"{other[0]} is {other[1]} here but {meta[other[0]]} in the metadata")
    swapped = {"lstm": "lstm-step", "gan": "cgan-bar", "cgan": "gan-bar"}[name]
    if swapped != meta["kind"]:
        model = copy_model(tmp_path, name, _with(meta, "kind", swapped))
        assert_model_error(capsys, tmp_path, model, f"kind is '{swapped}' here but '{meta['kind']}'")


def test_a_sidecar_may_change_how_a_model_plays(capsys, tmp_path):
    """`selection` and the descriptive fields are the user's to edit (docs/MODELS.md)."""
    meta = {**shipped_meta("gan"), "selection": {"candidates": 1}, "corpus": "mine"}
    model = copy_model(tmp_path, "gan", meta)
    code, err = generate(capsys, tmp_path, model)
    assert code == 0, err
    assert model_store.load_info(model).raw["selection"] == {"candidates": 1}


@pytest.mark.parametrize("name", MODELS)
def test_without_embedded_metadata_the_graph_shapes_are_checked(capsys, tmp_path, name):
    """An older export carries its metadata in the sidecar only: then the graph's shapes
    are what catches a sidecar of another model (a vocabulary one symbol short, a size)."""
    meta = shipped_meta(name)
    model = copy_model(tmp_path, name, meta, keep_embedded=False)
    code, err = generate(capsys, tmp_path, model)
    assert code == 0, err
    short = [s for s in meta["vocabulary"] if s != meta["vocabulary"][-1]]
    copy_model(tmp_path, name, _with(meta, "vocabulary", short), keep_embedded=False)
    assert_model_error(capsys, tmp_path, model, "do not match its metadata")
    field, value = {"lstm": ("units", 128), "gan": ("steps_per_bar", 12), "cgan": ("latent_dim", 64)}[name]
    copy_model(tmp_path, name, _with(meta, field, value), keep_embedded=False)
    assert_model_error(capsys, tmp_path, model, "do not match its metadata")


def test_no_metadata_anywhere_is_one_line(capsys, tmp_path):
    model = copy_model(tmp_path, "lstm", keep_embedded=False)
    model.with_suffix(".json").unlink()
    assert_model_error(capsys, tmp_path, model, "no jamd metadata")


def test_the_embedded_metadata_alone_is_checked_too(capsys, tmp_path):
    """Without a sidecar the ONNX file's copy is used, and checked like one."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(shipped_models_dir() / "lstm.onnx"))
    meta = _with(shipped_meta("lstm"), "units", "many")
    proto.metadata_props[0].value = json.dumps(meta)
    model = tmp_path / "lstm.onnx"
    onnx.save(proto, str(model))
    assert_model_error(capsys, tmp_path, model, str(model), "units")
    proto.metadata_props[0].value = "{not json"
    onnx.save(proto, str(model))
    assert_model_error(capsys, tmp_path, model, "embedded", "not valid JSON")


# -- the model file itself -------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.3, 0.5, 0.9, 0.999])
def test_a_truncated_model_is_one_line(capsys, tmp_path, name, fraction):
    model = copy_model(tmp_path, name)
    data = model.read_bytes()
    model.write_bytes(data[: max(1, int(len(data) * fraction))])
    assert_model_error(capsys, tmp_path, model, str(model))


def test_an_empty_garbage_or_directory_model_is_one_line(capsys, tmp_path):
    model = copy_model(tmp_path, "lstm")
    model.write_bytes(b"")
    assert_model_error(capsys, tmp_path, model, str(model), "empty")
    model.write_bytes(bytes(range(256)) * 64)
    assert_model_error(capsys, tmp_path, model, str(model), "not a readable ONNX file")
    model.write_text("this is text, not a model\n")
    assert_model_error(capsys, tmp_path, model, str(model))
    model.unlink()
    model.mkdir()
    assert_model_error(capsys, tmp_path, model, str(model), "directory")


def test_a_sidecar_that_is_a_directory_is_one_line(capsys, tmp_path):
    model = copy_model(tmp_path, "lstm")
    model.with_suffix(".json").unlink()
    model.with_suffix(".json").mkdir()
    assert_model_error(capsys, tmp_path, model, "directory")


def test_load_info_raises_model_error_only(tmp_path):
    """The library call behind every command: a ModelError, whatever the fault."""
    model = copy_model(tmp_path, "cgan", _with(shipped_meta("cgan"), "steps_per_bar", "16"))
    with pytest.raises(ModelError, match="steps_per_bar"):
        model_store.load_info(model)


# -- the config file --------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"model:\n  name: l\xe9stm\n", b"\xff\xfe" + "model: {}\n".encode("utf-16-le"),
                                  b"clock:\n  bpm: 120\n# caf\xc3\n"])
def test_a_config_that_is_not_utf8_is_one_line(capsys, tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    code = main(["generate", "--config", str(path), "--out", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("jamd: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and "UTF-8" in lines[0]


@pytest.mark.parametrize("name", ["gan", "cgan"])
def test_bar_repeat_on_a_per_bar_model_is_refused_in_one_line(capsys, tmp_path, name):
    """A per-bar GAN has no bar repetition: a bar_repeat in its sidecar, well formed or not, is refused."""
    for value in ({"chance": "x"}, {"chance": 0.2}):
        model = copy_model(tmp_path, name, _with(shipped_meta(name), "bar_repeat", value))
        line = assert_model_error(capsys, tmp_path, model)
        assert line == (f"jamd: {model.with_suffix('.json')}: bar_repeat is for lstm-step models only; a "
                        f"{MODELS[name]} model chooses its bars with 'selection' (delete bar_repeat)")


@pytest.mark.parametrize("name", ["lstm", "gan"])
def test_a_bad_selection_is_refused_for_every_kind(capsys, tmp_path, name):
    model = copy_model(tmp_path, name, _with(shipped_meta(name), "selection", {"candidates": "x"}))
    line = assert_model_error(capsys, tmp_path, model)
    assert line == (f"jamd: {model.with_suffix('.json')}: bad selection in model metadata "
                    "(selection.candidates must be an integer from 1 to 1024 (received x))")
    model = copy_model(tmp_path, name, _with(shipped_meta(name), "selection", {"candidatez": 2}))
    assert "selection: unknown key 'candidatez'" in assert_model_error(capsys, tmp_path, model)


def test_model_bar_repeat_on_a_gan_is_said_once(capsys, tmp_path, caplog, monkeypatch):
    import logging

    from jamd.config import ModelConfig
    from jamd.inference import bar_source
    from jamd.inference.gan import BarGenerator

    monkeypatch.setattr(bar_source, "_bar_repeat_told", False)
    with caplog.at_level(logging.INFO, logger="jamd.inference.bar_source"):
        BarGenerator.load("gan", ModelConfig())  # not set: nothing said
        for _ in range(2):
            bar_source.open_bar_source("cgan", ModelConfig(bar_repeat=0.5))
    said = [r.getMessage() for r in caplog.records if r.name == "jamd.inference.bar_source"]
    assert said == [
        "model.bar_repeat 0.5 applies to LSTM models only; cgan chooses its bars by its selection"]
