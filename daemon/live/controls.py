"""What the player's CCs, OSC messages and a reloaded config.yaml change while jamd plays.

All run on the engine thread: a CC arrives through the input queue, an OSC
message is put on the same queue by the OSC server's thread (`osc`), a reload
(SIGHUP) by the main thread.  CCs and OSC addresses share the actions below
(`panic`, `set_temperature`, `start`, `stop`, `set_answer_bars`, the engine's
`set_mode`, `set_model` and `set_harmony`), so both change jamd alike.  CC
numbers come from `control.*` in config.yaml.

A fader or knob sends tens of values a second: their log lines are coalesced
(`ChangeLog`: one a second per control, the latest value last), and each value
the performer changes here is marked for the state file (`StateSaver.touch`);
a reload's values come from config.yaml and are not.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import MODES, Config
from ..config.validate import clip
from .change_log import ChangeLog
from .shaping import Shaper

if TYPE_CHECKING:  # the engine imports this module
    from .engine import Engine

log = logging.getLogger(__name__)
# the clock's line on every tempo change ("clock 120 BPM, ..."): an OSC tempo fader's own line replaces it
_CLOCK_LOG = "jamd.sync.follow"


def changes(engine: Engine) -> ChangeLog:
    """The engine's coalescing log of live control changes (made on first use)."""
    found = getattr(engine, "change_log", None)
    if found is None:
        found = engine.change_log = ChangeLog(log)
    return found


def _live(engine: Engine, *names: str) -> None:
    """The performer changed these (saved_state.FIELDS names): the state file remembers them."""
    saver = getattr(engine, "saver", None)
    if saver is not None:
        saver.touch(*names)


