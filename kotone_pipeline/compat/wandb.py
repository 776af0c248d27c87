"""wandb internals the project uses (wandb 0.29, pinned with dagster-wandb):

- ``WandbApiFailedError``: what the W&B public API raises when its service connection fails; the
  hard-dims fetch treats it as "W&B unreachable". Imported when asked for: wandb is slow to import.
"""

from kotone_pipeline.compat import moved


def wandb_api_failed_error() -> type[Exception]:
    try:
        from wandb.sdk.lib.service.service_connection import WandbApiFailedError
    except ImportError as exc:  # pragma: no cover - only on an unsupported wandb version
        raise moved("wandb", "0.29.0", "WandbApiFailedError", exc) from exc
    return WandbApiFailedError


__all__ = ["wandb_api_failed_error"]
