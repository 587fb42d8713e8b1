"""What the player's CCs and a reloaded config.yaml change while jamd plays.

Both run on the engine thread: a CC arrives through the input queue, a
reload (SIGHUP) is put on the same queue by the main thread.  CC numbers come
from `control.*` in config.yaml.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import MODES, Config
from .shaping import Shaper

if TYPE_CHECKING:  # the engine imports this module
    from .engine import Engine

log = logging.getLogger(__name__)


def control(engine: Engine, number: int, value: int) -> None:
    """One CC from the player (numbers from `control.*`)."""
    ctl = engine.cfg.control
    if number == ctl.panic_cc:
        log.info("panic")
        engine.silence()
    elif number == ctl.temperature_cc:
        engine.temperature = round(value / 127 * 2, 3)
        log.info("temperature %.2f", engine.temperature)
    elif number == ctl.mode_cc:
        # 0-127 split in three equal ranges: 0-42 continuous, 43-85 call-response, 86-127 accompany
        mode = MODES[min(value * len(MODES) // 128, len(MODES) - 1)]
        if mode == engine.mode:
            log.info("mode CC %d value %d: %s, already playing", number, value, mode)
        engine.set_mode(mode)
    elif number == ctl.start_stop_cc:
        if value >= 64 and not engine.playing:
            if not engine.sync.request_start():
                log.info("start")
                engine.start_playing(engine.cfg.metronome.count_in_bars)
        elif value < 64 and engine.playing:
            log.info("stop")
            engine.stop_playing()
    elif number == ctl.response_length_cc:
        engine.response_bars = value
        log.info("answers: %s", f"{value} bars" if value else "as long as the phrase")
    elif number == ctl.model_select_cc:
        select_model(engine, number, value)
    elif number == ctl.harmony_cc:
        engine.set_harmony(value >= 64)


def select_model(engine: Engine, number: int, value: int) -> None:
    """Model-select CC value n picks model.models[n] (0: the first); a value past the end of
    the list picks the last.  Logged, also when the choice is the model already playing."""
    models = engine.cfg.model.models
    index = min(value, len(models) - 1)
    name = models[index]
    past = f" (past the end of model.models, {len(models)} long: the last)" if index != value else ""
    same = ", already playing" if name == engine.model_name else ""
    log.info("model-select CC %d value %d: model.models[%d] %s%s%s", number, value, index, name, past, same)
    engine.set_model(name)


def apply_config(engine: Engine, cfg: Config) -> None:
    """A reloaded config.yaml: tempo, shaping, modes and controls change live."""
    old = engine.cfg
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
    if cfg.midi != old.midi or (cfg.clock.source, cfg.clock.send, cfg.clock.port) != (
            old.clock.source, old.clock.send, old.clock.port):
        log.warning("midi.* and clock source/send/port changes take effect at the next start of jamd run")