def control(engine: Engine, number: int, value: int) -> None:
    """One CC from the player (numbers from `control.*`)."""
    ctl = engine.cfg.control
    if number == ctl.panic_cc:
        panic(engine)
    elif number == ctl.temperature_cc:
        set_temperature(engine, round(value / 127 * 2, 3))
    elif number == ctl.mode_cc:
        # 0-127 split in three equal ranges: 0-42 continuous, 43-85 call-response, 86-127 accompany
        mode = MODES[min(value * len(MODES) // 128, len(MODES) - 1)]
        if mode == engine.mode:
            changes(engine).note("mode", f"mode CC {number} value {value}: {mode}, already playing")
        _live(engine, "mode")
        engine.set_mode(mode)
    elif number == ctl.start_stop_cc:
        if value >= 64:
            start(engine)
        else:
            stop(engine)
    elif number == ctl.response_length_cc:
        set_answer_bars(engine, value)
    elif number == ctl.model_select_cc:
        select_model(engine, number, value)
    elif number == ctl.harmony_cc:
        engine.set_harmony(value >= 64)


# -- the actions CCs and OSC share ---------------------------------------------
def panic(engine: Engine) -> None:
    log.info("panic")
    engine.silence()


def set_temperature(engine: Engine, temperature: float) -> None:
    """The melody model's sampling temperature from the next bar on (0: always the likeliest)."""
    engine.temperature = temperature
    _live(engine, "temperature")
    changes(engine).note("temperature", f"temperature {engine.temperature:.2f}")


def start(engine: Engine) -> None:
    """Start playing (if stopped); following a clock, jamd waits for the master's Start."""
    if not engine.playing and not engine.sync.request_start():
        log.info("start")
        engine.start_playing(engine.cfg.metronome.count_in_bars)


def stop(engine: Engine) -> None:
    """Stop (if playing): every note off, no more bars or clicks."""
    if engine.playing:
        log.info("stop")
        engine.stop_playing()


def set_answer_bars(engine: Engine, bars: int) -> None:
    """Bars in each answer (call-response); 0: as long as the phrase."""
    engine.response_bars = bars
    _live(engine, "answer_bars")
    changes(engine).note("answer_bars", f"answers: {f'{bars} bars' if bars else 'as long as the phrase'}")


def select_model(engine: Engine, number: int, value: int) -> None:
    """Model-select CC value n picks model.models[n] (0: the first); a value past the end of
    the list picks the last.  Logged, also when the choice is the model already playing."""
    models = engine.cfg.model.models
    index = min(value, len(models) - 1)
    name = models[index]
    past = f" (past the end of model.models, {len(models)} long: the last)" if index != value else ""
    same = ", already playing" if name == engine.model_name else ""
    changes(engine).note("model", f"model-select CC {number} value {value}: model.models[{index}] {name}{past}{same}")
    _live(engine, "model")
    engine.set_model(name)


# -- OSC (the message's shape was checked on the OSC thread: `live.osc`) -------
def osc(engine: Engine, name: str, value: Any, reply: Callable[[tuple], None] | None) -> None:
    """One OSC message, `/jamd/<name>` with its checked `value`, applied on the engine thread.

    What only the engine's state can refuse (a model not in model.models, a tempo while
    following a master) costs a log line (`engine.refused`: one a second) and changes
    nothing.  `reply`: where `/jamd/status` sends `status(engine)`."""
    if name == "status":
        if reply is not None:
            reply(status(engine))
    elif name == "temperature":
        set_temperature(engine, value)
    elif name == "mode":
        if value == engine.mode:
            changes(engine).note("mode", f"OSC mode {value}, already playing")
        _live(engine, "mode")
        engine.set_mode(value)
    elif name in ("start", "stop", "panic"):
        {"start": start, "stop": stop, "panic": panic}[name](engine)
    elif name == "answer_bars":
        set_answer_bars(engine, value)
    elif name == "model":
        _osc_model(engine, value)
    elif name == "harmony":
        engine.set_harmony(value)
    elif name in ("harmony/rhythm", "harmony/pattern"):
        _change(engine, "harmony", **{name.split("/")[1]: value})
    elif name == "tempo":
        if engine.cfg.clock.source != "internal":
            _refuse(engine, name, value, f"tempo is the master's (clock.source {engine.cfg.clock.source})")
        else:
            _live(engine, "bpm")
            _quiet_clock_change(engine, value)


def status(engine: Engine) -> tuple[str, str, float, int, str, float, int, float, int]:
    """What `/jamd/status` answers: (mode, model, tempo in BPM, playing 0/1, the key of the
    player's last phrase such as "G major" ("" before one), uptime in s, harmony on 0/1,
    temperature, answer bars (0: as long as the phrase))."""
    key = engine.last_key
    return (engine.mode, engine.model_name, float(engine.clock.bpm), int(engine.playing),
            key.name if key is not None else "", (engine.now_ns() - engine.started_ns) / 1e9,
            int(engine.harmony_on), float(engine.temperature), int(engine.response_bars))


def _osc_model(engine: Engine, value: str | int) -> None:
    """A name in model.models, or an index into it."""
    models = engine.cfg.model.models
    if isinstance(value, int):
        if value >= len(models):
            _refuse(engine, "model", value, f"past the end of model.models ({len(models)} long)")
            return
        value = models[value]
    elif value not in models:
        _refuse(engine, "model", value, f"not in model.models ({', '.join(models)})")
        return
    if value == engine.model_name:
        changes(engine).note("model", f"OSC model {value}, already playing")
    _live(engine, "model")
    engine.set_model(value)


class _DropInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


def _quiet_clock_change(engine: Engine, bpm: float) -> None:
    """An OSC tempo: applied like a reload, with the clock's own line per change held back
    (a fader sends 50 a second) and one coalesced "tempo" line instead."""
    clock_log, quiet = logging.getLogger(_CLOCK_LOG), _DropInfo()
    clock_log.addFilter(quiet)
    try:
        _change(engine, "clock", bpm=bpm)
    finally:
        clock_log.removeFilter(quiet)
    changes(engine).note("tempo", f"tempo {bpm:g} BPM")


def _change(engine: Engine, section: str, **values: Any) -> None:
    """Apply `section.key: value` like a reloaded config (values checked against the config's bounds
    by the OSC thread, so no new validation pass on the engine thread)."""
    new = dataclasses.replace(getattr(engine.cfg, section), **values)
    apply_config(engine, dataclasses.replace(engine.cfg, **{section: new}))


def _refuse(engine: Engine, name: str, value: Any, why: str) -> None:
    if engine.refused.ready():
        log.warning("OSC /jamd/%s %s ignored: %s", name, clip(repr(value)), why)


# What a reload cannot change live: the ports, the OSC server's socket, where the clock comes
# from and goes to are opened once, at the start of `jamd run`.
RESTART_SECTIONS = ("midi", "osc")
RESTART_CLOCK_KEYS = ("source", "send", "port")


def needs_restart(cfg: Config, old: Config) -> list[str]:
    """The keys ("midi.connect_output", "clock.source") that differ between `old` and
    `cfg` and take effect only at the next start of `jamd run`, in config order."""
    changed = [f"{section}.{f.name}" for section in RESTART_SECTIONS
               for f in dataclasses.fields(getattr(old, section))
               if getattr(getattr(cfg, section), f.name) != getattr(getattr(old, section), f.name)]
    return changed + [f"clock.{key}" for key in RESTART_CLOCK_KEYS
                      if getattr(cfg.clock, key) != getattr(old.clock, key)]


def keep_restart_keys(cfg: Config, old: Config) -> Config:
    """`cfg` with `old`'s values for every key that needs a restart (`needs_restart`), and
    one warning line naming those that changed; `cfg` itself when none did."""
    changed = needs_restart(cfg, old)
    if not changed:
        return cfg
    log.warning("config reload: %s changed, which only a restart of jamd run applies; the running "
                "value(s) stay in force until then", ", ".join(changed))
    clock = dataclasses.replace(cfg.clock, **{key: getattr(old.clock, key) for key in RESTART_CLOCK_KEYS})
    return dataclasses.replace(cfg, clock=clock, **{section: getattr(old, section) for section in RESTART_SECTIONS})


def apply_config(engine: Engine, cfg: Config) -> None:
    """A reloaded config.yaml: tempo, shaping, modes and controls change live; the ports'
    and the OSC server's keys keep their running values (`keep_restart_keys`)."""
    old = engine.cfg
    cfg = keep_restart_keys(cfg, old)
    engine.cfg = cfg
    engine.sync.reload(cfg.clock, old.clock)
    engine.scheduler.spin_ns = cfg.clock.spin_us * 1000
    engine.scheduler.tick_spin_ns = cfg.clock.tick_spin_us * 1000
    engine.scheduler.offset_ns = int(cfg.output.offset_ms * 1e6)
    engine.shaper = Shaper(cfg.output)
    engine.stream.shaper = engine.answer_stream.shaper = engine.shaper
    engine.capture.cfg = cfg.live
    if cfg.model.temperature != old.model.temperature:
        engine.temperature = cfg.model.temperature
    if cfg.live.response_bars != old.live.response_bars:
        engine.response_bars = cfg.live.response_bars
    if cfg.live.mode != old.live.mode:
        engine.set_mode(cfg.live.mode)
    if cfg.model.name != old.model.name:
        engine.set_model(cfg.model.name)
    if cfg.harmony != old.harmony:
        engine.harmony.reload(cfg.harmony)
        engine.silence()
    engine.metronome.cfg = cfg.metronome
