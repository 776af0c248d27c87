"""Where the domain's files live: the committed data, the encoder to run and the embedding cache's folder.

The domain reads no environment. ``Places`` is handed in from above: ``kotone_pipeline/settings.py`` installs
a provider that answers from ``Settings`` (``install_places``, run when the package is imported), and
callers may pass folders explicitly wherever a function takes one. Without a provider (the domain used on
its own) the defaults below hold: the repository's ``data/`` and a ``./.kotone`` home.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The state root when KOTONE_HOME is unset (written once: settings and services/home.py read it here).
DEFAULT_HOME = ".kotone"
REPOSITORY_DATA_DIR = Path(__file__).resolve().parents[3] / "data"


def _default_home() -> Path:
    return Path(DEFAULT_HOME).absolute()


@dataclass(frozen=True)
class Places:
    """The folders and options the domain is given (``Settings`` fills them: see ``places_from_settings``)."""

    data_dir: Path = REPOSITORY_DATA_DIR
    # KOTONE_ENCODER: "default", a local folder, or a Hugging Face repo "org/name[@revision]".
    encoder: str = "default"
    # KOTONE_ENCODER_SHA256: pins a folder's or repo's model file (lower case); None: the sha256 seen first.
    encoder_sha256: str | None = None
    # One SQLite file per encoder key (KOTONE_EMBEDDING_CACHE, else <home>/cache/embeddings).
    embeddings_dir: Path = field(default_factory=lambda: _default_home() / "cache" / "embeddings")
    # Encoder repos downloaded from the Hub (<home>/cache/encoders).
    encoders_dir: Path = field(default_factory=lambda: _default_home() / "cache" / "encoders")
    # HF_ENDPOINT, read per call: huggingface_hub reads it once at import.
    hf_endpoint: str | None = None


_provider: Callable[[], Places] | None = None


def install_places(provider: Callable[[], Places] | None) -> None:
    """Hand the domain where things are (called by the settings layer; ``None`` restores the defaults)."""
    global _provider
    _provider = provider


def places() -> Places:
    """The current places, asked of the provider on every call so a changed setting is seen at once."""
    return _provider() if _provider is not None else Places()


def data_dir() -> Path:
    """The committed data folder: ``KOTONE_DATA_DIR`` as the settings give it, else the repository's ``data/``."""
    return places().data_dir
