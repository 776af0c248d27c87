"""The cycle artifacts and the champion registry where the settings keep them (``KOTONE_STATE_STORE``)."""

from __future__ import annotations

from pathlib import Path

from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.state_store import LocalStateStore, StateStore
from kotone_pipeline.settings import ConfigurationError, Settings, load_settings

REGISTRY_PREFIX = "registry"  # the registry's folder: under KOTONE_HOME, or in the state repo


def open_state_store(
    kind: str, root: Path, *, hf_repo: str = "", prefix: str = "", token: str | None = None, endpoint: str | None = None
) -> StateStore:
    """The store the settings name: ``local`` files under ``root``, or ``hf``: ``prefix`` in the repo ``hf_repo``."""
    if kind == "local":
        return LocalStateStore(root / prefix if prefix else root)
    if kind == "hf":
        if not hf_repo:
            raise ConfigurationError(
                "KOTONE_STATE_STORE=hf keeps cycle documents and the champion registry in a Hugging Face repo: "
                "set KOTONE_HF_STATE_REPO (e.g. my-org/kotone-state)"
            )
        from kotone_pipeline.services.hf_state_store import HfRepoStateStore  # huggingface_hub only when used

        return HfRepoStateStore(hf_repo, prefix=prefix, token=token, endpoint=endpoint)
    raise ValueError(f"unknown state store {kind!r}: use 'local' or 'hf'")


def cycle_artifacts(home: Path, settings: Settings | None = None) -> CycleArtifacts:
    settings = settings or load_settings()
    if settings.state_store == "local":
        return CycleArtifacts(home)
    store = open_state_store(
        settings.state_store,
        home,
        hf_repo=settings.hf_state_repo or "",
        token=settings.hf_token,
        endpoint=settings.hf_endpoint,
    )
    return CycleArtifacts(home, store)


def champion_registry(home: Path, settings: Settings | None = None) -> ChampionRegistry:
    settings = settings or load_settings()
    if settings.state_store == "local":
        return ChampionRegistry(CycleArtifacts(home).registry_dir)
    store = open_state_store(
        settings.state_store,
        home,
        hf_repo=settings.hf_state_repo or "",
        prefix=REGISTRY_PREFIX,
        token=settings.hf_token,
        endpoint=settings.hf_endpoint,
    )
    return ChampionRegistry(store)


def lexicon_store(home: Path, settings: Settings | None = None) -> LexiconStore:
    return LexiconStore.beside(cycle_artifacts(home, settings).store)
