"""Issue 13, a fresh user's bad input, by kind: paths jamd writes and reads, numeric and empty options,
numbers YAML reads as strings, port names, model lists, run folders.  Each costs one "jamd: " line and an
exit code, never a traceback, and nothing is left behind."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cli_checks import assert_one_line, run_cli

from jamd.cli import main

# -- paths jamd writes --------------------------------------------------------------------------

def _bad_file_targets(tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    return [(folder, "is a folder"), (blocker / "sub" / "o.out", "is a file, not a folder"),
            ("/dev/null", "not a regular file")]


# every command that writes a file, with the options that lead there cheaply
FILE_WRITERS = [
    ("generate", ["generate", "--model", "lstm", "--bars", "1", "--out"]),
    ("corpus", ["corpus", "--out"]),
    ("bench", ["bench", "--suite", "realtime", "--quick", "--out"]),
]


@pytest.mark.parametrize(("name", "argv"), FILE_WRITERS, ids=[n for n, _ in FILE_WRITERS])
def test_an_output_file_that_cannot_be_written_is_one_line_before_any_work(capsys, tmp_path, name, argv):
    for target, why in _bad_file_targets(tmp_path):
        code, _, err = run_cli(capsys, *argv, target)
        assert code == 2, (target, err)
        assert_one_line(err, "--out", why)


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "lstm", "--out"], ["corpus", "--out"], ["eval", "--out"],
    ["train", "--out"], ["train", "--export"], ["export", "runs/x", "--out"], ["bench", "--out"],
    ["generate", "--out", "o.mid", "--model"], ["run", "--model"], ["corpus", "--source"],
    ["eval", "--reference"], ["eval", "--generated"], ["generate", "--out", "o.mid", "--seed-midi"],
    ["generate", "--out", "o.mid", "--config"], ["run", "--config"],
], ids=lambda a: " ".join(a))
@pytest.mark.parametrize("empty", ["", "  "])
def test_every_empty_path_or_name_option_is_refused(capsys, tmp_path, argv, empty, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *argv, empty)
    assert code == 2, err
    assert_one_line(err, argv[-1], "must not be empty")


def test_generate_writes_where_the_user_said_creating_folders_but_not_through_a_file(capsys, tmp_path,
                                                                                     shipped_lstm):
    out = tmp_path / "new" / "deeper" / "o.mid"
    code, _, err = run_cli(capsys, "generate", "--model", "lstm", "--bars", "1", "--random-seed", "1", "--out", out)
    assert code == 0, err
    assert out.is_file()


def test_corpus_creates_the_report_folder_like_generate(capsys, tmp_path):
    src = tmp_path / "tunes"
    src.mkdir()
    (src / "a.abc").write_text("X:1\nT:a\nM:4/4\nL:1/8\nK:C\nCDEF GABc|cBAG FEDC|]\n")
    out = tmp_path / "not" / "yet" / "report.json"
    code, _, err = run_cli(capsys, "corpus", "--source", src, "--no-cache", "--no-progress", "--workers", "1",
                           "--out", out)
    assert code == 0, err
    assert out.is_file() and '"files"' in out.read_text()


def test_corpus_source_folder_given_as_out_is_refused_before_the_parse(capsys, tmp_path, monkeypatch):
    import jamd.training.corpus as corpus

    monkeypatch.setattr(corpus, "load_corpus", lambda *a, **k: pytest.fail("parsed before checking --out"))
    code, _, err = run_cli(capsys, "corpus", "--source", tmp_path, "--out", tmp_path)
    assert code == 2
    assert_one_line(err, str(tmp_path), "is a folder")


def test_a_write_that_fails_after_the_checks_is_one_line(capsys, tmp_path):
    from jamd.commands.paths import writing
    from jamd.errors import UsageError

    with pytest.raises(UsageError, match=r"--out '/x/o.mid': cannot write \(Input/output error\)"):
        with writing("/x/o.mid", "--out"):
            raise OSError(5, "Input/output error", "/x/o.mid")


@pytest.mark.skipif(not os.path.exists("/proc/version"), reason="needs Linux /proc")
def test_generate_into_proc_is_one_line(capsys, shipped_lstm):
    code, _, err = run_cli(capsys, "generate", "--model", "lstm", "--bars", "1", "--out", "/proc/version")
    assert code == 2
    assert_one_line(err, "--out '/proc/version'")


@pytest.mark.parametrize("argv", [["eval", "--no-baseline", "--n", "2", "--out"],
                                  ["train", "--model", "lstm", "--out"]])
def test_a_file_where_an_output_folder_goes_is_refused_before_the_work(capsys, tmp_path, argv, monkeypatch):
    import jamd.commands.train as train

    monkeypatch.setattr(train, "require_training_extra", lambda: None)
    target = tmp_path / "existing"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, *argv, target)
    assert code == 2
    assert_one_line(err, "--out", "is a file, not a folder")
    assert target.read_text() == "keep me"


def test_train_export_into_a_folder_is_refused_before_training(capsys, tmp_path, monkeypatch):
    import jamd.commands.train as train

    monkeypatch.setattr(train, "require_training_extra", lambda: None)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--export", tmp_path)
    assert code == 2
    assert_one_line(err, "--export", "is a folder")


# -- paths jamd reads whole ---------------------------------------------------------------------

@pytest.mark.parametrize("special", ["/dev/urandom", "fifo"])
@pytest.mark.parametrize("option", ["--config", "--seed-midi", "--model"])
def test_a_device_or_fifo_given_to_read_is_refused_not_read_forever(capsys, tmp_path, special, option):
    if special == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        special = tmp_path / "pipe.onnx"
        os.mkfifo(special)
    elif not os.path.exists(special):
        pytest.skip("no /dev/urandom")
    extra = ["--model", "lstm"] if option != "--model" else []
    code, _, err = run_cli(capsys, "generate", *extra, option, special, "--out", tmp_path / "o.mid")
    assert code in (2, 3, 4), err
    assert_one_line(err, str(special))
    assert not (tmp_path / "o.mid").exists()


def test_a_config_file_over_one_mebibyte_is_refused(capsys, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 120_000)
    code, _, err = run_cli(capsys, "generate", "--config", big, "--out", tmp_path / "o.mid")
    assert code == 2
    assert_one_line(err, str(big), "1 MiB")


# -- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("duration", ["-1", "nan", "inf", "-inf"])
def test_run_refuses_a_duration_that_is_not_a_time(capsys, duration):
    code, _, err = run_cli(capsys, "run", f"--duration={duration}")
    assert code == 2
    assert_one_line(err, "--duration")


def test_run_help_says_what_duration_zero_means(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "0 (the default): run until SIGINT/SIGTERM" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv", [
    ["generate", "--bars", "0"], ["generate", "--bars", "100000"], ["generate", "--bpm", "1e9"],
    ["generate", "--bpm", "nan"], ["generate", "--temperature", "-1"], ["generate", "--temperature", "nan"],
    ["generate", "--random-seed", "-1"], ["run", "--bpm", "0"], ["run", "--count-in", "-1"],
    ["run", "--count-in", "99"], ["train", "--epochs", "0"], ["train", "--model", "gan", "--steps", "0"],
    ["eval", "--n", "1"], ["eval", "--bars", "0"], ["eval", "--temperature", "nan"],
    ["corpus", "--show", "-1"], ["corpus", "--part", "-1"], ["corpus", "--workers", "-2"],
    ["bench", "--steps", "0"], ["bench", "--events", "-5"],
], ids=lambda a: " ".join(a))
def test_each_out_of_range_number_is_one_line_naming_its_option(capsys, tmp_path, argv, monkeypatch):
    import jamd.commands.train as train

    monkeypatch.setattr(train, "require_training_extra", lambda: None)
    out = ["--out", tmp_path / "o.mid"] if argv[0] == "generate" else []
    code, _, err = run_cli(capsys, *argv, *out)
    assert code == 2, err
    assert_one_line(err, argv[-2])
    assert "override" not in err


@pytest.mark.parametrize(("text", "shown"), [("1e9", "between 20 and 300"), ("1E3", "between 20 and 300")])
def test_a_float_written_as_yaml_1_1_reads_it_is_range_checked_not_called_a_string(capsys, tmp_path, text,
                                                                                   shown):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"clock:\n  bpm: {text}\n")
    for argv in (["--config", cfg], ["--set", f"clock.bpm={text}"]):
        code, _, err = run_cli(capsys, "generate", *argv, "--out", tmp_path / "o.mid")
        assert code == 2
        assert_one_line(err, "clock.bpm", shown)


# -- names and lists in the config --------------------------------------------------------------

@pytest.mark.parametrize("key", ["midi.client_name", "midi.output_port", "midi.input_port", "clock.port"])
def test_a_colon_in_a_port_name_is_refused(capsys, tmp_path, key):
    code, _, err = run_cli(capsys, "generate", "--set", f"{key}=jamd:x", "--out", tmp_path / "o.mid")
    assert code == 2
    assert_one_line(err, key, "':'")


def test_connect_names_keep_their_colon(capsys, tmp_path):
    from jamd.config import load

    assert load(None, ["midi.connect_output=synth:in 1"]).midi.connect_output == "synth:in 1"


@pytest.mark.parametrize("key", ["corpus.source", "training.out_dir", "gan.out_dir"])
def test_empty_config_names_are_refused(capsys, tmp_path, key):
    code, _, err = run_cli(capsys, "corpus", "--set", f"{key}=", "--out", tmp_path / "o.json")
    assert code == 2
    assert_one_line(err, key, "empty")


@pytest.mark.parametrize("command", ["generate", "corpus", "eval", "bench", "ports"])
def test_every_command_refuses_an_unknown_model_in_model_models(capsys, tmp_path, command):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  models: [lstm, nosuchmodel]\n")
    extra = ["--out", tmp_path / "o.mid"] if command == "generate" else []
    code, _, err = run_cli(capsys, command, "--config", cfg, *extra)
    assert code == 2
    assert_one_line(err, "model.models", "'nosuchmodel'")


def test_a_sighup_reload_with_a_bad_model_list_is_refused_by_run_s_own_check(tmp_path):
    import argparse

    from jamd.commands import run
    from jamd.errors import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  models: [lstm, nosuchmodel]\n")
    args = argparse.Namespace(config=str(cfg), overrides=[], mode=None, model=None, bpm=None, api=None,
                              count_in=None, metronome=None, clock=None)
    with pytest.raises(ConfigError, match="nosuchmodel"):
        run.load_config(args)
    cfg.write_text("model:\n  models: [lstm]\n")
    assert run.load_config(args).model.models == ("lstm",)


def test_following_a_clock_warns_once_that_clock_port_is_unused(caplog):
    from jamd.commands.run import warn_unused
    from jamd.config import load

    with caplog.at_level(logging.WARNING, logger="jamd.run"):
        warn_unused(load(None, ["clock.source=midi", "clock.port=jamd clock"]))
        warn_unused(load(None, ["clock.send=true", "clock.port=jamd clock"]))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "clock.port 'jamd clock' is unused" in lines[0] and "following" in lines[0]


# -- run folders: the modes of written files, stale temp files ------------------------------------

def test_atomic_writes_get_the_normal_mode_not_0600(tmp_path):
    from jamd.training.checkpoints import atomic_save, atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        atomic_save(tmp_path / "m.onnx", lambda p: p.write_bytes(b"x"))
        os.umask(0o027)
        atomic_write(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m.onnx").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o640


def test_stale_temp_files_of_jamd_s_naming_are_removed_and_others_kept(tmp_path, caplog):
    import tempfile

    from jamd.training.checkpoints import clean_stale_temps

    stale = []
    for stem, suffix in (("state", ".json"), ("last", ".keras"), ("lstm", ".onnx"), ("loss", ".png")):
        fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=tmp_path)
        os.close(fd)
        stale.append(name)
    kept = [tmp_path / n for n in ("state.json", ".hidden", "notes.tmp", ".x.tmp.json", "a.abcdefgh.tmp.json")]
    for p in kept:
        p.write_text("keep")
    with caplog.at_level(logging.DEBUG, logger="jamd.training.checkpoints"):
        removed = clean_stale_temps(tmp_path)
    assert sorted(map(str, removed)) == sorted(stale)
    assert all(p.exists() for p in kept)
    assert sum("stale temp file" in r.getMessage() for r in caplog.records) == len(stale)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_device_as_the_model_s_sidecar_is_refused_not_read_forever(capsys, tmp_path, shipped_lstm):
    model = tmp_path / "m.onnx"
    model.write_bytes(shipped_lstm.read_bytes())
    os.mkfifo(tmp_path / "m.json")
    code, _, err = run_cli(capsys, "generate", "--model", model, "--out", tmp_path / "o.mid")
    assert code == 3
    assert_one_line(err, "m.json", "not a regular file")


@pytest.mark.train
@pytest.mark.parametrize("progress", [False, True])
def test_train_prints_no_keras_epoch_lines_and_writes_files_others_can_read(capsys, tmp_path, progress):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from corpora import erk5_folder

    overrides = [*erk5_folder(tmp_path), "corpus.workers=1", "training.units=8", "training.batch_size=8",
                 "training.max_steps_per_epoch=2", "training.sequence_length=16", "corpus.validation_fraction=0.2"]
    run, model = tmp_path / "run", tmp_path / "out" / "tiny.onnx"
    run.mkdir()
    stale = run / ".state.abcd1234.tmp.json"  # what a run killed mid-write leaves
    stale.write_text("{")
    old = os.umask(0o022)
    try:
        code = main(["train", "--epochs", "2", "--out", str(run), "--export", str(model),
                     *([] if progress else ["--no-progress"]), *[a for o in overrides for a in ("--set", o)]])
    finally:
        os.umask(old)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "Epoch " not in out.out + out.err  # Keras's own count contradicts jamd's "epoch 2/2"
    assert not stale.exists()
    for p in (model, model.with_suffix(".json"), run / "state.json", run / "best.keras"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
