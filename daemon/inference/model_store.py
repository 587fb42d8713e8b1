"""Finding models by name and reading the metadata that travels with them.

A name such as ``lstm`` means the shipped ``models/lstm.onnx`` inside the
installed package (so it works from a clone and from a non-editable pip
install alike); anything with a slash or an ``.onnx`` suffix is a path.
The metadata (vocabulary, step length, key normalisation, corpus, training
figures) is the ``.json`` sidecar beside the model; the same JSON is also
stored in the ONNX file's metadata under ``jamd``, which is the fallback when
the sidecar was not copied along.  Both copies are read and checked
(`check_metadata`); a sidecar that disagrees with the embedded copy on a
field that decides how the model runs (`CONTRACT_FIELDS`) is refused, since
it belongs to another model (a vocabulary shifted by an octave would play
every note at the wrong pitch).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import clip
from ..errors import ModelError
from ..tokens import DELIMITER, HOLD, REST, SPECIAL_SYMBOLS, Vocabulary, is_pitch
from .onnx_meta import NotOnnx, read_metadata_props

METADATA_KEY = "jamd"


def shipped_models_dir() -> Path:
    return Path(str(resources.files("jamd.models")))


def shipped_model_names() -> list[str]:
    return sorted(p.stem for p in shipped_models_dir().glob("*.onnx"))


def resolve(name_or_path: str) -> Path:
    """Turn a model name or path into an existing .onnx path, or fail in one line."""
    try:
        return _resolve(name_or_path)
    except OSError as exc:  # a name too long for the file system, say
        raise ModelError(f"model {clip(repr(name_or_path))} not found ({exc.strerror})") from None


def _resolve(name_or_path: str) -> Path:
    looks_like_path = "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".onnx")
    if looks_like_path:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            raise ModelError(f"{path}: is a directory, not an .onnx model file")
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        return path
    path = shipped_models_dir() / f"{name_or_path}.onnx"
    if not path.is_file():
        known = ", ".join(shipped_model_names()) or "none"
        raise ModelError(f"model {clip(repr(name_or_path))} not found "
                         f"(shipped models: {known}; or give a path to an .onnx file)")
    return path


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    kind: str  # "lstm-step", "gan-bar", ..., "harmony-step"
    vocab: Vocabulary | None  # None for a harmony model: its vocabulary is the chord table
    raw: dict[str, Any]

    @property
    def step_quarter_length(self) -> float:
        return float(self.raw.get("step_quarter_length", 0.25))


# -- reading -----------------------------------------------------------------------

def _check_file(path: Path) -> None:
    """A model path must be a non-empty regular file; one line otherwise."""
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not an .onnx model file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
    if size == 0:
        raise ModelError(f"{path}: model file is empty")


def _embedded(path: Path) -> dict[str, Any] | None:
    """The metadata JSON stored in the ONNX file under `METADATA_KEY` (None: there is none).

    Reading the file also proves it is an ONNX model at all: a truncated or
    corrupt file is refused here, in one line, before any session is made.
    Read from the protobuf itself (`onnx_meta`): neither the `onnx` package
    (seconds of import at every start) nor a second ONNX Runtime session.
    """
    try:
        props = read_metadata_props(path)
    except NotOnnx as exc:
        raise ModelError(f"{path}: not a readable ONNX file ({exc})") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file ({exc.strerror})") from None
    text = props.get(METADATA_KEY)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ModelError(f"{path}: the metadata embedded under {METADATA_KEY!r} is not valid JSON") from None


_NO_SIDECAR = object()


def _sidecar(sidecar: Path) -> Any:
    """The sidecar's JSON value (any JSON: it is checked later), or `_NO_SIDECAR`."""
    if not sidecar.exists():
        return _NO_SIDECAR
    if not sidecar.is_file() and not sidecar.is_dir():  # a device or FIFO would be read forever
        raise ModelError(f"{sidecar}: not a regular file (a device, FIFO or socket), not the model's .json metadata")
    try:
        return json.loads(sidecar.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise ModelError(f"{sidecar}: is a directory, not the model's .json metadata") from None
    except OSError as exc:
        raise ModelError(f"{sidecar}: cannot read model metadata ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{sidecar}: model metadata is not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise ModelError(f"{sidecar}: model metadata is not valid JSON ({str(exc)[:80]})") from None


@functools.lru_cache(maxsize=16)
def _read(path: Path, _stamp: tuple) -> tuple[Any, Any]:
    # cached per file version: a model is opened by name, then again as a generator
    return _sidecar(path.with_suffix(".json")), _embedded(path)


def _stamp(path: Path) -> tuple:
    def one(p: Path) -> tuple:
        try:
            st = p.stat()
        except OSError:
            return ()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    return one(path), one(path.with_suffix(".json"))


def load_info(path: Path) -> ModelInfo:
    """The checked metadata of model `path`: its sidecar (else what the ONNX file embeds).

    Raises `ModelError` (one line) for a missing, empty or corrupt model file, a
    sidecar that is not JSON, a field of the wrong type or range (`check_metadata`),
    and a sidecar that disagrees with the ONNX file's own copy on a field that
    decides how the model is run (`CONTRACT_FIELDS`).
    """
    path = Path(path)
    _check_file(path)
    sidecar_path = path.with_suffix(".json")
    sidecar, embedded = _read(path, _stamp(path))
    has_sidecar = sidecar is not _NO_SIDECAR
    raw = sidecar if has_sidecar else embedded
    where = sidecar_path if has_sidecar else path
    if not has_sidecar and raw is None:
        raise ModelError(f"{path}: no jamd metadata (expected {sidecar_path.name} beside it)")
    vocab = check_metadata(raw, where)
    if has_sidecar and embedded is not None:
        for key in CONTRACT_FIELDS:
            if sidecar.get(key) != embedded.get(key):
                what, ours, theirs = _first_difference(key, sidecar.get(key), embedded.get(key))
                raise ModelError(f"{sidecar_path}: {what} is {_quote(ours)} here but {_quote(theirs)} in the metadata "
                                 f"embedded in {path.name}; the sidecar belongs to another model: copy the right "
                                 "one, or delete it to use the embedded one")
    return ModelInfo(path=path, kind=raw["kind"], vocab=vocab, raw=raw)


def _first_difference(key: str, a: Any, b: Any) -> tuple[str, Any, Any]:
    """Where two values of `key` first differ: ("vocabulary[3]", "60", "48") for lists, else the whole values."""
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):  # a length difference is reported below
            if x != y:
                return f"{key}[{i}]", x, y
        return f"{key}'s length", len(a), len(b)
    return key, a, b


# -- checking ----------------------------------------------------------------------

LSTM_KIND, GAN_KIND, CGAN_KIND, HARMONY_KIND = "lstm-step", "gan-bar", "cgan-bar", "harmony-step"
KINDS = (LSTM_KIND, GAN_KIND, CGAN_KIND, HARMONY_KIND)
MELODY_KINDS = (LSTM_KIND, GAN_KIND, CGAN_KIND)

# The fields that decide how a model's inputs and outputs are read: the sidecar and the
# ONNX file's embedded copy must agree on each (descriptive fields and `selection`, a
# playing preference users may edit in the sidecar, may differ).
CONTRACT_FIELDS = ("kind", "vocabulary", "units", "start_symbols", "steps_per_bar", "latent_dim",
                   "step_quarter_length", "head", "chords", "step_features",
                   "layers", "metric_position", "positions", "transpose")
# an LSTM's key handling (issue 16): "c", trained on tunes moved to C major / A minor (the daemon moves
# the player's phrase there and the answer back), or "all-keys" (it plays in the player's key)
LSTM_TRANSPOSITIONS = ("c", "all-keys")

# per kind: field -> (required, lowest, highest) for integer fields
_INT_FIELDS: dict[str, dict[str, tuple[bool, int, int]]] = {
    LSTM_KIND: {"units": (True, 1, 65536), "start_symbols": (False, 1, 4096), "layers": (False, 1, 64),
                "positions": (False, 1, 4096)},
    GAN_KIND: {"steps_per_bar": (True, 1, 256), "latent_dim": (True, 1, 65536)},
    CGAN_KIND: {"steps_per_bar": (True, 1, 256), "latent_dim": (True, 1, 65536)},
    HARMONY_KIND: {"units": (True, 1, 65536), "step_features": (True, 1, 65536)},
}


_PITCH = re.compile(r"0|[1-9][0-9]{0,2}")  # as str(int) writes it: "60", never "060" or "６０"


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_metadata(raw: Any, where: Path) -> Vocabulary | None:
    """Check every field jamd reads from a model's metadata; returns its vocabulary.

    The vocabulary is a list of distinct strings: the delimiter ``/``, rest ``r``
    and hold ``_`` and at least one MIDI pitch (``"0"``..``"127"``), nothing else.
    ``kind`` is one of `KINDS`; ``units`` (LSTM) and ``steps_per_bar``,
    ``latent_dim`` (GANs) and ``start_symbols`` (steps of delimiter padding
    before a melody), an LSTM's ``layers`` and ``positions`` are positive
    integers, its ``metric_position`` a boolean and ``transpose`` "c" or
    "all-keys" (all four optional: 1, false, -, "c"); ``step_quarter_length`` a positive
    number of quarter notes.  Each fault is one `ModelError` line naming
    `where` and the field.
    """
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: model metadata must be a JSON object, not {type(raw).__name__}")
    kind = raw.get("kind")
    if "kind" not in raw:
        raise ModelError(f"{where}: model metadata has no 'kind' (one of {', '.join(KINDS)})")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ModelError(f"{where}: model kind {_quote(kind)} is not one of {', '.join(KINDS)}")
    vocab = _check_harmony(raw, where) if kind == HARMONY_KIND else _check_vocabulary(raw, where)
    for key, (required, lo, hi) in _INT_FIELDS[kind].items():
        if key not in raw:
            if required:
                raise ModelError(f"{where}: a {kind} model's metadata needs {key!r} (an integer {lo}-{hi})")
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ModelError(f"{where}: {key} is {_quote(value)}; it must be an integer {lo}-{hi}")
    if kind == LSTM_KIND:
        _check_lstm(raw, where)
    elif "bar_repeat" in raw:
        # a per-bar model has no step-by-step bar memory to replay from: a setting it would ignore is refused
        raise ModelError(f"{where}: bar_repeat is for lstm-step models only; a {kind} model chooses its bars "
                         "with 'selection' (delete bar_repeat)")
    if "selection" in raw:
        _check_selection(raw["selection"], where)
    if "step_quarter_length" in raw:
        value = raw["step_quarter_length"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 4:
            raise ModelError(f"{where}: step_quarter_length is {_quote(value)}; it must be a number "
                             "of quarter notes above 0 and at most 4 (0.25: a 16th)")
    return vocab


def _check_lstm(raw: dict[str, Any], where: Path) -> None:
    """An LSTM's optional issue-16 fields: ``metric_position`` a boolean (true needs ``positions``,
    the size of the position input), ``transpose`` one of `LSTM_TRANSPOSITIONS`."""
    value = raw.get("metric_position", False)
    if not isinstance(value, bool):
        raise ModelError(f"{where}: metric_position is {_quote(value)}; it must be true or false")
    if value and "positions" not in raw:
        raise ModelError(f"{where}: a model with metric_position needs 'positions' (the bar positions it reads, "
                         "an integer 1-4096)")
    value = raw.get("transpose", "c")
    if value not in LSTM_TRANSPOSITIONS:
        raise ModelError(f"{where}: transpose is {_quote(value)}; it must be one of {', '.join(LSTM_TRANSPOSITIONS)}")
    if "bar_repeat" in raw:
        check_bar_repeat(raw["bar_repeat"], where)


def _check_selection(value: Any, where: Path) -> None:
    """A model's ``selection`` (fields of `gan_selection.Selection`), checked as a GAN's is when it
    loads, for every kind (an LSTM ignores it, but a typo there is still a fault to name)."""
    from .gan_selection import Selection

    try:
        Selection.from_dict(value)
    except (ModelError, TypeError) as exc:
        raise ModelError(f"{where}: bad selection in model metadata ({exc})") from None


# bar_repeat (jamd.inference.repeat.RepeatSettings): field -> (lowest, highest, integer, the range in words)
_BAR_REPEAT = {"chance": (0.0, 1.0, False, "0-1"), "lookback": (1, 64, True, "1-64"),
               "min_logp": (-math.inf, 0.0, False, "<= 0")}


def _json_quote(value: Any) -> str:
    """`value` as JSON spells it (null, true, NaN, "x"), clipped: bar_repeat is written in JSON."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_bar_repeat(value: Any, where: Path | str | None) -> None:
    """An LSTM's optional ``bar_repeat``: {"chance": 0-1, "lookback": 1-64, "min_logp": <= 0}, each
    optional, or null (like {}: off); `ModelError` (one line naming `where`, when given, and the
    field, values spelled as JSON) otherwise."""
    at = f"{where}: " if where is not None else ""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ModelError(f"{at}bar_repeat is {_json_quote(value)}; it must be an object like "
                         '{"chance": 0.18, "lookback": 8, "min_logp": -1.0} (or null: off)')
    for key, v in value.items():
        if key not in _BAR_REPEAT:
            raise ModelError(f"{at}bar_repeat.{key} is not a setting (chance, lookback, min_logp)")
        lo, hi, integer, bounds = _BAR_REPEAT[key]
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) \
                or not math.isfinite(v) or not lo <= v <= hi:
            kind = "an integer" if integer else "a number"
            raise ModelError(f"{at}bar_repeat.{key} is {_json_quote(v)}; it must be {kind} {bounds}")


def _check_harmony(raw: dict[str, Any], where: Path) -> None:
    from ..music import chords

    if raw.get("chords") != chords.chord_table():
        raise ModelError(f"{where}: the chord table differs from this jamd's ({chords.N_CHORDS} chords, "
                         "jamd.music.chords): the model was made for another version")
    if raw.get("step_features") != chords.STEP_FEATURES:
        raise ModelError(f"{where}: step_features is {_quote(raw.get('step_features'))}; this jamd builds "
                         f"{chords.STEP_FEATURES} per beat (jamd.music.chords)")
    return None


def _check_vocabulary(raw: dict[str, Any], where: Path) -> Vocabulary:
    if "vocabulary" not in raw:
        raise ModelError(f"{where}: model metadata has no 'vocabulary'")
    symbols = raw["vocabulary"]
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ModelError(f"{where}: vocabulary must be a list of strings, not {_quote(symbols)}")
    for s in symbols:
        if s not in SPECIAL_SYMBOLS and not (_PITCH.fullmatch(s) and is_pitch(s)):
            raise ModelError(f"{where}: vocabulary symbol {_quote(s)} is neither a MIDI pitch 0-127 "
                             f"nor one of {' '.join(SPECIAL_SYMBOLS)}")
    missing = [s for s in SPECIAL_SYMBOLS if s not in symbols]
    if missing:
        names = {DELIMITER: "delimiter", REST: "rest", HOLD: "hold"}
        raise ModelError(f"{where}: vocabulary lacks the {names[missing[0]]} symbol {missing[0]!r}")
    if not any(is_pitch(s) for s in symbols):
        raise ModelError(f"{where}: vocabulary has no pitches")
    try:
        return Vocabulary(symbols)
    except ValueError as exc:
        raise ModelError(f"{where}: bad vocabulary ({exc})") from None
