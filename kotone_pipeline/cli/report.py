"""``kotone report``: the workflow log from the Dagster instance, for people without the UI."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from kotone_pipeline.cli._common import fail, handle_errors, require_home, status_console
from kotone_pipeline.settings import load_settings

EXIT_NOTHING_TO_REPORT = 1


class ReportFormat(StrEnum):
    md = "md"
    html = "html"
    json = "json"


def _instance_dir(home: Path) -> Path:
    # Where open_instance() would look, without creating it: a missing instance is an error here.
    return Path(load_settings().dagster_home or (home / "dagster")).resolve()


@handle_errors
def report(
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to FILE (atomically) instead of stdout."),
    fmt: ReportFormat = typer.Option(ReportFormat.md, "--format", "-f", help="md, html (self-contained) or json."),
    cycles: str | None = typer.Option(None, "--cycles", help="Cycles A..B (inclusive, in cycle order), A.., ..B or A."),
) -> None:
    """Write the workflow log (the same as the workflow_log asset) from the Dagster instance and cycle records."""
    # Imported here so other commands do not pay for importing Dagster and matplotlib.
    from kotone_pipeline.domain.data.jsonl import atomic_writer
    from kotone_pipeline.domain.data.output import check_output
    from kotone_pipeline.domain.report.model import select_cycle_range
    from kotone_pipeline.domain.report.plots import render_plots
    from kotone_pipeline.domain.report.render import to_html, to_json, to_markdown
    from kotone_pipeline.orchestration.report_collection import collect_report, known_cycles
    from kotone_pipeline.orchestration.runner import open_instance
    from kotone_pipeline.services.state_places import champion_registry, cycle_artifacts

    if out is not None:
        check_output(out, say=status_console.print)
    artifacts = cycle_artifacts(require_home("to report on"))
    instance_dir = _instance_dir(artifacts.home)
    if not instance_dir.is_dir():
        raise fail(
            f"no Dagster instance at {instance_dir}: run `kotone demo` or `kotone cycle new ID --run` first "
            "(or point DAGSTER_HOME / KOTONE_HOME at the instance to report on)",
            code=EXIT_NOTHING_TO_REPORT,
        )
    with open_instance(artifacts.home) as instance:
        known = known_cycles(instance, artifacts)
        if not known:
            raise fail(
                f"no cycles in the instance at {instance_dir}: run `kotone demo` or `kotone cycle new ID --run` first",
                code=EXIT_NOTHING_TO_REPORT,
            )
        selected = select_cycle_range(cycles, known)  # ValueError -> exit 2 with the message
        result = collect_report(instance, artifacts, champion_registry(artifacts.home), selected)
    if fmt is ReportFormat.json:
        text = to_json(result)
    elif fmt is ReportFormat.html:
        text = to_html(result, render_plots(result))
    else:
        text = to_markdown(result, render_plots(result))
    if out is None:
        typer.echo(text, nl=False)
        return
    with atomic_writer(out) as handle:
        handle.write(text)
    status_console.print(f"wrote {out} ({fmt.value}, {len(result.cycles)} cycle(s), {len(result.events)} event(s))")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
