"""Checking config values against the fields of `jamd.config`'s dataclasses.

Each check raises `ConfigError` with one line naming the key and quoting at
most `QUOTE_MAX` characters of the value received (MidiTok's habit: settings
are validated when the object is built, and the message says what was expected).
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import types
import typing
from typing import Any

from ..errors import ConfigError

QUOTE_MAX = 80  # characters of a bad value or key quoted: a pasted paragraph stays one readable line


def clip(text: str) -> str:
    """`text` (a value's repr, a key) as an error message quotes it: escaped if it holds control
    characters, cut to QUOTE_MAX characters."""
    text = text if text.isprintable() else repr(text)
    return text if len(text) <= QUOTE_MAX else f"{text[:QUOTE_MAX - 3]}..."


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def describe(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple:
        return "a list of " + describe(args[0]).removeprefix("a ").removeprefix("an ") + "s"
    if args:
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, source)
            except ConfigError:
                pass
        raise ConfigError(f"{source}: {key} must be {describe(tp)} (received {clip(repr(value))})")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be {describe(tp)} (received {clip(repr(value))})")
        (item,) = typing.get_args(tp)[:1]
        return tuple(coerce(v, item, key, source) for v in value)
    if tp in (int, float) and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 1e9 or 1E3 (no dot, no sign in the exponent) as a string:
        # a number Python reads is taken as one, then range-checked like any other
        value = _number(value, tp, value)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"{source}: {key} must be {describe(tp)} (received {clip(repr(value))})")
    return float(value) if tp is float else value


def _number(text: str, tp: type, fallback: Any) -> Any:
    """`text` as a float (float fields) or an exact int (int fields: "1e3" yes, "1.5" no), else `fallback`."""
    try:
        d = decimal.Decimal(text.strip().replace("_", ""))
    except decimal.InvalidOperation:
        return fallback
    if tp is float:
        return float(d)
    if d.is_finite() and d == d.to_integral_value():
        return int(d)
    return fallback


def check(value: Any, meta: dict, key: str, source: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    if meta.get("filled") and (not items or not all(v.strip() for v in items)):
        shown = clip(repr(value if isinstance(value, str) else list(value)))
        raise ConfigError(f"{source}: {key} must not be empty or blank (received {shown})")
    if meta.get("port_name") and any(":" in v for v in items):
        raise ConfigError(f"{source}: {key} must not contain ':', JACK's separator in 'client:port' "
                          f"(received {clip(repr(value))})")
    for v in items:
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{source}: {key} must be a number (received nan)")
        # show whole numbers as the user wrote them (1000, not 1000.0)
        shown = int(v) if isinstance(v, float) and v.is_integer() else v
        lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
        if choices is not None and v not in choices:
            allowed = ", ".join(map(str, choices))
            raise ConfigError(f"{source}: {key} must be one of {allowed} (received {clip(repr(shown))})")
        if lo is not None and hi is not None and not lo <= v <= hi:
            raise ConfigError(f"{source}: {key} must be between {lo:g} and {hi:g} (received {clip(repr(shown))})")


def build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix or 'the file'} must be a mapping (received {clip(repr(data))})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{prefix}.{key}" if prefix else str(key)
            known = ", ".join(fields)
            raise ConfigError(f"{source}: unknown key {clip(where)} (known here: {known})")
    values = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = build(tp, data[name], key, source)
        else:
            value = coerce(data[name], tp, key, source)
            check(value, dict(f.metadata), key, source)
            values[name] = value
    return cls(**values)


def cross_checks(cfg: Any, source: str) -> None:
    """Rules between keys of a built `Config`."""
    if cfg.clock.send and cfg.clock.source == "midi":
        raise ConfigError(f"{source}: clock.send needs clock.source internal or link (received clock.source "
                          f"{cfg.clock.source!r}: jamd cannot send MIDI clock and follow another at once)")
    numbers: dict[int, str] = {}
    ccs = [(f"control.{f.name}", getattr(cfg.control, f.name)) for f in dataclasses.fields(cfg.control)
           if f.name.endswith("_cc")] + [("live.end_cc", cfg.live.end_cc)]
    for key, number in ccs:
        if number is None:
            continue
        if number in numbers:
            raise ConfigError(f"{source}: {key} and {numbers[number]} are both CC {number}: each control needs "
                              "a CC number of its own")
        numbers[number] = key
    h = cfg.harmony
    for key, channel in (("chords_channel", h.chords_channel), ("bass_channel", h.bass_channel)):
        if channel == cfg.output.channel:
            raise ConfigError(f"{source}: harmony.{key} must differ from output.channel (received {channel} for "
                              "both: two parts on one channel cut each other's notes)")
    if h.chords_channel == h.bass_channel:
        raise ConfigError(f"{source}: harmony.bass_channel must differ from harmony.chords_channel (received "
                          f"{h.bass_channel} for both: two parts on one channel cut each other's notes)")
    if cfg.harmony.chords_lowest + 12 > cfg.harmony.chords_highest:
        raise ConfigError(f"{source}: harmony.chords_highest must be at least an octave above harmony.chords_lowest "
                          f"(received {cfg.harmony.chords_lowest} and {cfg.harmony.chords_highest})")
    if cfg.output.note_min > cfg.output.note_max:
        raise ConfigError(f"{source}: output.note_min must not exceed output.note_max "
                          f"(received {cfg.output.note_min} > {cfg.output.note_max})")
