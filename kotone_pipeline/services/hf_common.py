"""What every Hugging Face client of this project shares (docs/design.md § External services): endpoint and
token, the retry policy for reads, request timeouts, and secret redaction."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
import tenacity
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_token, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from kotone_pipeline.compat import huggingface as hf_http
from kotone_pipeline.settings import load_settings

DEFAULT_ENDPOINT = "https://huggingface.co"
# The training script is published in each cycle's dataset commit at this path; jobs run it from its
# pinned ``resolve/<sha>/`` URL, so a run can always be traced back to the exact script it ran.
TRAINING_SCRIPT_PATH_IN_REPO = "scripts/train_lora.py"
SECRET_ENV_NAMES = ("HF_TOKEN", "WANDB_API_KEY")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDACTED = "***"


def resolve_endpoint(endpoint: str | None = None) -> str:
    """Explicit endpoint, else ``HF_ENDPOINT``, else the public Hub (no trailing slash)."""
    return (endpoint or load_settings().hf_endpoint or hf_constants.ENDPOINT or DEFAULT_ENDPOINT).rstrip("/")


def resolve_token(token: str | None = None) -> str | None:
    """Explicit token, else ``HF_TOKEN`` / the saved login (``huggingface_hub.get_token``)."""
    return token or get_token()


def is_default_endpoint(endpoint: str) -> bool:
    return endpoint.rstrip("/") == DEFAULT_ENDPOINT


# --- errors and retries -----------------------------------------------------------------------------------


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


def is_transient(exc: BaseException) -> bool:
    """408/429/5xx answers, connection errors and timeouts: a later attempt may succeed."""
    status = http_status(exc)
    if status is not None:
        return status in RETRYABLE_STATUS or status >= 500
    if isinstance(exc, LocalEntryNotFoundError):
        return True  # hf_hub_download's answer to a connection error or timeout when nothing is cached
    return isinstance(
        exc,
        httpx2.TimeoutException | httpx2.NetworkError | httpx2.RemoteProtocolError | ConnectionError | TimeoutError,
    )


def is_ambiguous(exc: BaseException) -> bool:
    """After such a failure a write may or may not have happened (5xx, timeouts, dropped connections)."""
    status = http_status(exc)
    if status is not None:
        return status == 408 or status >= 500
    return is_transient(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for reads (docs/design.md § External services); writes are
    never retried blindly."""

    attempts: int = 4
    initial_wait_s: float = 0.5
    max_wait_s: float = 8.0
    jitter_s: float = 0.5
    request_timeout_s: float = 30.0

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=self.initial_wait_s, max=self.max_wait_s)
            + tenacity.wait_random(0, self.jitter_s),
            retry=tenacity.retry_if_exception(is_transient),
            reraise=True,
        )

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` retried on transient errors; the last error is re-raised."""
        return self.retrying()(fn, *args, **kwargs)


# --- request timeouts -------------------------------------------------------------------------------------

_timeout_lock = threading.Lock()


def install_request_timeout(seconds: float) -> None:
    """Give huggingface_hub's shared HTTP client a timeout.

    Its default client has none, and several calls (job creation, inspect, cancel) take no timeout argument:
    a silent server would block a sensor tick forever. Process-wide; a factory installed by someone else is
    left alone.
    """
    with _timeout_lock:
        current = hf_http.current_client_factory()
        ours = getattr(current, "_kotone_timeout_s", None)
        if current is not hf_http.default_client_factory and ours is None:
            return
        if ours == seconds:
            return

        def factory() -> httpx2.Client:
            return httpx2.Client(
                event_hooks={"request": [hf_http.hf_request_event_hook]},
                follow_redirects=True,
                timeout=httpx2.Timeout(seconds, connect=min(seconds, 10.0)),
            )

        factory._kotone_timeout_s = seconds  # type: ignore[attr-defined]
        set_client_factory(factory)


# --- secrets ----------------------------------------------------------------------------------------------


class Redactor:
    """Replaces known secret values in any text that may reach a log, a message, metadata or a file."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        # Very short values would redact ordinary words; real tokens are long.
        if secret and len(secret) >= 6:
            self._secrets.add(secret)

    def __call__(self, text: Any) -> str:
        out = str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, REDACTED)
        return out


def env_secrets(env: dict[str, str] | None = None) -> dict[str, str]:
    """The secret variables (HF_TOKEN, WANDB_API_KEY) that are set and non-empty."""
    source = os.environ if env is None else env
    return {name: source[name] for name in SECRET_ENV_NAMES if source.get(name)}


def describe_error(exc: BaseException, redact: Redactor, limit: int = 400) -> str:
    """A one-paragraph, secret-free description of an error (HTTP status first when there is one)."""
    status = http_status(exc)
    text = " ".join(redact(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    head = f"HTTP {status}" if status is not None else type(exc).__name__
    return f"{head}: {text}" if text else head
