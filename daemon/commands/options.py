"""Command-line options that set config values or numbers: one line naming the option when out of range.

An option that stands for a config key (``--bpm`` for clock.bpm) is checked by
the config's own rules, and the error names the option the user typed, not the
key.  Numbers that are options alone (``--duration``, ``--show``) are checked
by `check_number`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..config import Config, clip
from ..errors import ConfigError, ModelError, UsageError


def set_keys(args: Any) -> set[str]:
    """The config keys the command line's --set gave (args.overrides, "key=value" each)."""
    from ..config import parse_override

    return {parse_override(text)[0] for text in getattr(args, "overrides", None) or []}


def apply(cfg: Config, options: Mapping[str, tuple[str | Mapping[str, Any], Any]]) -> Config:
    """`cfg` with each given option's value set: `options` maps an option ("--bpm") to its config key
    ("clock.bpm") and value (None: not given), or to {key: value} of several keys the option sets
    together and the value typed.  Each option is checked alone, so a bad one is named."""
    for option, (key, value) in options.items():
        if value is None:
            continue
        changes = dict(key) if isinstance(key, Mapping) else {key: value}
        try:
            cfg = cfg.replace(**changes)
        except ConfigError as exc:
            msg = str(exc).removeprefix("override: ")
            if isinstance(key, str) and msg.startswith(key + " "):
                msg = option + msg[len(key):]
            else:
                msg = f"{option} {clip(repr(value))}: {msg}"
            raise UsageError(msg) from None
    return cfg


def check_models(cfg: Config) -> Config:
    """`cfg` if each of model.models, harmony.model and harmony.forecast_model is a shipped model name
    or an existing .onnx path (`model_store.resolve`); else one line naming the key.  The CLI calls it once the config
    has loaded, for every command, and `jamd run` again on each SIGHUP reload: a wrong name is
    refused as the config loads, not found out at the first model-select CC on stage."""
    from ..inference import model_store

    forecast = (cfg.harmony.forecast_model,) if cfg.harmony.forecast_model is not None else ()
    for key, names in (("model.models", cfg.model.models), ("harmony.model", (cfg.harmony.model,)),
                       ("harmony.forecast_model", forecast)):
        for name in names:
            try:
                model_store.resolve(name)
            except ModelError:
                known = ", ".join(model_store.shipped_model_names()) or "none"
                raise ConfigError(f"{key}: no model {clip(repr(name))} (shipped models: {known}; "
                                  "or the path of an existing .onnx file)") from None
    return cfg


def check_number(value: float | int | None, option: str, lo: float | None = None, hi: float | None = None,
                 what: str = "") -> None:
    """Refuse NaN, infinities and values outside [lo, hi] (None: unbounded) with one line naming `option`."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number (received {value!r}){what}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        def fmt(x: float) -> str:
            return f"{x:g}" if isinstance(x, float) else str(x)

        if hi is None:
            bound = f"at least {fmt(lo)}"
        elif lo is None:
            bound = f"at most {fmt(hi)}"
        else:
            bound = f"between {fmt(lo)} and {fmt(hi)}"
        raise UsageError(f"{option} must be {bound} (received {value!r}){what}")
