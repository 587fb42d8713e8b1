"""A model's embedded metadata, read from the ONNX protobuf without `onnx` or a second session
(issue 15 section 5: plain `jamd[cpu]` logged "runs on CPUExecutionProvider" twice)."""

from __future__ import annotations

import pytest
from cli_checks import run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from jamd.inference import onnx_meta
from jamd.inference.model_store import shipped_model_names, shipped_models_dir

onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("name", shipped_model_names())
def test_shipped_models_metadata_is_what_onnx_reads(name):
    path = shipped_models_dir() / f"{name}.onnx"
    expected = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "jamd" in expected
    assert onnx_meta.read_metadata_props(path) == expected


def test_several_entries_non_ascii_and_an_empty_value(tmp_path):
    proto = onnx.load(str(shipped_models_dir() / "lstm.onnx"))
    del proto.metadata_props[:]
    for key, value in (("jamd", '{"kind": "lstm-step"}'), ("author", "Ölçü ♪"), ("empty", "")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    assert onnx_meta.read_metadata_props(path) == {"jamd": '{"kind": "lstm-step"}', "author": "Ölçü ♪", "empty": ""}


def test_a_model_without_metadata_or_without_nodes(tmp_path):
    proto = onnx.load(str(shipped_models_dir() / "lstm.onnx"))
    del proto.metadata_props[:]
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    assert onnx_meta.read_metadata_props(path) == {}
    del proto.graph.node[:]
    onnx.save(proto, str(path))
    with pytest.raises(onnx_meta.NotOnnx, match="no graph"):
        onnx_meta.read_metadata_props(path)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**6))
def test_every_cut_of_a_model_is_refused_or_reads_a_prefix_of_its_metadata(cut):
    # A cut at a field boundary is a shorter, well-formed message; anywhere else it is refused.
    import tempfile
    from pathlib import Path

    data = (shipped_models_dir() / "lstm.onnx").read_bytes()
    full = onnx_meta.read_metadata_props(shipped_models_dir() / "lstm.onnx")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cut.onnx"
        path.write_bytes(data[: cut % len(data)])
        try:
            props = onnx_meta.read_metadata_props(path)
        except onnx_meta.NotOnnx:
            return
        assert all(full[k] == v for k, v in props.items())


def test_garbage_is_not_onnx(tmp_path):
    path = tmp_path / "g.onnx"
    for data in (bytes(range(256)) * 64, b"this is text, not a model\n", b"\x08"):
        path.write_bytes(data)
        with pytest.raises(onnx_meta.NotOnnx):
            onnx_meta.read_metadata_props(path)


def test_one_session_and_one_line_without_the_onnx_package():
    # plain jamd[cpu]: no onnx package; opening the model makes one session and logs it once
    out = run_python(
        "import logging, sys\n"
        "sys.modules['onnx'] = None  # as in plain jamd[cpu]\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        "import onnxruntime\n"
        "made = []\n"
        "real = onnxruntime.InferenceSession\n"
        "class Counting(real):\n"
        "    def __init__(self, *a, **k):\n"
        "        made.append(1)\n"
        "        super().__init__(*a, **k)\n"
        "onnxruntime.InferenceSession = Counting\n"
        "from jamd.config import Config\n"
        "from jamd.inference.bar_source import open_bar_source\n"
        "open_bar_source('lstm', Config().model)\n"
        "print('sessions', len(made))\n")
    lines = out.stdout.splitlines()
    assert sum("runs on CPUExecutionProvider" in line for line in lines) == 1, out.stdout
    assert "sessions 1" in lines, out.stdout
