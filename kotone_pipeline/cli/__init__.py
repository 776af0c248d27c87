"""The ``kotone`` command line: headless use of the pipeline (DESIGN §7).

Each command module exposes ``register(app)``, which adds its commands or sub-app. To add a module,
import it and list it in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import typer

from kotone_pipeline.cli import cycle, data, dev, model, predict, report, serve

# Order is the order of ``kotone --help``.
COMMAND_MODULES = (data, model, predict, serve, cycle, dev, report)

app = typer.Typer(
    name="kotone",
    help="Kotone pipeline: data, local models and self-improvement cycles.",
    no_args_is_help=True,
    add_completion=False,
    # Locals can hold tokens; never print them in a traceback.
    pretty_exceptions_show_locals=False,
)

for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point (``kotone``)."""
    app()
