"""HTTP serving of the current champion (``kotone serve``): a thin Starlette adapter over the predictor."""

from __future__ import annotations

from kotone_pipeline.serving.app import Coalescer, create_app
from kotone_pipeline.serving.champion_holder import ChampionHolder, Served

__all__ = ["ChampionHolder", "Coalescer", "Served", "create_app"]
