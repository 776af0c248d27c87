"""Shared CLI plumbing: bad input ends a command with one clear message and a non-zero exit code."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

import typer
from rich.console import Console

from kotone_pipeline.domain.data.jsonl import DataFileError
from kotone_pipeline.domain.model.encoder import EncoderError

P = ParamSpec("P")
R = TypeVar("R")

# One width policy for everything the CLI prints. On a terminal: the terminal's width (tables fold their text
# cells to fit). Piped to a file or another program: PIPED_WIDTH for progress lines and tables alike, where
# rich would assume 80 columns and wrap a long progress line while a table needed more (COLUMNS overrides).
PIPED_WIDTH = 200


def output_width(stream: IO[str]) -> int | None:
    """The width to print ``stream`` at: None (the terminal's own, as rich measures it) or PIPED_WIDTH."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):  # a closed or unusual stream
        pass
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


# Results go to stdout; progress and status lines to stderr, so machine-readable stdout stays clean.
console = Console(width=output_width(sys.stdout))
status_console = Console(stderr=True, width=output_width(sys.stderr))

EXIT_BAD_INPUT = 2
MAX_MESSAGE_LINES = 20
INTERRUPTED = "interrupted: nothing is lost; run the same command again to continue where it stopped"


def capped(problems: list[str], report: object | None = None, limit: int = MAX_MESSAGE_LINES) -> list[str]:
    """At most ``limit`` problem lines, then one line with the count (and where the full list is)."""
    if len(problems) <= limit:
        return problems
    where = f"; all of them in {report}" if report is not None else ""
    return [*problems[:limit], f"... and {len(problems) - limit} more{where}"]


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` to stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


EXIT_NO_HOME = 1


def require_home(what: str) -> Path:
    """The Kotone home a command that only reads needs: it must exist, since such a command never creates
    one (a mistyped KOTONE_HOME would otherwise leave a new empty home behind and show "no cycles yet")."""
    from kotone_pipeline.services.home import DEFAULT_HOME, HOME_ENV, kotone_home
    from kotone_pipeline.settings import load_settings

    home = kotone_home(create=False)
    if not home.is_dir():
        origin = f"set by {HOME_ENV}" if load_settings().home else f"the default ./{DEFAULT_HOME}; {HOME_ENV} is unset"
        raise fail(
            f"no Kotone home at {home} ({origin}): point {HOME_ENV} at the home {what}, or run `kotone demo` "
            "to make one",
            code=EXIT_NO_HOME,
        )
    return home


def check_scale(value: int | None) -> int | None:
    """Typer callback for ``--scale``: only 10 and 100 exist."""
    if value is not None and value not in (10, 100):
        raise typer.BadParameter(f"must be 10 or 100, got {value}")
    return value


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so user errors print as one message (a data file's bad lines each on a line).

    "User errors" are the input being wrong: ValueError (DataFileError, ModelLoadError, LexiconError,
    pydantic's ValidationError, bad arguments), OSError and EncoderError (a missing or corrupt encoder
    file: the message says how to reinstall). Anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DataFileError as exc:
            raise fail(str(exc)) from None
        except FileNotFoundError as exc:
            raise fail(f"{exc.filename}: not found") from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except (ValueError, EncoderError) as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            typer.echo(INTERRUPTED, err=True)
            sys.exit(130)
        except Exception as exc:
            # Ctrl-C inside a Dagster run surfaces as Dagster's interruption error, not KeyboardInterrupt.
            if type(exc).__name__ == "DagsterExecutionInterruptedError":
                typer.echo(INTERRUPTED, err=True)
                sys.exit(130)
            raise

    return wrapper
