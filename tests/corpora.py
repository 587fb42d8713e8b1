"""Small real corpora for the training tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def erk5_folder(tmp: Path) -> list[str]:
    """music21's essenFolksong/erk5.abc (27 real tunes) copied into a folder corpus under `tmp`;
    returns the `--set` overrides that train on it, with its cache under `tmp` too."""
    import music21

    src = tmp / "tunes"
    src.mkdir()
    shutil.copy(music21.corpus.getWork("essenFolksong/erk5.abc"), src / "erk5.abc")
    return [f"corpus.source={src}", f"corpus.cache_dir={tmp / 'cache'}"]
