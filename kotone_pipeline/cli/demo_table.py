"""What ``kotone demo`` prints at the end: the cycles' table, the field set's, each decision's reasons, and
where the workflow log is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from kotone_pipeline.cli._common import console

if TYPE_CHECKING:
    from kotone_pipeline.orchestration.runner import CycleReport

JSON_KEYS = (
    "cycle_id",
    "champion_holdout_mae_before",
    "candidate_holdout_mae",
    "champion_holdout_mae_after",
    "reference_human_mae_before",
    "candidate_human_mae",
    "champion_human_mae_after",
    "rule_holdout_mae",
    "rule_human_mae",
    "hard_dims",
    "rows_added",
    "decision",
    "wall_s",
    "field_rows",
    "decided_by",
    "reference_field_mae_before",
    "candidate_field_mae",
    "champion_field_mae_after",
    "reviewed",
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def field_table(reports: list[CycleReport]) -> Table:
    """People's side of the demo: what was reviewed, and the field set's MAE (requests people sent)."""
    table = Table(title="Field set: reviewed requests people sent, never trained on (vector MAE; lower is better)")
    for column in ["cycle", "reviewed", "field rows", "field before", "field cand.", "field after", "decided by"]:
        table.add_column(column, no_wrap=True)
    for r in reports:
        table.add_row(
            r.cycle_id,
            str(r.reviewed),
            str(r.field_rows),
            _fmt(r.reference_field_mae_before) if r.field_rows else "-",
            _fmt(r.candidate_field_mae) if r.field_rows else "-",
            _fmt(r.champion_field_mae_after) if r.field_rows else "-",
            f"{r.decided_by}: {r.decision}",
        )
    return table


def cycles_table(reports: list[CycleReport]) -> Table:
    """The teacher's holdout, what each cycle did and decided (the human set has its own table, so that each
    fits a 120-column terminal)."""
    table = Table(
        title="Demo cycles: vector MAE on the teacher's holdout, lower is better (rule: the rule baseline, never "
        "a gate reference)"
    )
    columns = ["cycle", "champion before", "before", "cand.", "after", "rule", "hard dims", "rows +"]
    for column in [*columns, "decision", "wall s"]:
        # Ids and numbers stay whole; on a narrow terminal the champion and hard-dims cells fold instead.
        table.add_column(column, no_wrap=column not in ("champion before", "hard dims"))
    for r in reports:
        table.add_row(
            r.cycle_id,
            r.champion_before or "(baselines)",
            _fmt(r.champion_holdout_mae_before if r.champion_before else r.reference_holdout_mae_before),
            _fmt(r.candidate_holdout_mae),
            _fmt(r.champion_holdout_mae_after),
            _fmt(r.rule_holdout_mae),
            ", ".join(r.hard_dims),
            str(r.rows_added),
            r.decision,
            f"{r.wall_s:.1f}",
        )
    return table


def human_table(reports: list[CycleReport]) -> Table:
    """The hand-written human set (people's own words, never trained on): the measure the loop answers to."""
    table = Table(title="Human set (hand-written, never trained on)")
    for column in ["cycle", "human before", "human cand.", "human after", "rule human"]:
        table.add_column(column, no_wrap=True)
    for r in reports:
        table.add_row(
            r.cycle_id,
            _fmt(r.reference_human_mae_before),
            _fmt(r.candidate_human_mae),
            _fmt(r.champion_human_mae_after),
            _fmt(r.rule_human_mae),
        )
    return table


def report_lines(report_files: dict[str, Path]) -> list[str]:
    """Where the workflow log is and how to open it (it is rebuilt by each cycle's validation run)."""
    html, md = report_files.get("html"), report_files.get("md")
    if html is None or not html.is_file():
        return ["workflow log: not written yet; write it with `kotone report -f html -o workflow_log.html`"]
    lines = [
        f"workflow log: {html}",
        f"  open it in a browser: {html.resolve().as_uri()} (or `xdg-open {html}`, `open {html}` on macOS)",
    ]
    if md is not None and md.is_file():
        lines.append(f"  markdown beside it: {md}; rebuild either any time with `kotone report`")
    return lines


def print_demo(reports: list[CycleReport], as_json: bool, setup_s: float | None, report_files: dict[str, Path]) -> None:
    if as_json:
        cycles = [r.model_dump(include=set(JSON_KEYS)) for r in reports]
        files = {kind: str(path) for kind, path in report_files.items() if path.is_file()}
        typer.echo(json.dumps({"setup_s": setup_s, "cycles": cycles, "report": files}))
        return
    console.print(cycles_table(reports))
    console.print(human_table(reports))
    if any(r.reviewed or r.field_rows for r in reports):
        console.print(field_table(reports))
    for r in reports:
        console.print(f"[bold]{r.cycle_id}[/bold] decision log:")
        for reason in r.reasons:
            console.print(f"  - {reason}")
    for line in report_lines(report_files):
        console.print(line, highlight=False, soft_wrap=True)
