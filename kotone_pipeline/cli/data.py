"""``kotone data generate|import``: make the base set, bring in the predecessor's data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kotone_pipeline.cli._common import (
    MAX_MESSAGE_LINES,
    capped,
    check_scale,
    console,
    fail,
    handle_errors,
    status_console,
)
from kotone_pipeline.domain.data import base_data
from kotone_pipeline.domain.data.importer import import_file, scale_warning
from kotone_pipeline.domain.data.jsonl import (
    DataFileError,
    problem_kinds,
    rejected_path,
    write_json,
    write_jsonl,
    write_rejected,
)
from kotone_pipeline.domain.data.output import check_output
from kotone_pipeline.domain.loop.quality import QualityReport
from kotone_pipeline.services.home import kotone_home

app = typer.Typer(help="Generate and import training data.", no_args_is_help=True)

BASE_FILE = "base.jsonl"
REPORT_FILE = "quality_report.json"


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="data")


def quality_table(report: QualityReport) -> Table:
    table = Table(title="quality filter")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for name, count in report.as_dict().items():
        table.add_row(name if name in ("seen", "kept") else f"rejected: {name}", str(count))
    for source_type, count in sorted(report.kept_by_source_type.items()):
        table.add_row(f"kept {source_type}", str(count))
    return table


@app.command("generate")
@handle_errors
def generate(
    out: Annotated[
        Path | None,
        typer.Option("--out", help=f"Directory for {BASE_FILE} and {REPORT_FILE} (default: $KOTONE_HOME/data)."),
    ] = None,
    groups: Annotated[
        int | None,
        typer.Option(
            "--groups",
            min=1,
            help="Groups (a rule prompt + requests_per_group requests each; default: data/generation.json).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Teacher seed (default: data/generation.json).")] = None,
) -> None:
    """Generate the base teacher set through the quality filter and print the quality report."""
    params = base_data.load_generation_params()
    update = {k: v for k, v in (("n_groups", groups), ("seed", seed)) if v is not None}
    if update:
        params = params.model_copy(update={"base": params.base.model_copy(update=update)})
    out = out if out is not None else kotone_home(create=False) / "data"
    for target in (out / BASE_FILE, out / REPORT_FILE):
        check_output(target, say=lambda message: status_console.print(message))
    with status_console.status(f"generating {params.base.n_groups} groups (seed {params.base.seed})"):
        pairs, report = base_data.build_base_set(params)
    write_jsonl(out / BASE_FILE, pairs)
    write_json(out / REPORT_FILE, {"params": params.model_dump(mode="json"), "report": report.model_dump()})
    console.print(quality_table(report))
    console.print(f"wrote {len(pairs)} pairs to {out / BASE_FILE}")


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="Predecessor-format JSONL file.")],
    scale: Annotated[
        int, typer.Option("--scale", callback=check_scale, help="Scale of the file's vectors: 10 or 100.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Pair JSONL file to write (never the input itself).")],
    quarantine: Annotated[
        bool,
        typer.Option("--quarantine", help="Write the good rows and put bad lines in *.rejected.jsonl beside --out."),
    ] = False,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Accept an input with no rows (writes an empty file).")
    ] = False,
    allow_collapsed: Annotated[
        bool,
        typer.Option(
            "--allow-collapsed", help="Accept --scale 100 data whose values all come out as 0 or 1 (looks like 0..10)."
        ),
    ] = False,
) -> None:
    """Import the predecessor's data (strict: any bad line fails the import and nothing is written).

    Bad lines are listed (the first 20 on screen) with FILE:LINE and the reason; the full list goes to
    OUT.rejected.jsonl. With --quarantine, every input line is accounted for: kept + quarantined = read."""
    check_output(out, inputs=[file], say=lambda message: status_console.print(message))
    check_output(rejected_path(out), inputs=[file])
    try:
        result = import_file(file, scale, strict=False)
    except DataFileError as exc:
        raise fail(str(exc)) from None
    if result.rejected and not quarantine:
        # The full list is written only when the screen shows part of it; the output itself never is.
        report = write_rejected(out, file, result.rejected) if len(result.rejected) > MAX_MESSAGE_LINES else None
        for problem in capped([f"{file}:{n}: {reason}" for n, _, reason in result.rejected], report):
            typer.echo(problem, err=True)
        hint = "nothing written (use --quarantine to keep the good rows)"
        kinds = problem_kinds((n, reason) for n, _, reason in result.rejected)
        raise fail(f"{file}: {len(result.rejected)} bad line(s): {kinds}; {hint}")
    if not result.rows and not allow_empty:
        what = "no valid rows" if result.lines_read else "no rows (empty or blank)"
        raise fail(f"{file}: {what}; nothing written (pass --allow-empty to write an empty file)")
    warning = scale_warning(result.rows, scale)
    if warning and not allow_collapsed:
        raise fail(f"{file}: {warning}; nothing written (or pass --allow-collapsed)")
    written = write_jsonl(out, result.rows)
    console.print(f"imported {written} pairs (scale {scale}) to {out}")
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    if result.rejected:
        rejected = write_rejected(out, file, result.rejected)
        for problem in capped([f"{file}:{n}: {reason}" for n, _, reason in result.rejected], rejected):
            typer.echo(problem, err=True)
        console.print(f"quarantined {len(result.rejected)} bad line(s) to {rejected}")
    else:
        rejected_path(out).unlink(missing_ok=True)  # a stale list from an earlier import would mislead
    console.print(result.accounting())
