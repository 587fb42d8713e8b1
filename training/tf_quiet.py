"""TensorFlow's start-up chatter, silenced unless ``--log-level debug``.

On import, TensorFlow prints lines that mean nothing to a user: oneDNN
notices, "Could not find cuda drivers" and, on a machine without a GPU,
``failed call to cuInit`` errors (absl's C++ logging writes these straight
to file descriptor 2, before `TF_CPP_MIN_LOG_LEVEL` is read by it, and
``WARNING: All log messages before absl::InitializeLog()`` with them).
`quiet_tensorflow` sets `TF_CPP_MIN_LOG_LEVEL` 3 (errors from later C++
code), imports TensorFlow and Keras with descriptor 2 sent to a buffer that
is replayed only if the import fails, and turns absl's and TensorFlow's
Python loggers down to errors.  With debug, everything is left as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[None]:
    """Send file descriptor 2 to a temp file for the block; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            buf.seek(0)
            sys.stderr.write(buf.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow(debug: bool, import_now: bool = True) -> None:
    """Silence TensorFlow's start-up noise unless `debug`; with `import_now`, import it (and
    Keras) here, muted, so later imports find it loaded.  Call before TensorFlow's first import."""
    if debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if import_now and "tensorflow" not in sys.modules:
        with captured_stderr_fd():
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe (cuInit) happens here
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    for name in ("tensorflow", "absl", "tf2onnx", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def debugging() -> bool:
    """Whether jamd runs at ``--log-level debug`` (the root logger's level, as the CLI set it)."""
    return logging.getLogger().getEffectiveLevel() <= logging.DEBUG
