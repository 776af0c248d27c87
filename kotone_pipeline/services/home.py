"""Where the embedded (local) world keeps its state: ``$KOTONE_HOME``, default ``./.kotone``.

Layout::

    $KOTONE_HOME/
      cycles/<cycle_id>/   per-cycle working files
      jobs/<job_id>/       local training jobs (LocalJobBackend)
      datasets/<name>/<version>/   published dataset versions (LocalDatasetStore)
      registry/            champion.json + champion_history.jsonl (ChampionRegistry)
"""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.domain.data.paths import DEFAULT_HOME
from kotone_pipeline.settings import load_settings

HOME_ENV = "KOTONE_HOME"
__all__ = ["DEFAULT_HOME", "HOME_ENV", "kotone_home"]


def kotone_home(create: bool = True) -> Path:
    """The state root, read from the environment on every call so tests and CLIs can redirect it."""
    home = load_settings().home_path
    if create:
        home.mkdir(parents=True, exist_ok=True)
    return home
