"""`jamd export` and `jamd train` answer a bad argument before TensorFlow loads (seconds saved)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jamd.commands.export import parse_bar_repeat
from jamd.errors import UsageError

PROBE = """
import sys
from jamd.cli import main
code = main({argv!r})
print("exit", code, "tensorflow" in sys.modules)
"""


def run_cli(argv: list[str]) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          timeout=120)
    return done.stdout.strip().splitlines()[-1], done.stderr


def lstm_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text(json.dumps({"vocabulary": ["/", "r", "_", "60"]}))
    return run


@pytest.mark.parametrize("argv, line", [
    (["export", "RUN", "--out", "OUT", "--bar-repeat", '{"chance": 2}'],
     "jamd: --bar-repeat: bar_repeat.chance is 2; it must be a number 0-1"),
    (["export", "RUN", "--out", "OUT", "--bar-repeat", '{"chance": true}'],
     "jamd: --bar-repeat: bar_repeat.chance is true; it must be a number 0-1"),
    (["export", "RUN", "--out", "OUT", "--selection", '{"candidates": 8}'],
     "jamd: --selection: for GAN runs; an LSTM run repeats bars with --bar-repeat"),
    (["train", "--task", "chief:0"], "jamd: --task 'chief:0' needs a cluster: --cluster or training.cluster"),
    (["train", "--cluster", "chief=h:2222", "--task", "worker:0"],
     "jamd: --task 'worker:0': the cluster has 0 worker task(s) (none)"),
    (["train", "--set", "training.cluster=chief=h:2222"],
     "jamd: training.cluster needs --task: which of its tasks this machine is (e.g. --task worker:0)"),
])
def test_a_bad_argument_is_refused_before_tensorflow_loads(tmp_path, argv, line):
    argv = [str(lstm_run(tmp_path)) if a == "RUN" else str(tmp_path / "m.onnx") if a == "OUT" else a for a in argv]
    last, err = run_cli(argv)
    assert last == "exit 2 False", err
    assert [x for x in err.splitlines() if x.startswith("jamd: ")] == [line]


def test_bar_repeat_null_stores_nothing_and_an_object_is_kept():
    assert parse_bar_repeat("null") is None
    assert parse_bar_repeat(None) is None
    assert parse_bar_repeat("{}") == {}
    assert parse_bar_repeat('{"chance": 0.2}') == {"chance": 0.2}
    with pytest.raises(UsageError, match=r"^--bar-repeat: bar_repeat is \[1\]; it must be an object"):
        parse_bar_repeat("[1]")
    with pytest.raises(UsageError, match=r"^--bar-repeat: bar_repeat.min_logp is NaN; it must be a number <= 0$"):
        parse_bar_repeat('{"min_logp": NaN}')
