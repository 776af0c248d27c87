"""The workflow log's pure renderers on a hand-built two-cycle report."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.report.model import (
    PLOTS,
    CycleEntry,
    DagsterRun,
    Event,
    Link,
    MetricDelta,
    Report,
    TrainingRun,
    select_cycle_range,
)
from kotone_pipeline.domain.report.plots import render_plots
from kotone_pipeline.domain.report.render import to_html, to_json, to_markdown

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cycle(cycle_id: str, promote: bool, before: float, candidate: float, cost: float) -> CycleEntry:
    return CycleEntry(
        cycle_id=cycle_id,
        stage="promotion_decision",
        focus_dims=["energy", "warmth"],
        focus_why="top-2 MAE on the probe set",
        hard_dim_source="eval_rows",
        champion_before=None if cycle_id == "c1" else "c1/r0",
        dataset_version=f"v-{cycle_id}",
        dataset_uri=f"/data/{cycle_id}",
        dataset_store="local",
        hparams_patch={"alpha": 0.15},
        hparams_reasons=["L1: underfitting | alpha 0.3 -> 0.15"],  # a pipe must not break the table
        dagster_runs=[
            DagsterRun(
                run_id=f"{cycle_id}-run-0000-0000-0000-000000000000",
                job_name="cycle_job",
                status="SUCCESS",
                started_at=T0,
                ended_at=T0 + timedelta(seconds=5),
                url=f"http://ui/runs/{cycle_id}-run",
            )
        ],
        training_runs=[
            TrainingRun(run_id="r0", job_id=f"{cycle_id}.r0", stage="COMPLETED", url="https://hf.example/jobs/1")
        ],
        models={f"{cycle_id}/r0": f"/models/{cycle_id}"},
        champion_after=f"{cycle_id}/r0" if promote else "c1/r0",
        evidence=[
            Link(label="Dagster run", url=f"http://ui/runs/{cycle_id}-run"),
            Link(label="W&B cycle run (offline)", detail="/wandb/run-1; upload with `wandb sync /wandb/run-1`"),
        ],
        delta=MetricDelta(
            decision="promote" if promote else "keep",
            reference_kind="baseline" if cycle_id == "c1" else "champion",
            reference_id="baseline-constant" if cycle_id == "c1" else "c1/r0",
            holdout_before=before,
            holdout_candidate=candidate,
            holdout_after=candidate if promote else before,
            human_before=2.0,
            human_candidate=1.5,
            human_after=1.5,
            per_dim_delta={d: candidate - before for d in DIMS},
            candidate_per_dim_mae={d: candidate + i / 100 for i, d in enumerate(DIMS)},
            reasons=["pass: everything <script>"],
        ),
        cost_usd=cost,
        wall_s=60.0,
        training_s=50.0,
        repro=[f"KOTONE_HOME=/tmp/r kotone cycle new {cycle_id} --run"],
    )


@pytest.fixture
def report() -> Report:
    return Report(
        generated_at=T0 + timedelta(hours=1),
        dagster_url="http://ui",
        home="/home/k",
        champion="c1/r0",
        champion_holdout_mae=0.35,
        cycles=[_cycle("c1", True, 1.2, 0.35, 0.0), _cycle("c2", False, 0.35, 0.37, 0.5)],
        events=[
            Event(at=T0, kind="submission", cycle_id="c1", summary="submitted 1 job", url="http://ui/runs/c1-run"),
            Event(at=T0 + timedelta(minutes=1), kind="decision", cycle_id="c1", summary="promote c1/r0"),
        ],
        repro_all=["export KOTONE_HOME=/tmp/r", "kotone cycle new c1 --run", "kotone cycle new c2 --run"],
    )


@pytest.fixture(scope="module")
def plots() -> dict[str, bytes]:
    entries = [_cycle(f"c{i}", i % 3 == 0, 1.0 / i, 0.9 / i, i / 10) for i in range(1, 21)]
    return render_plots(Report(generated_at=T0, dagster_url="http://ui", home="/h", cycles=entries))


def test_plots_are_small_pngs(plots: dict[str, bytes]) -> None:
    assert list(plots) == [name for name, _ in PLOTS]
    for png in plots.values():
        assert png.startswith(PNG_MAGIC)
        assert 2_000 < len(png) < 150_000


def test_no_cycles_no_plots() -> None:
    assert render_plots(Report(generated_at=T0, dagster_url="http://ui", home="/h")) == {}


def test_markdown_has_every_section_and_escapes_pipes(report: Report, plots: dict[str, bytes]) -> None:
    md = to_markdown(report, plots)
    for heading in ("# Kotone workflow log", "## Workflow", "## Metric deltas", "## Plots", "## Event log"):
        assert heading in md
    assert "## Repro commands" in md and "kotone cycle new c2 --run" in md
    assert "### Cycle c1" in md and "### Cycle c2" in md
    assert "underfitting \\| alpha" in md  # escaped inside the workflow table
    assert "1.2000 → 0.3500" in md and "0.3500 → 0.3500" in md  # holdout before -> after
    assert "| -0.8500 |" in md  # per-dim delta copied as given
    assert md.count("](data:image/png;base64,") == len(PLOTS)
    assert "[Dagster run](http://ui/runs/c1-run)" in md
    assert "wandb sync /wandb/run-1" in md


def test_markdown_without_plots_has_no_images(report: Report) -> None:
    md = to_markdown(report)
    assert "data:image" not in md and "## Plots" not in md


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if "src" in values:
            self.srcs.append(values["src"] or "")
        if tag == "a":
            self.hrefs.append(values.get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escaped(report: Report, plots: dict[str, bytes]) -> None:
    page = to_html(report, plots)
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and "link" not in parser.tags
    assert len(parser.srcs) == len(PLOTS)
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://ui/runs/c1-run" in parser.hrefs and "https://hf.example/jobs/1" in parser.hrefs
    assert "pass: everything <script>" in "".join(parser.text)  # shown as text, never as a tag
    assert "<style>" in page and "http" not in page.split("<style>")[1].split("</style>")[0]


def test_json_round_trips(report: Report) -> None:
    doc = json.loads(to_json(report))
    assert [c["cycle_id"] for c in doc["cycles"]] == ["c1", "c2"]
    assert Report.model_validate(doc) == report


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ["a", "b", "c", "d"]),
        ("", ["a", "b", "c", "d"]),
        ("b..c", ["b", "c"]),
        ("b..", ["b", "c", "d"]),
        ("..b", ["a", "b"]),
        ("c", ["c"]),
        ("a..a", ["a"]),
    ],
)
def test_cycle_ranges(spec: str | None, expected: list[str]) -> None:
    assert select_cycle_range(spec, ["a", "b", "c", "d"]) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("c..b", "comes after"), ("a..z", "unknown cycle 'z'"), ("q", "unknown cycle 'q'"), ("a..b..c", "use A..B")],
)
def test_bad_cycle_ranges(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        select_cycle_range(spec, ["a", "b", "c", "d"])


def test_the_report_shows_what_people_sent_and_reviewed(report: Report) -> None:
    from kotone_pipeline.domain.report.model import PeopleCounts

    second = report.cycles[1]
    second.people = PeopleCounts(logged=150, waiting=90, reviewed=60, to_training=41, to_field=19, field_total=19)
    assert second.delta is not None
    second.delta = second.delta.model_copy(
        update={
            "primary": "field",
            "field_rows": 19,
            "field_before": 1.21,
            "field_candidate": 1.02,
            "field_after": 1.02,
        }
    )
    md = to_markdown(report)
    assert "## People's requests" in md
    assert "| c2 | 150 | 90 | 60 | 41 | 19 | 19 | 1.2100 → 1.0200 | field |" in md
    assert "field 1.2100 → 1.0200 (19 rows, decides: field)" in md
    png = render_plots(report)["field_mae"]
    assert png.startswith(PNG_MAGIC)


def _workflow_rows(md: str) -> dict[str, str]:
    """The Workflow table's rows by cycle id."""
    table = md.split("## Workflow", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| c")}


def test_the_evidence_column_shows_short_names_and_folds_paths_and_commands(report: Report) -> None:
    report.cycles[0].models = {"c1/r0": "/home/k/jobs/c1-r0/model"}
    report.cycles[0].artifacts = {"cycle_dir": "/home/k/cycles/c1"}
    md = to_markdown(report)
    row = _workflow_rows(md)["c1"]
    evidence = re.split(r"(?<!\\)\|", row)[6]  # cells split on unescaped pipes
    assert "[Dagster run](http://ui/runs/c1-run)" in evidence and "W&B cycle run (offline)" in evidence
    assert "/wandb/run-1" not in evidence and "wandb sync" not in evidence
    # Paths under the home are shown relative to it (the head names the home once).
    assert "jobs/c1-r0/model" in row and "/home/k/" not in row and "docs cycles/c1" in row
    # The paths and upload commands are in the cycle's section, in a folded block, as markdown and as HTML.
    section = md.split("### Cycle c1", 1)[1].split("### Cycle c2", 1)[0]
    folded = section.split("<details><summary>Paths and upload commands (2)</summary>", 1)[1].split("</details>")[0]
    assert "wandb sync /wandb/run-1" in folded and "artifact cycle_dir: /home/k/cycles/c1" in folded
    page = to_html(report)
    assert "<details><summary>Paths and upload commands (2)</summary><ul>" in page
    assert page.index("<details>") < page.index("wandb sync /wandb/run-1") < page.index("</details>")


def test_the_run_writing_the_report_is_shown_as_it_stood_not_as_started(report: Report) -> None:
    run = report.cycles[1].dagster_runs[0]
    run.status, run.ended_at, run.writes_report = "STARTED", None, True
    md = to_markdown(report)
    assert "STARTED" not in md
    assert "cycle_job c2-run-0 running, wrote this report; every step before it succeeded" in _workflow_rows(md)["c2"]
    run.failed_steps = ["promotion_decision_checks"]
    assert "failed so far: promotion_decision_checks" in to_markdown(report)
    # Rebuilt after the run ended (kotone report): the stored end status.
    run.status, run.writes_report, run.failed_steps = "SUCCESS", False, []
    assert "cycle_job c2-run-0 SUCCESS" in _workflow_rows(to_markdown(report))["c2"]


def test_angle_brackets_in_markdown_text_are_shown_not_taken_for_tags(report: Report) -> None:
    assert report.cycles[1].delta is not None
    report.cycles[1].delta.reasons = ["masked <email> in 2 requests; see `kotone-model:cycle-<x>`"]
    md = to_markdown(report)
    # Outside a code span the brackets are entities (a renderer shows "<email>"); inside one they stay typed.
    assert "decision reason: masked &lt;email&gt; in 2 requests; see `kotone-model:cycle-<x>`" in md
    assert "<email>" not in md


def test_a_cycle_kept_in_the_state_repo_links_its_documents(report: Report) -> None:
    url = "https://hub.example/datasets/org/kotone-state/blob/main/cycles/c1"
    report.cycles[0].artifacts = {"cycle_dir": url}
    row = _workflow_rows(to_markdown(report))["c1"]
    assert f"[docs in the state repo]({url})" in row and f"docs {url}" not in row
