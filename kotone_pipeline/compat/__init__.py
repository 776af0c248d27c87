"""The one door to libraries' private modules: each module here re-exports what the project needs from one
library's internals, so a library upgrade that moves them fails in one place, with one message naming the
pinned version and what moved. Nothing else in ``kotone_pipeline`` imports ``dagster._*``,
``huggingface_hub._*`` or ``wandb.sdk.*`` (a test checks it)."""


class CompatError(ImportError):
    """A private name this project relies on is gone from the installed library."""


def moved(library: str, pinned: str, what: str, exc: Exception) -> CompatError:
    return CompatError(
        f"{library} no longer provides {what} ({type(exc).__name__}: {exc}); this project is tested with "
        f"{library} {pinned} (constraints.txt): install that version, or update kotone_pipeline/compat/"
    )
