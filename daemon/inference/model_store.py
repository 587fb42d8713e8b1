"""Finding models by name and reading the metadata that travels with them.

A name such as ``lstm`` means the shipped ``models/lstm.onnx`` inside the
installed package (so it works from a clone and from a non-editable pip
install alike); anything with a slash or an ``.onnx`` suffix is a path.
The metadata (vocabulary, step length, key normalisation, corpus, training
figures) is the ``.json`` sidecar beside the model; the same JSON is also
stored in the ONNX file's metadata under ``jamd``, which is the fallback when
the sidecar was not copied along.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import clip
from ..errors import ModelError
from ..tokens import Vocabulary

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
    kind: str  # "lstm-step", "gan-bar", ...
    vocab: Vocabulary
    raw: dict[str, Any]

    @property
    def step_quarter_length(self) -> float:
        return float(self.raw.get("step_quarter_length", 0.25))


def _from_onnx(path: Path) -> dict[str, Any] | None:
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
        props = {p.key: p.value for p in model.metadata_props}
    else:
        from .runtime import make_session

        props = make_session(path, "cpu").get_modelmeta().custom_metadata_map
    text = props.get(METADATA_KEY)
    return json.loads(text) if text else None


def load_info(path: Path) -> ModelInfo:
    sidecar = path.with_suffix(".json")
    raw: dict[str, Any] | None = None
    if sidecar.is_file():
        try:
            raw = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{sidecar}: model metadata is not valid JSON ({exc})") from None
    else:
        raw = _from_onnx(path)
    if not isinstance(raw, dict) or "vocabulary" not in raw or "kind" not in raw:
        raise ModelError(f"{path}: no jamd metadata (expected {sidecar.name} beside it)")
    try:
        vocab = Vocabulary(raw["vocabulary"])
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{sidecar}: bad vocabulary in model metadata ({exc})") from None
    return ModelInfo(path=path, kind=str(raw["kind"]), vocab=vocab, raw=raw)
