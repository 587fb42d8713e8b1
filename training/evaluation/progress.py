"""tqdm progress bars for the long loops of `jamd eval`, off in tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, unit: str, enabled: bool) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm import tqdm

    # leave=False: the bars disappear once done and only the summary remains
    return tqdm(items, desc=desc, unit=unit, leave=False)
