"""What the CLI tests share: run `jamd` in process or Python in a fresh one, and check that an
error is one line."""

from __future__ import annotations

import subprocess
import sys

from jamd.cli import main


def run_cli(capsys, *argv):
    """`jamd ARGV...` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line(err: str, *fragments: str) -> None:
    """Exactly one "jamd: " line on stderr, holding every fragment, and no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("jamd: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def run_python(code: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (what it imports at start is then its own); it must exit 0."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r
