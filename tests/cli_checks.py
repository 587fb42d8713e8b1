"""What the CLI tests share: run `jamd` in process, and check that an error is one line."""

from __future__ import annotations

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
