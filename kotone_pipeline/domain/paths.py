"""Where the committed data lives (catalog, generation parameters, frozen eval sets)."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "KOTONE_DATA_DIR"


def data_dir() -> Path:
    """``$KOTONE_DATA_DIR`` when set, else the repository's ``data/`` folder."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "data"
