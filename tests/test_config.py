"""config.yaml documents every key, and bad values are refused in one line."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from jamd import config as C
from jamd.errors import ConfigError


def test_config_yaml_lists_every_key_with_its_default(repo_root):
    data = yaml.safe_load((repo_root / "config.yaml").read_text())
    assert C.from_dict(data, "config.yaml") == C.Config()
    defaults = C.Config().to_dict()
    assert data.keys() == defaults.keys()
    for section, values in defaults.items():
        assert data[section].keys() == values.keys(), section


def test_every_key_has_a_comment(repo_root):
    lines = (repo_root / "config.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line.startswith("  ") and ":" in stripped and not stripped.startswith("#"):
            has_inline = "#" in line.split(":", 1)[1]
            above = lines[i - 1].strip()
            # a key is documented by a comment above it, inline, or as part of a commented group
            j = i - 1
            while j > 0 and lines[j].startswith("  ") and not lines[j].strip().startswith("#"):
                j -= 1
            assert has_inline or above.startswith("#") or lines[j].strip().startswith("#"), line


def test_round_trip():
    cfg = C.Config().replace(**{"clock.bpm": 96, "model.models": ["lstm", "gan"]})
    assert C.from_dict(cfg.to_dict()) == cfg
    assert cfg.model.models == ("lstm", "gan")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clock:\n  bpm: 1000\n", "config.yaml: clock.bpm must be between 20 and 300 (received 1000)"),
        ("clock:\n  bmp: 100\n", "config.yaml: unknown key clock.bmp"),
        ("colck:\n  bpm: 100\n", "config.yaml: unknown key colck"),
        ("clock:\n  bpm: fast\n", "config.yaml: clock.bpm must be a number (received 'fast')"),
        ("live:\n  mode: jazz\n", "config.yaml: live.mode must be one of continuous, call-response, accompany"),
        ("output:\n  channel: 0\n", "config.yaml: output.channel must be between 1 and 16 (received 0)"),
        ("output:\n  note_min: 90\n  note_max: 40\n", "config.yaml: output.note_min must not exceed"),
        ("clock: [1, 2]\n", "config.yaml: clock must be a mapping"),
        ("clock:\n  bpm: [\n", "config.yaml: not valid YAML at line"),
        ("harmony:\n  parts: [chords, drums]\n", "config.yaml: harmony.parts must be one of chords, bass, melody "
         "(received 'drums')"),
        ("harmony:\n  parts: []\n", "config.yaml: harmony.parts must not be empty"),
        ("harmony:\n  rhythm: often\n", "config.yaml: harmony.rhythm must be one of beat, half-bar, bar"),
        ("harmony:\n  chords_channel: 1\n", "config.yaml: harmony.chords_channel must differ from output.channel"),
        ("harmony:\n  bass_channel: 2\n", "config.yaml: harmony.bass_channel must differ from harmony.chords_chan"),
        ("harmony:\n  chords_lowest: 70\n", "config.yaml: harmony.chords_highest must be at least an octave"),
        ("control:\n  harmony_cc: 22\n", "config.yaml: control.harmony_cc and control.mode_cc are both CC 22"),
        ("live:\n  end_cc: 24\n", "config.yaml: live.end_cc and control.panic_cc are both CC 24"),
    ],
)
def test_bad_values_are_named(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        C.load("config.yaml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_overrides_are_checked_like_the_file():
    assert C.load(None, ["clock.bpm=96", "model.random_seed=3"]).clock.bpm == 96.0
    with pytest.raises(ConfigError, match=r"clock.bpm must be between 20 and 300 \(received 1000\)"):
        C.load(None, ["clock.bpm=1000"])
    with pytest.raises(ConfigError, match="unknown key clock.tempo"):
        C.load(None, ["clock.tempo=96"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        C.load(None, ["bpm"])


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        C.load(tmp_path / "nope.yaml")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="must be an integer"):
        C.from_dict({"output": {"velocity": True}})


def test_every_field_is_in_a_section():
    for f in dataclasses.fields(C.Config):
        assert dataclasses.is_dataclass(f.type) or isinstance(f.type, str)


@pytest.mark.parametrize(("key", "value"), [
    ("model.models", []), ("model.models", ["lstm", " "]), ("model.name", ""), ("midi.client_name", ""),
    ("midi.output_port", "  "), ("midi.input_port", ""), ("clock.port", ""), ("live.default_seed", ""),
])
def test_empty_names_and_lists_are_refused_in_one_line(key, value):
    with pytest.raises(ConfigError) as err:
        C.Config().replace(**{key: value})
    assert str(err.value).startswith(f"override: {key} must not be empty or blank (received ")
    assert C.Config().replace(**{"clock.port": None}).clock.port is None  # null: no port of its own


@pytest.mark.parametrize(("text", "start"), [
    ("live:\n  mode: " + "x" * 300 + "\n", "config.yaml: live.mode must be one of"),
    ("midi:\n  client_name: [" + "1, " * 200 + "1]\n", "config.yaml: midi.client_name must be a string"),
    ("live:\n  " + "k" * 300 + ": 1\n", "config.yaml: unknown key live.kkkk"),
    ("clock: " + "y" * 300 + "\n", "config.yaml: clock must be a mapping"),
])
def test_a_bad_value_is_quoted_in_at_most_80_characters(tmp_path, monkeypatch, text, start):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        C.load("config.yaml")
    message = str(err.value)
    assert message.startswith(start) and "\n" not in message
    assert "x" * 81 not in message and "1, " * 30 not in message and "k" * 81 not in message
    assert "y" * 81 not in message and len(message) < 300
    with pytest.raises(ConfigError) as err:
        C.load(None, ["clock." + "z" * 300 + "=1"])
    assert "z" * 81 not in str(err.value)
    assert C.clip("a\nb") == "'a\\nb'"  # control characters escaped: still one line
