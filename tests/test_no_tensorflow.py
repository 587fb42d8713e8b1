"""The daemon must install and run without TensorFlow: import all of it with TF blocked."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import importlib, pkgutil, sys

class Block:
    BLOCKED = ("tensorflow", "keras", "tf2onnx", "tf_keras")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
import jamd
imported = []
for mod in pkgutil.walk_packages(jamd.__path__, "jamd."):
    # jamd.training / jamd.export are the offline side and may use TensorFlow
    if mod.name.startswith(("jamd.training", "jamd.export", "jamd.models")):
        continue
    importlib.import_module(mod.name)
    imported.append(mod.name)
assert not any(m.split(".")[0] in Block.BLOCKED for m in sys.modules), "TensorFlow got imported"
print(len(imported), " ".join(imported))
"""


def test_daemon_imports_without_tensorflow():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, names = out.stdout.split(" ", 1)
    assert int(count) >= 10, names
    assert "jamd.cli" in names and "jamd.inference.lstm" in names and "jamd.commands.generate" in names
    assert "jamd.live.engine" in names and "jamd.sync.follow_midi" in names and "jamd.bench.realtime" in names
