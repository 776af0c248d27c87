"""huggingface_hub internals the project uses (huggingface_hub 2.x):

- ``DEFAULT_UV_IMAGE``: the image ``run_uv_job`` uses by default, so a re-submitted job runs the same one;
- the HTTP client factory (``_http``): the project installs its own client (timeouts) and must not replace
  one another library installed; the factory variable has no public getter.
"""

from typing import Any

from kotone_pipeline.compat import moved

try:
    from huggingface_hub._jobs_api import DEFAULT_UV_IMAGE
    from huggingface_hub.utils import _http as hf_http
except ImportError as exc:  # pragma: no cover - only on an unsupported huggingface_hub version
    raise moved("huggingface_hub", "2.x", "DEFAULT_UV_IMAGE or utils._http", exc) from exc

default_client_factory = hf_http.default_client_factory
hf_request_event_hook = hf_http.hf_request_event_hook


def current_client_factory() -> Any:
    """The client factory huggingface_hub uses now (ours, the default, or another library's)."""
    return hf_http._GLOBAL_CLIENT_FACTORY


__all__ = ["DEFAULT_UV_IMAGE", "current_client_factory", "default_client_factory", "hf_request_event_hook"]
