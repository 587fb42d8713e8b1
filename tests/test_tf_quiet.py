"""TensorFlow's start-up noise (oneDNN, CUDA probes on CPU-only machines, absl) is silenced
unless --log-level debug (issue 13 section 9).  Each case runs in a fresh interpreter: the
noise comes once, at TensorFlow's first import, from C++ straight to file descriptor 2."""

from __future__ import annotations

import pytest
from cli_checks import run_python

pytestmark = [pytest.mark.train, pytest.mark.slow]

NOISE = ("oneDNN", "cuda", "cuInit", "absl::InitializeLog", "cpu_feature_guard", "rebuild TensorFlow")


def test_tensorflow_imported_through_jamd_says_nothing_unless_debugging():
    plain = run_python("import tensorflow").stderr
    quiet = run_python("from jamd.training.tf_quiet import quiet_tensorflow; quiet_tensorflow(False); "
                    "import tensorflow as tf; tf.constant(1.0) + 1").stderr
    debug = run_python("from jamd.training.tf_quiet import quiet_tensorflow; quiet_tensorflow(True); "
                    "import tensorflow").stderr
    # the check can fail: on this kind of machine plain TensorFlow does speak at import
    if not any(word in plain for word in NOISE):
        pytest.skip(f"TensorFlow printed nothing at import here: {plain[:200]!r}")
    assert not any(word in quiet for word in NOISE), quiet
    assert any(word in debug for word in NOISE), debug
