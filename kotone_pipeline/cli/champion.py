"""``kotone champion history|rollback``: every change of champion, and making an earlier champion current again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from kotone_pipeline.cli._common import console, fail, handle_errors, require_home, status_console

if TYPE_CHECKING:
    from kotone_pipeline.services.champion import Champion, ChampionRegistry

# Nothing to read (no Kotone home) or the champion changed under the rollback: not bad input (2), but failed.
EXIT_NOTHING = 1

app = typer.Typer(
    help="The champion registry: every promotion and rollback, and rolling back to an earlier champion.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="champion")


def _home() -> Path:
    """The Kotone home, which must exist: these commands never create one (nor a Dagster instance)."""
    return require_home("whose champions to show")


def _registry(home: Path) -> ChampionRegistry:
    from kotone_pipeline.services.state_places import champion_registry

    return champion_registry(home)


def _kind(entry: Champion) -> str:
    return "rollback" if entry.rollback else ("forced" if entry.forced else "promotion")


def _when(at: str) -> str:
    return at.replace("T", " ").removesuffix("+00:00") + ("Z" if at.endswith("+00:00") else "")


def _mae(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def history_rows(registry: ChampionRegistry) -> tuple[Champion | None, list[dict[str, Any]]]:
    """The current champion and every history entry, newest first, with its kind, what it replaced and
    whether it is the current champion's decision."""
    from kotone_pipeline.services.champion import replaced_ids

    history = registry.history()
    current = registry.current()
    rows = []
    for entry, replaced in zip(history, replaced_ids(history), strict=True):
        row = entry.model_dump(mode="json")
        row.update(
            kind=_kind(entry),
            replaced=replaced,
            current=current is not None and entry.decision_id == current.decision_id,
        )
        rows.append(row)
    return current, rows[::-1]


def history_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title=f"Champion history ({len(rows)} change(s), newest first; vector MAE on the 0..10 scale, lower is better)"
    )
    for column, justify in (
        ("when (UTC)", "left"),
        ("decision", "left"),
        ("kind", "left"),
        ("champion", "left"),
        ("replaced", "left"),
        ("holdout MAE", "right"),
        ("human MAE", "right"),
        ("reason", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            _when(row["promoted_at"]),
            row["decision_id"] or "-",
            row["kind"],
            row["model_id"] + (" (current)" if row["current"] else ""),
            row["replaced"] or "-",
            _mae(row["holdout_mae"]),
            _mae(row["human_mae"]),
            row["decision_reason"],
            style="bold" if row["current"] else None,
        )
    return table


@app.command("history")
@handle_errors
def history(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
) -> None:
    """Every promotion (forced or not) and every rollback, newest first, with its reasons and scores.

    Only reads the registry: it creates no Kotone home and no Dagster instance."""
    registry = _registry(_home())
    current, rows = history_rows(registry)
    if as_json:
        payload = {
            "registry": registry.where(),
            "current": current.model_id if current else None,
            "entries": rows,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if not rows:
        status_console.print(f"no promotion yet (registry {registry.where()})", highlight=False)
        return
    # Wide enough for the reasons even when stdout is not a terminal (rich assumes 80 columns there).
    console.print(history_table(rows))


def _check_model_files(target: Champion) -> None:
    """A local champion's model directory must still be there (a deleted cycle moves it aside)."""
    from kotone_pipeline.services.champion import RollbackRefusedError

    path = Path(target.model_uri)
    if path.is_absolute() and not path.exists():
        raise RollbackRefusedError(
            f"{target.model_id}: its model is gone from {target.model_uri} (was its cycle deleted?); "
            "roll back to another champion with --to"
        )


def _tell_dagster(home: Path, entry: Champion) -> str:
    """Report the rollback to the Dagster instance, when there is one; a line saying what happened."""
    from kotone_pipeline.orchestration.champion_events import instance_dir, report_rollback

    where = instance_dir(home)
    if not where.is_dir():
        return f"no Dagster instance at {where}: the rollback is in the registry only"
    from kotone_pipeline.orchestration.runner import open_instance

    try:
        with open_instance(home) as instance:
            report_rollback(instance, entry)
    except Exception as exc:  # the decision stands: the registry is the record, the UI only shows it
        return f"warning: the rollback is recorded, but the Dagster instance at {where} was not told: {exc}"
    return f"reported to the Dagster UI as an observation of promotion_decision (instance {where})"


@app.command("rollback")
@handle_errors
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="Why: recorded with the decision (required).")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="The model id to make champion again (default: the one the current replaced)."),
    ] = None,
    decision_id: Annotated[
        str | None,
        typer.Option("--decision-id", help="Name the decision (default rollback/<n>); a repeated id is a no-op."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of lines.")] = False,
) -> None:
    """Make an earlier champion current again: a recorded decision, like a forced promotion.

    It goes in the registry history (kind rollback, with the reason and the model it replaced), the workflow
    log and the Dagster UI; `kotone serve` swaps to it as it does on a promotion, and the next cycle's gate
    compares against it."""
    from kotone_pipeline.services.champion import ChampionChangedError, rollback_reason

    reason = rollback_reason(reason)  # an empty reason is refused before anything is read
    home = _home()
    registry = _registry(home)
    before = registry.current()
    try:
        result = registry.rollback(
            reason,
            to=to,
            decision_id=decision_id,
            expected_current=before.model_id if before else None,
            check=_check_model_files,
        )
    except ChampionChangedError as exc:
        raise fail(str(exc), code=EXIT_NOTHING) from None
    entry = result.entry
    dagster = _tell_dagster(home, entry) if result.applied else "already applied: nothing changed"
    if as_json:
        payload = {"applied": result.applied, "entry": entry.model_dump(mode="json"), "dagster": dagster}
        typer.echo(json.dumps(payload, indent=2))
        return
    if not result.applied:
        was = entry.replaced or "-"
        typer.echo(f"{entry.decision_id} was already applied ({was} -> {entry.model_id}); nothing changed")
        return
    typer.echo(f"rolled back to {entry.model_id} (was {entry.replaced}); decision {entry.decision_id}")
    typer.echo(
        f"  scores it was promoted with: holdout MAE {_mae(entry.holdout_mae)}, human MAE {_mae(entry.human_mae)}"
    )
    typer.echo(f"  reason: {entry.decision_reason}")
    typer.echo("  `kotone serve` swaps to it at its next check; the next cycle's gate compares against it")
    typer.echo(f"  {dagster}", err=dagster.startswith("warning"))
