"""HTTP serving of the current champion (``kotone serve``): a thin Starlette adapter over the predictor."""

from __future__ import annotations

from kotone_pipeline.serving.app import ChampionHolder, Coalescer, Served, create_app

__all__ = ["ChampionHolder", "Coalescer", "Served", "create_app"]
