"""The ``kotone`` command line: headless use of the pipeline (docs/design.md § Commands).

Each command module exposes ``register(app)``, which adds its commands or sub-app. To add a module,
import it and list it in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import sys

import typer

from kotone_pipeline.cli import champion, cycle, data, dev, lexicon, model, predict, report, review, serve
from kotone_pipeline.cli._common import EXIT_BAD_INPUT
from kotone_pipeline.settings import ConfigurationError, load_settings

# Order is the order of ``kotone --help``.
COMMAND_MODULES = (data, model, predict, serve, review, cycle, champion, dev, report, lexicon)

app = typer.Typer(
    name="kotone",
    help="Kotone pipeline: data, local models and self-improvement cycles.",
    no_args_is_help=True,
    add_completion=False,
    # Locals can hold tokens; never print them in a traceback.
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _check_configuration(ctx: typer.Context) -> None:
    """Every command starts by validating all KOTONE_*, HF_*, WANDB_* settings: a bad one stops it here,
    naming the variable, instead of failing mid-cycle."""
    # Help needs no configuration (click has already handed the subcommand's arguments on: read argv).
    if ctx.resilient_parsing or "--help" in sys.argv[1:]:
        return
    try:
        load_settings()
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point (``kotone``)."""
    app()
