"""The cycle artifacts, the champion registry and the lexicon where the settings keep them
(``KOTONE_STATE_STORE``): the one place that turns a ``StatePlace`` into stores, for the resources and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline.services.state_store import LocalStateStore, StateStore
from kotone_pipeline.settings import ConfigurationError, Settings, load_settings

REGISTRY_PREFIX = "registry"  # the registry's folder: under KOTONE_HOME, or in the state repo


@dataclass(frozen=True)
class StatePlace:
    """Where the loop's shared state lives: ``local`` files under KOTONE_HOME, or the HF repo ``hf_repo``."""

    kind: str = "local"
    hf_repo: str = ""
    token: str | None = None
    endpoint: str | None = None

    @classmethod
    def of(cls, settings: Settings | None = None) -> StatePlace:
        settings = settings or load_settings()
        return cls(settings.state_store, settings.hf_state_repo or "", settings.hf_token, settings.hf_endpoint)

    def store(self, home: Path, prefix: str = "") -> StateStore:
        """The store: files under ``home`` (``prefix`` below it), or ``prefix`` in the state repo."""
        if self.kind == "local":
            return LocalStateStore(home / prefix if prefix else home)
        if self.kind == "hf":
            if not self.hf_repo:
                raise ConfigurationError(
                    "KOTONE_STATE_STORE=hf keeps cycle documents and the champion registry in a Hugging Face repo: "
                    "set KOTONE_HF_STATE_REPO (e.g. my-org/kotone-state)"
                )
            from kotone_pipeline.services.hf_state_store import HfRepoStateStore  # huggingface_hub only when used

            return HfRepoStateStore(self.hf_repo, prefix=prefix, token=self.token, endpoint=self.endpoint)
        raise ValueError(f"unknown state store {self.kind!r}: use 'local' or 'hf'")


def cycle_artifacts(home: Path, place: StatePlace | None = None) -> CycleArtifacts:
    place = place or StatePlace.of()
    return CycleArtifacts(home) if place.kind == "local" else CycleArtifacts(home, place.store(home))


def champion_registry(home: Path, place: StatePlace | None = None) -> ChampionRegistry:
    place = place or StatePlace.of()
    if place.kind == "local":  # built from its folder, so every local registry takes the same lock file
        return ChampionRegistry(CycleArtifacts(home).registry_dir)
    return ChampionRegistry(place.store(home, REGISTRY_PREFIX))


def lexicon_store(home: Path, place: StatePlace | None = None) -> LexiconStore:
    return LexiconStore.beside(cycle_artifacts(home, place).store)
