"""What `kotone demo` prints at the end, as a pipe or a file sees it (no terminal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kotone_pipeline.cli._common import PIPED_WIDTH, console, status_console
from kotone_pipeline.cli.demo_table import print_demo
from kotone_pipeline.orchestration.runner import CycleReport


def _report(cycle_id: str, champion_before: str | None) -> CycleReport:
    return CycleReport(
        cycle_id=cycle_id,
        champion_before=champion_before,
        champion_holdout_mae_before=0.353 if champion_before else None,
        reference_holdout_mae_before=0.353 if champion_before else 1.213,
        candidate_holdout_mae=0.349,
        champion_holdout_mae_after=0.349,
        reference_human_mae_before=1.119,
        candidate_human_mae=1.043,
        champion_human_mae_after=1.043,
        rule_holdout_mae=0.313,
        rule_human_mae=1.109,
        champion_after=f"{cycle_id}/r0",
        hard_dims=["nostalgia", "complexity"],
        rows_added=120,
        decision="promote",
        reasons=["holdout MAE improved by 0.004 over the champion's (needed 0.005) " + "x" * 120],
        wall_s=31.4,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    reports = tmp_path / "home" / "reports"
    reports.mkdir(parents=True)
    (reports / "workflow_log.html").write_text("<html></html>")
    (reports / "workflow_log.md").write_text("# log\n")
    return {"html": reports / "workflow_log.html", "md": reports / "workflow_log.md"}


def test_the_demo_tables_show_the_rule_baseline_beside_the_champion_and_fit_120_columns(
    capsys, files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 120)  # a 160-column terminal folded the one wide table of 14 columns
    print_demo([_report("demo-001", None), _report("demo-002", "demo-001/r0")], False, 17.0, files)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "champion before" in line)
    assert "rule" in header
    holdout, human = [line for line in out.splitlines() if line.startswith("│ demo-002")]  # one line each
    cells = [cell.strip() for cell in holdout.strip("│").split("│")]
    assert cells == ["demo-002", "demo-001/r0", "0.3530", "0.3490", "0.3490", "0.3130"] + [
        "nostalgia, complexity",
        "120",
        "promote",
        "31.4",
    ]
    assert [cell.strip() for cell in human.strip("│").split("│")] == [
        "demo-002",
        "1.1190",
        "1.0430",
        "1.0430",
        "1.1090",
    ]
    assert max(len(line) for line in out.splitlines() if line.startswith(("┏", "│", "└", "┃"))) <= 120


def test_the_demo_ends_saying_where_the_report_is_and_how_to_open_it(capsys, files) -> None:
    print_demo([_report("demo-001", None)], False, None, files)
    lines = capsys.readouterr().out.splitlines()
    assert f"workflow log: {files['html']}" in lines
    assert any(files["html"].resolve().as_uri() in line and "open it in a browser" in line for line in lines)
    assert any(str(files["md"]) in line and "kotone report" in line for line in lines)

    print_demo([_report("demo-001", None)], True, None, files)
    shown = json.loads(capsys.readouterr().out)
    assert shown["report"] == {"html": str(files["html"]), "md": str(files["md"])}
    assert shown["cycles"][0]["rule_holdout_mae"] == 0.313 and shown["cycles"][0]["rule_human_mae"] == 1.109


def test_a_missing_report_says_how_to_write_it(capsys, tmp_path: Path) -> None:
    print_demo([_report("demo-001", None)], False, None, {"html": tmp_path / "none.html"})
    assert "`kotone report -f html -o workflow_log.html`" in capsys.readouterr().out


def test_one_width_for_progress_lines_and_tables_when_piped(capsys, files) -> None:
    """Piped, progress lines were wrapped at rich's 80 columns while the table took 165."""
    assert console.width == status_console.width == PIPED_WIDTH
    progress = "[demo-001] stage training_submission; training jobs: r0 RUNNING, r1 RUNNING, r2 SCHEDULING " * 2
    status_console.print(progress.strip(), markup=False)
    print_demo([_report("demo-001", None)], False, None, files)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [progress.strip()]  # one line, not wrapped at 80
    table = [line for line in captured.out.splitlines() if line.startswith(("┏", "│", "└", "┃"))]
    assert max(len(line) for line in table) <= PIPED_WIDTH
    # A path is never cut, whatever its length: the report's line holds its whole file:// URI.
    assert any(
        line.endswith(
            files["html"].resolve().as_uri()
            + " (or `xdg-open "
            + str(files["html"])
            + "`, `open "
            + str(files["html"])
            + "` on macOS)"
        )
        for line in captured.out.splitlines()
    )
