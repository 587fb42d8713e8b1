"""Typed configuration, validated once at load time.

`config.yaml` at the repository root documents every key; this module holds
the same keys as dataclasses whose fields carry their bounds.  Loading walks
the YAML mapping, refuses unknown keys, wrong types and out-of-range values
with one line that names the key and the value received, and returns a frozen
`Config`.  `--set key.path=value` overrides go through the same checks.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .spec import spec as _spec
from .training import (
    CorpusConfig,
    EvalConfig,
    GanConfig,
    HarmonyTrainingConfig,
    TrainingConfig,
)
from .validate import build, clip, cross_checks

__all__ = [
    "Config", "ConfigError", "CorpusConfig", "EvalConfig", "GanConfig", "HarmonyTrainingConfig",
    "TrainingConfig", "clip", "default_config_path", "from_dict", "load", "parse_override",
]

MODES = ("continuous", "call-response", "accompany")
MIDI_APIS = ("auto", "alsa", "jack", "coremidi", "winmm")
PROVIDERS = ("auto", "cpu", "cuda")
CLOCK_SOURCES = ("internal", "midi", "link")
HARMONY_PARTS = ("chords", "bass", "melody")
HARMONIC_RHYTHMS = ("beat", "half-bar", "bar")  # how often the chord may change
HARMONY_PATTERNS = ("sustained", "beats")
GM_PERCUSSION_CHANNEL = 10  # General MIDI 1.0: channel 10 is the drum kit, never melody by default


@dataclass(frozen=True)
class ModelConfig:
    # a shipped model name or a path to an .onnx file; lstm-folk since it met issue 16's goals
    name: str = _spec("lstm-folk", filled=True)
    models: tuple[str, ...] = _spec(factory=lambda: ("lstm-folk",), filled=True)  # selectable by CC
    providers: str = _spec("auto", choices=PROVIDERS)
    intra_op_threads: int = _spec(1, lo=1, hi=64)
    temperature: float = _spec(0.9, lo=0.0, hi=5.0)
    random_seed: int | None = _spec(None, lo=0, hi=2**32 - 1)
    gan_candidates: int | None = _spec(None, lo=1, hi=1024)  # bars sampled per bar line; None: the model's
    # LSTM bar repetition: share of bar lines where an earlier bar may come back; None: the model's
    bar_repeat: float | None = _spec(None, lo=0.0, hi=1.0)


@dataclass(frozen=True)
class ClockConfig:
    bpm: float = _spec(120.0, lo=20, hi=300)
    beats_per_bar: int = _spec(4, lo=1, hi=16)
    beat_unit: int = _spec(4, choices=(2, 4, 8, 16))
    lookahead_bars: float = _spec(1.0, lo=1.0, hi=8.0)
    spin_us: int = _spec(1000, lo=0, hi=20000)
    realtime_priority: int = _spec(10, lo=0, hi=99)  # SCHED_FIFO for the sender where allowed; 0: never
    source: str = _spec("internal", choices=CLOCK_SOURCES)  # who owns tempo and bar position
    send: bool = _spec(False)  # master: send MIDI clock, Start/Stop/Continue, Song Position Pointer
    port: str | None = _spec(None, port_name=True)  # separate virtual output for the clock; None: the note output
    send_while_stopped: bool = _spec(True)  # keep 0xF8 running while the transport is stopped
    tick_spin_us: int = _spec(250, lo=0, hi=20000)  # spin before each 0xF8 (spin_us is for the rest)
    loss_timeout_ms: int = _spec(1000, lo=100, hi=10000)  # source midi: silence that means the clock is gone
    follow_window: int = _spec(24, lo=6, hi=96)  # source midi: clocks in the tempo fit (24 = one beat)
    link_start_stop: bool = _spec(False)  # source link: follow the session's start/stop too


@dataclass(frozen=True)
class MidiConfig:
    api: str = _spec("auto", choices=MIDI_APIS)
    client_name: str = _spec("jamd", port_name=True)
    output_port: str = _spec("jamd out", port_name=True)
    input_port: str = _spec("jamd in", port_name=True)
    connect_output: str | None = _spec(None)  # existing port to use instead of a virtual one
    connect_input: str | None = _spec(None)


@dataclass(frozen=True)
class GenerateConfig:
    seed: str = _spec("67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _", filled=True)
    bars: int = _spec(16, lo=1, hi=1024)


@dataclass(frozen=True)
class LiveConfig:
    mode: str = _spec("call-response", choices=MODES)
    silence_bars: float = _spec(1.0, lo=0.25, hi=16)
    end_cc: int | None = _spec(None, lo=0, hi=127)
    max_phrase_bars: int = _spec(8, lo=1, hi=64)
    response_bars: int = _spec(0, lo=0, hi=64)  # 0: as long as the phrase
    default_seed: str = _spec("67 _ 67 _ 67 _ _ 65 64 _ 64 _ 64 _ _", filled=True)
    # The channels (1-16) whose notes are melody, for live input and MIDI files
    # alike; empty: every channel but 10 (General MIDI percussion).
    input_channels: tuple[int, ...] = _spec(factory=tuple, lo=1, hi=16)

    def is_melody_channel(self, channel: int) -> bool:
        """Whether notes on `channel` (1-16) are melody (see `input_channels`)."""
        return channel in self.input_channels if self.input_channels else channel != GM_PERCUSSION_CHANNEL


@dataclass(frozen=True)
class OutputConfig:
    channel: int = _spec(1, lo=1, hi=16)
    velocity: int = _spec(90, lo=1, hi=127)
    octave_shift: int = _spec(0, lo=-4, hi=4)
    gate: float = _spec(0.9, lo=0.05, hi=1.0)
    note_min: int = _spec(36, lo=0, hi=127)
    note_max: int = _spec(96, lo=0, hi=127)
    offset_ms: float = _spec(0.0, lo=-500, hi=500)


@dataclass(frozen=True)
class MetronomeConfig:
    enabled: bool = _spec(False)  # a click on every beat while playing
    count_in_bars: int = _spec(0, lo=0, hi=8)  # bars of clicks before jamd's first bar; 0: none
    channel: int = _spec(10, lo=1, hi=16)  # 10: General MIDI drums
    accent_note: int = _spec(76, lo=0, hi=127)  # the downbeat (GM Hi Wood Block)
    note: int = _spec(77, lo=0, hi=127)  # the other beats (GM Low Wood Block)
    velocity: int = _spec(100, lo=1, hi=127)  # the downbeat gets 20 more, at most 127


@dataclass(frozen=True)
class ControlConfig:
    temperature_cc: int | None = _spec(21, lo=0, hi=127)
    mode_cc: int | None = _spec(22, lo=0, hi=127)
    start_stop_cc: int | None = _spec(23, lo=0, hi=127)
    panic_cc: int | None = _spec(24, lo=0, hi=127)
    response_length_cc: int | None = _spec(25, lo=0, hi=127)
    model_select_cc: int | None = _spec(26, lo=0, hi=127)
    harmony_cc: int | None = _spec(27, lo=0, hi=127)  # >= 64: chords and bass on, < 64: off
    channel: int | None = _spec(None, lo=1, hi=16)  # None: listen on every channel


@dataclass(frozen=True)
class HarmonyConfig:
    # Chords and bass (issue 14): the harmony model, the parts and how they are played.
    model: str = _spec("harmony", filled=True)  # a shipped model name or a path to an .onnx file
    parts: tuple[str, ...] = _spec(factory=lambda: ("chords", "bass"), choices=HARMONY_PARTS, filled=True)
    under_melody: bool = _spec(False)  # continuous and call-response: chords and bass under jamd's melody
    rhythm: str = _spec("half-bar", choices=HARMONIC_RHYTHMS)  # harmonic rhythm: most one chord per ...
    pattern: str = _spec("beats", choices=HARMONY_PATTERNS)
    temperature: float = _spec(0.3, lo=0.0, hi=5.0)  # 0: always the likeliest chord
    melody_fit: float = _spec(2.0, lo=0.0, hi=10.0)  # weight of the melody's chord tones in the choice
    decide_ms: float = _spec(40.0, lo=1.0, hi=200.0)  # accompany: a beat's chord is chosen this long before it
    forecast_model: str | None = _spec("lstm", filled=True)  # accompany: the melody model that guesses the player
    forecast_rollouts: int = _spec(8, lo=1, hi=256)  # continuations it samples per chord decision
    chords_channel: int = _spec(2, lo=1, hi=16)
    bass_channel: int = _spec(3, lo=1, hi=16)
    chords_velocity: int = _spec(64, lo=1, hi=127)
    bass_velocity: int = _spec(80, lo=1, hi=127)
    chords_lowest: int = _spec(48, lo=12, hi=108)  # lowest chord note (the bass goes below it)
    chords_highest: int = _spec(72, lo=12, hi=120)  # highest chord note; lower still when the melody is
    gate: float = _spec(0.95, lo=0.05, hi=1.0)


@dataclass(frozen=True)
class OscConfig:
    # OSC control and status (issue 15; needs the `osc` extra, python-osc)
    enabled: bool = _spec(False)
    host: str = _spec("127.0.0.1", filled=True)  # 0.0.0.0 listens on every network: see the README first
    port: int = _spec(9000, lo=1, hi=65535)


@dataclass(frozen=True)
class StateConfig:
    # what `jamd run` remembers between starts (issue 15): mode, model, temperature, tempo, answer length
    save: bool = _spec(True)
    path: str = _spec("")  # "": $XDG_STATE_HOME/jamd/state.json (or ~/.local/state/jamd/state.json)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _spec("info", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    midi: MidiConfig = field(default_factory=MidiConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    metronome: MetronomeConfig = field(default_factory=MetronomeConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    harmony: HarmonyConfig = field(default_factory=HarmonyConfig)
    harmony_training: HarmonyTrainingConfig = field(default_factory=HarmonyTrainingConfig)
    osc: OscConfig = field(default_factory=OscConfig)
    state: StateConfig = field(default_factory=StateConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, tuple) else v
        return {k: {f: plain(x) for f, x in sec.items()} for k, sec in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> Config:
        """A copy with `section.key` values changed (validated like a load)."""
        data = self.to_dict()
        for path, value in changes.items():
            section, _, key = path.partition(".")
            data.setdefault(section, {})[key] = value
        return from_dict(data, source="override")


def from_dict(data: Any, source: str = "config") -> Config:
    cfg = build(Config, data, "", source)
    cross_checks(cfg, source)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `--set key.path=value`; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"--set: expected key.path=value (received {clip(repr(text))})")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: jamd's own config.yaml is ~15 KB; more is not a config file


def _read_bounded(path: Path) -> bytes:
    """The bytes of config file `path`: a regular file of at most MAX_CONFIG_BYTES, else one line.

    Checked on the open file (fstat), so a device (/dev/urandom, endless) or a FIFO (blocks
    until a writer comes) is refused instead of read forever; O_NONBLOCK keeps the open
    itself from waiting for a FIFO's writer.
    """
    if not str(path).strip():
        raise ConfigError(f"--config must not be empty (received {clip(repr(str(path)))})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file (a device, FIFO or socket), not a config file")
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is over {MAX_CONFIG_BYTES // (1 << 20)} MiB; "
                          "is it really a config file?")
    return data


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load `path` (or the defaults when None) and apply `--set` overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            text = _read_bounded(path).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: config file is not valid UTF-8 (byte {exc.start}: "
                              f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from None
    cfg = from_dict(data, source)
    for text in overrides or []:
        key, value = parse_override(text)
        section, _, name = key.partition(".")
        merged = cfg.to_dict()
        if section not in merged:
            raise ConfigError(f"--set: unknown key {clip(key)} (sections: {', '.join(merged)})")
        merged[section][name] = value
        cfg = from_dict(merged, f"--set {clip(key)}")
    return cfg


def default_config_path() -> Path | None:
    """`./config.yaml` when it exists, else None (built-in defaults)."""
    p = Path("config.yaml")
    return p if p.is_file() else None
