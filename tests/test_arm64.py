"""`jamd[cpu]` installs on 64-bit ARM Linux (a Raspberry Pi 4/5) from wheels alone.

The runtime dependencies are read from pyproject.toml (`[project] dependencies`
plus the `cpu` extra) and handed to `pip download --only-binary=:all:` for
CPython 3.11 on manylinux aarch64, the platform of Raspberry Pi OS / Debian
bookworm arm64. pip resolves the whole tree there; each file it picks must be a
wheel with a tag that such a machine accepts (`manylinux_2_x_aarch64` up to
glibc 2.28, or pure-Python `py3-none-any`). A package with no such wheel makes
pip fail with "No matching distribution found for NAME": the test names it,
since installing it on a Pi would mean compiling it from source.

Needs PyPI (marked `network`; skipped with the reason when PyPI cannot be
reached). Downloads go to a folder under the temp dir that is kept between
runs, so only the first run fetches the ~90 MB of wheels.
Running the installed result under QEMU is .ci/arm64_qemu.sh (docs/ARM64.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

pytestmark = [pytest.mark.network, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = (3, 11)
# pip expands manylinux_2_28 to every older manylinux_2_x; 2014 = 2_17
PIP_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64")
GLIBC_MINORS = range(28, 16, -1)
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
WHEEL_CACHE = Path(tempfile.gettempdir()) / "jamd-arm64-wheels"
# the target, for evaluating environment markers (pip would evaluate them on this machine)
TARGET_ENV = {
    **default_environment(),
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
}


def runtime_requirements(extra: str = "cpu") -> list[str]:
    """pyproject's dependencies plus `extra`, those whose markers hold on the target, markers dropped."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"]) + list(project["optional-dependencies"][extra])
    wanted = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(TARGET_ENV):
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        wanted.append(f"{req.name}{extras}{req.specifier}")
    return wanted


def target_tags() -> set[Tag]:
    """Every wheel tag pip accepts for CPython 3.11 on manylinux aarch64 (glibc <= 2.28)."""
    platforms = [f"manylinux_2_{minor}_aarch64" for minor in GLIBC_MINORS] + ["manylinux2014_aarch64"]
    tags = set(cpython_tags(PYTHON, abis=["cp311"], platforms=platforms))
    tags |= set(compatible_tags(PYTHON, interpreter="cp311", platforms=platforms))
    return tags


def pypi_unreachable() -> str | None:
    """Why the package index cannot be reached, or None when it answers."""
    try:
        with urllib.request.urlopen(INDEX.rstrip("/") + "/pip/", timeout=10) as reply:
            reply.read(1)
    except (urllib.error.URLError, OSError) as err:
        return f"{INDEX} cannot be reached ({err})"
    return None


def test_requirements_come_from_pyproject():
    names = {canonicalize_name(Requirement(r).name) for r in runtime_requirements()}
    # the cpu extra is included, the gpu one is not (it is also x86_64-only)
    assert "onnxruntime" in names and "onnxruntime-gpu" not in names
    assert {"mido", "numpy", "music21"} <= names


def test_target_tags_accept_aarch64_and_pure_python_only():
    tags = target_tags()
    for name in ("numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                 "protobuf-5.0-cp38-abi3-manylinux2014_aarch64.whl", "mido-1.3.3-py3-none-any.whl"):
        assert tags & set(parse_wheel_filename(name)[3]), name
    for name in ("numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "numpy-2.0.0-cp312-cp312-manylinux_2_17_aarch64.whl", "x-1.0-cp311-cp311-manylinux_2_34_aarch64.whl",
                 "x-1.0-cp311-cp311-musllinux_1_2_aarch64.whl"):
        assert not tags & set(parse_wheel_filename(name)[3]), name


def test_cpu_install_resolves_to_aarch64_wheels():
    reason = pypi_unreachable()
    if reason:
        pytest.skip(reason)
    requirements = runtime_requirements()
    WHEEL_CACHE.mkdir(exist_ok=True)
    platforms = [arg for p in PIP_PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off",
           "--only-binary=:all:", *platforms, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
           "--dest", str(WHEEL_CACHE), *requirements]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        missing = re.findall(r"No matching distribution found for (\S+)", run.stderr)
        if missing:
            pytest.fail(f"no linux aarch64 / cp311 wheel (a Pi would build from source): {', '.join(missing)}")
        pytest.fail(f"pip download failed ({run.returncode}):\n{run.stderr[-3000:]}")
    # this run's files ("Saved ..." or "File was already downloaded ..."), not older ones in the cache
    files = sorted({Path(p).name for p in re.findall(re.escape(str(WHEEL_CACHE)) + r"/(\S+)", run.stdout)})
    assert files, f"pip named no downloaded files:\n{run.stdout[-3000:]}"
    not_wheels = [f for f in files if not f.endswith(".whl")]
    assert not not_wheels, f"source distributions (would be built): {not_wheels}"
    tags = target_tags()
    wrong = [f for f in files if not tags & set(parse_wheel_filename(f)[3])]
    assert not wrong, f"wheels a linux aarch64 CPython 3.11 cannot install: {wrong}"
    resolved = {parse_wheel_filename(f)[0] for f in files}
    top = {canonicalize_name(Requirement(r).name) for r in requirements}
    assert top <= resolved, f"requirements with no file: {sorted(top - resolved)}"
