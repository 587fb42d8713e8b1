"""ONNX Runtime sessions: provider choice, threads, and the two-runtimes check.

`auto` asks for CUDA where onnxruntime-gpu offers it, but onnxruntime-gpu
falls back to the CPU silently when CUDA or cuDNN cannot be loaded, so the
provider actually in use is read back from `session.get_providers()` and
logged.  Before the first CUDA session, `onnxruntime.preload_dlls()` loads the
CUDA and cuDNN libraries of the NVIDIA pip packages that `jamd[gpu]` installs
(onnxruntime-gpu[cuda,cudnn]), so no system CUDA or LD_LIBRARY_PATH is needed.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from ..errors import ModelError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def installed_runtimes() -> list[str]:
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def warn_if_both_runtimes() -> None:
    if len(installed_runtimes()) == 2:
        log.warning(
            "both onnxruntime and onnxruntime-gpu are installed and overwrite each other's files: "
            "uninstall both, then install one (pip install 'jamd[cpu]' or 'jamd[gpu]')"
        )


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            "ONNX Runtime is not installed: pip install 'jamd[cpu]' (or 'jamd[gpu]' for CUDA)"
        ) from None
    return onnxruntime


_preloaded = False


def _preload_cuda(ort) -> None:
    """Load CUDA/cuDNN from NVIDIA's pip packages once (ONNX Runtime >= 1.21; a no-op without them)."""
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    try:
        ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - a missing library only means the CPU; the session says so
        log.debug("onnxruntime.preload_dlls: %s", exc)


def make_session(path: str | Path, providers: str = "auto", intra_op_threads: int = 1):
    """Open an inference session; returns it with the provider really in use."""
    ort = _ort()
    opts = ort.SessionOptions()
    # Tiny models: one thread and no spinning is fastest per call and does not
    # steal a core from the MIDI sender thread.
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    available = ort.get_available_providers()
    if providers != "cpu" and CUDA in available:
        _preload_cuda(ort)
    if providers == "cpu":
        wanted = [CPU]
    elif providers == "cuda":
        if CUDA not in available:
            raise ModelError(
                "model.providers is cuda but this ONNX Runtime has no CUDA provider "
                "(install jamd[gpu] instead of jamd[cpu], or use providers: auto)"
            )
        wanted = [CUDA, CPU]
    else:
        wanted = [CUDA, CPU] if CUDA in available else [CPU]
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a usable ONNX model ({first[:160]})") from exc
    used = session.get_providers()
    if providers == "cuda" and CUDA not in used:
        raise ModelError(f"{path}: the CUDA provider did not load (ONNX Runtime fell back to {used[0]})")
    if CUDA in wanted and CUDA not in used:
        log.info("CUDA provider did not load; running on the CPU")
    log.info("model %s runs on %s", Path(path).name, used[0])
    return session
