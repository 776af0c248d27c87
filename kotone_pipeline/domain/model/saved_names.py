"""Saved models name their classes by module path; models saved before the domain was split into trade
subpackages name them at the old flat paths (``kotone_pipeline.domain.source_model``). While such a file
loads, those paths answer with the modules' new homes, so an existing champion keeps loading."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Every module whose classes a saved local model holds (its parts, its correction, its lexicon), old -> new.
FLAT_TO_TRADE = {
    "source_model": "model",
    "local_model": "model",
    "correction": "model",
    "ridge": "model",
    "encoder": "model",
    "lexicon": "requests",
    "lexicon_reader": "requests",
    "schemas": "data",
    "dims": "data",
}


@contextmanager
def flat_module_names() -> Iterator[None]:
    """The old flat module paths, for the duration of one load (nothing is left behind afterwards)."""
    added = []
    for name, trade in FLAT_TO_TRADE.items():
        old = f"kotone_pipeline.domain.{name}"
        if old not in sys.modules:
            sys.modules[old] = importlib.import_module(f"kotone_pipeline.domain.{trade}.{name}")
            added.append(old)
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)
