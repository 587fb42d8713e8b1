"""The command line: --help teaches, and user mistakes cost one line and an exit code."""

from __future__ import annotations

import pytest
from cli_checks import assert_one_line, run_cli

from jamd.cli import COMMANDS, build_parser


def test_help_has_an_example_per_command(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for name in ("generate", "train", "export", "bench"):
        assert name in COMMANDS
        assert f"  jamd {name} " in text, name


def test_missing_model(capsys, tmp_path):
    missing = tmp_path / "nope.onnx"
    code, _, err = run_cli(capsys, "generate", "--model", str(missing), "--out", str(tmp_path / "x.mid"))
    assert code == 3
    assert_one_line(err, str(missing), "not found")


def test_unknown_model_name(capsys, tmp_path):
    code, _, err = run_cli(capsys, "generate", "--model", "banjo", "--out", str(tmp_path / "x.mid"))
    assert code == 3
    assert_one_line(err, "'banjo'", "lstm")


def test_corrupt_model(capsys, tmp_path, shipped_lstm):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    bad.with_suffix(".json").write_text(shipped_lstm.with_suffix(".json").read_text())
    code, _, err = run_cli(capsys, "generate", "--model", str(bad), "--out", str(tmp_path / "x.mid"))
    assert code == 3
    assert_one_line(err, str(bad))


def test_corrupt_metadata(capsys, tmp_path, shipped_lstm):
    bad = tmp_path / "m.onnx"
    bad.write_bytes(shipped_lstm.read_bytes())
    bad.with_suffix(".json").write_text("{not json")
    code, _, err = run_cli(capsys, "generate", "--model", str(bad), "--out", str(tmp_path / "x.mid"))
    assert code == 3
    assert_one_line(err, "m.json", "not valid JSON")


def test_bad_seed_token(capsys, tmp_path, shipped_lstm):
    code, _, err = run_cli(capsys, "generate", "--seed", "67 x _", "--out", str(tmp_path / "x.mid"))
    assert code == 2
    assert_one_line(err, "'x'", "position 2", "'r' (rest)", "'_' (hold)")
    assert not (tmp_path / "x.mid").exists()


def test_bad_config_value(capsys, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("clock:\n  bpm: 1000\n")
    code, _, err = run_cli(capsys, "generate", "--config", str(cfg), "--out", str(tmp_path / "x.mid"))
    assert code == 2
    assert_one_line(err, f"{cfg}: clock.bpm must be between 20 and 300 (received 1000)")


def test_bad_override(capsys, tmp_path):
    code, _, err = run_cli(capsys, "generate", "--set", "output.channel=17", "--out", str(tmp_path / "x.mid"))
    assert code == 2
    assert_one_line(err, "output.channel must be between 1 and 16 (received 17)")


def test_bad_option_value(capsys, tmp_path):
    code, _, err = run_cli(capsys, "generate", "--bpm", "5", "--out", str(tmp_path / "x.mid"))
    assert code == 2
    assert_one_line(err, "--bpm must be between 20 and 300", "(received 5)")  # the option typed, not its key


def test_unreadable_seed_midi(capsys, tmp_path, shipped_lstm):
    bad = tmp_path / "seed.mid"
    bad.write_bytes(b"MThd nonsense")
    code, _, err = run_cli(capsys, "generate", "--seed-midi", str(bad), "--out", str(tmp_path / "x.mid"))
    assert code == 4
    assert_one_line(err, str(bad))


def test_empty_seed_is_refused_not_replaced(capsys, tmp_path, shipped_lstm):
    code, _, err = run_cli(capsys, "generate", "--seed", "", "--out", str(tmp_path / "x.mid"))
    assert code == 2
    assert_one_line(err, "--seed must not be empty")
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize(("models", "shown"), [
    ("[lstm, banjo]", "'banjo'"), ("[]", "[]"), ("[/no/such/model.onnx]", "'/no/such/model.onnx'"),
    ("[" + "b" * 300 + "]", "'bbbb"),
])
def test_run_refuses_a_model_list_it_could_not_play_before_opening_anything(capsys, models, shown):
    code, _, err = run_cli(capsys, "run", "--set", f"model.models={models}")
    assert code == 2
    assert_one_line(err, "model.models", shown)
    assert "b" * 81 not in err


def test_run_refuses_a_name_jack_cannot_take_in_one_line(capsys):
    from jamd.midi import ports

    try:
        if ports.api_ids()["jack"] not in ports._rtmidi().get_compiled_api():
            pytest.skip("python-rtmidi without JACK")
    except Exception as exc:
        pytest.skip(f"python-rtmidi unusable: {exc}")
    code, _, err = run_cli(capsys, "run", "--api", "jack", "--set", "midi.client_name=" + "c" * 300)
    assert code == 2
    assert_one_line(err, "JACK: midi.client_name is 300 bytes long", "at most 57")
    assert "server" not in err and "c" * 81 not in err


@pytest.mark.parametrize(("api", "key", "size", "expected"), [
    ("jack", "client_name", 57, None), ("jack", "client_name", 58, "at most 57"),
    ("alsa", "client_name", 63, None), ("alsa", "client_name", 64, "at most 63"),
    ("alsa", "output_port", 64, "at most 63"), ("jack", "output_port", 244, None),
    ("jack", "input_port", 245, "at most 244"), ("coremidi", "client_name", 300, None),
])
def test_midi_name_limits(api, key, size, expected):
    from jamd.config import MidiConfig
    from jamd.midi.ports import name_problem

    problem = name_problem(api, MidiConfig(**{key: "é" * (size // 2) + "n" * (size % 2)}))
    assert problem is None if expected is None else expected in problem and f"midi.{key} is {size} bytes" in problem
