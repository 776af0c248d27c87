"""Helpers for bulk work over many small objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk allocation; restore its previous state.

    Rows are plain dicts/models without reference cycles; with a million of them alive, the GC's
    full collections cost more than the work itself (measured: 40% of a teacher run at 100k groups).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
