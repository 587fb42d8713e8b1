"""The package's shape (issue 12): subpackages that import only downward, the
contracts alone at the top of daemon/, and no module over 400 lines."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAEMON = ROOT / "daemon"

# Lower layers never import higher ones; a layer may import itself and below.
LAYERS = {
    "errors": 0, "config": 1, "tokens": 1,  # the contracts
    "midi": 2, "music": 2,
    "inference": 3,  # the harmony model reads the chord vocabulary of music
    "sync": 3,  # the sender writes to midi outputs
    "live": 4,
    "bench": 5, "commands": 5,
    "cli": 6,
}
CONTRACTS = {"__init__.py", "cli.py", "errors.py", "tokens.py"}  # and config/, a package of its own


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute jamd.* name) of every import in `path`, function-level ones included."""
    rel = path.relative_to(DAEMON).with_suffix("")
    package = ["jamd", *rel.parts[:-1]]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:  # from . import a, b
                    names = [f"{names[0]}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, n) for line, n in found if n == "jamd" or n.startswith("jamd.")]


def _layer(name: str) -> str | None:
    """The layer of `jamd.x.y`: its first part under jamd (None: training/export/models/the package)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _modules() -> list[Path]:
    return sorted(p for p in DAEMON.rglob("*.py") if "__pycache__" not in p.parts)


def test_subpackages_import_only_downward():
    wrong = []
    for path in _modules():
        rel = path.relative_to(DAEMON)
        here = rel.parts[0].removesuffix(".py")
        if here == "__init__":
            continue
        assert here in LAYERS, f"{rel}: a new top-level name needs a layer in this test"
        for line, name in _imports(path):
            there = _layer(name)
            if there is not None and there != here and LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{rel}:{line} imports {name} ({here} is layer {LAYERS[here]}, "
                             f"{there} is {LAYERS[there]})")
    assert not wrong, "\n".join(wrong)


def test_the_top_of_daemon_holds_only_the_contracts_and_subpackages():
    files = {p.name for p in DAEMON.glob("*.py")}
    assert files == CONTRACTS
    folders = {p.name for p in DAEMON.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {"bench", "commands", "config", "inference", "live", "midi", "music", "sync"}
    assert all((DAEMON / f / "__init__.py").exists() for f in folders)
    assert not [p for p in _modules() if p.name.startswith("bench_")], "bench modules belong in daemon/bench/"


@pytest.mark.parametrize("top", ["daemon", "training", "export"])
def test_no_module_over_400_lines(top):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / top).rglob("*.py")
            if "__pycache__" not in p.parts and (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"split these by what they hold: {long}"


def test_the_layer_check_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    """The check itself: an upward import written relatively, inside a function, is found."""
    fake = tmp_path / "daemon"
    (fake / "midi").mkdir(parents=True)
    (fake / "midi" / "bad.py").write_text("def f():\n    from ..live.engine import Engine\n")
    monkeypatch.setattr(sys.modules[__name__], "DAEMON", fake)
    assert _imports(fake / "midi" / "bad.py") == [(2, "jamd.live.engine")]
    with pytest.raises(AssertionError, match="bad.py:2 imports jamd.live.engine"):
        test_subpackages_import_only_downward()
