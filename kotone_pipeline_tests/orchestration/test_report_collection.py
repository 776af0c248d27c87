"""The workflow log built from a real two-cycle run: every cycle, the decision docs' deltas, links to real runs."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.domain.report.model import PLOTS
from kotone_pipeline.domain.report.render import HTML_FILE, MD_FILE, render_report
from kotone_pipeline.orchestration.report_collection import _tick_events, collect_report
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import ChampionRegistry
from kotone_pipeline_tests.documents import read_json
from kotone_pipeline_tests.shared_cycles import FinishedCycles, open_home_instance

pytestmark = pytest.mark.slow
CYCLES = ("c1", "c2")
BASE_URL = "http://dagster.test:3000"
RUN_LINK = re.compile(re.escape(BASE_URL) + r"/runs/([0-9a-f-]{36})")


@pytest.fixture(scope="module")
def two_cycles(finished_cycles: FinishedCycles):
    """The session's two finished cycles (shared_cycles.py) and the report collected from them."""
    home = finished_cycles.home
    with open_home_instance(home) as instance:
        artifacts = CycleArtifacts(home)
        report = collect_report(instance, artifacts, ChampionRegistry(artifacts.registry_dir), base_url=BASE_URL)
        yield {"home": home, "instance": instance, "artifacts": artifacts, "report": report}


@pytest.fixture(scope="module")
def rendered(two_cycles):
    return render_report(two_cycles["report"])


def test_every_cycle_is_in_the_report_in_order(two_cycles, rendered) -> None:
    report = two_cycles["report"]
    assert [c.cycle_id for c in report.cycles] == list(CYCLES)
    for cycle in report.cycles:
        assert cycle.stage == "promotion_decision"
        assert cycle.focus_dims and cycle.focus_why
        assert cycle.dataset_version and cycle.training_runs and cycle.repro
        assert f"kotone cycle new {cycle.cycle_id} --run" in cycle.repro[0]
        assert f"| {cycle.cycle_id} |" in rendered.markdown
        assert f"Cycle {cycle.cycle_id}" in rendered.html


def test_deltas_equal_the_promotion_decision_docs(two_cycles) -> None:
    artifacts: CycleArtifacts = two_cycles["artifacts"]
    for cycle in two_cycles["report"].cycles:
        doc = read_json(artifacts, cycle.cycle_id, "promotion_decision")
        decision, after = doc["decision"], doc["champion_after"]
        delta = cycle.delta
        assert delta is not None
        assert delta.decision == ("promote" if decision["promote"] else "keep")
        assert delta.per_dim_delta == decision["per_dim_delta"]
        assert delta.holdout_before == decision["reference_holdout_mae"]
        assert delta.holdout_candidate == decision["candidate_holdout_mae"]
        assert delta.human_before == decision["reference_human_mae"]
        assert delta.human_candidate == decision["candidate_human_mae"]
        assert delta.holdout_after == after["holdout_mae"]
        assert delta.human_after == after["human_mae"]
        assert delta.reasons == decision["reasons"]
        assert cycle.champion_after == after["model_id"]
    # The first cycle compares with the constant baseline, the second with the first cycle's champion.
    first, second = two_cycles["report"].cycles
    assert first.delta.reference_kind == "baseline" and first.champion_before is None
    assert second.champion_before == first.champion_after == second.delta.reference_id


def test_every_linked_dagster_run_exists(two_cycles, rendered) -> None:
    instance: dg.DagsterInstance = two_cycles["instance"]
    for text in (rendered.markdown, rendered.html):
        linked = set(RUN_LINK.findall(text))
        assert linked
        for run_id in linked:
            assert instance.get_run_by_id(run_id) is not None, run_id
    for cycle in two_cycles["report"].cycles:
        jobs = {run.job_name for run in cycle.dagster_runs}
        assert {"cycle_job", "validation_job"} <= jobs
        for run in cycle.dagster_runs:
            stored = instance.get_run_by_id(run.run_id)
            assert stored is not None and stored.tags["dagster/partition"] == cycle.cycle_id
            assert run.url == f"{BASE_URL}/runs/{run.run_id}"


def test_event_log_is_in_time_order_and_covers_each_cycle(two_cycles) -> None:
    events = two_cycles["report"].events
    times = [e.at for e in events]
    assert times == sorted(times)
    assert all(t.utcoffset().total_seconds() == 0 for t in times)
    for cycle in CYCLES:
        kinds = {e.kind for e in events if e.cycle_id == cycle}
        assert {"submission", "job_end", "sensor_report", "validation", "check", "decision", "run_start"} <= kinds
        ordered = [e.kind for e in events if e.cycle_id == cycle]
        assert ordered.index("submission") < ordered.index("sensor_report") < ordered.index("decision")


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag in ("script", "link", "iframe", "object", "embed") or (tag != "img" and values.get("src")):
            self.external.append(tag)


def test_html_is_self_contained(rendered) -> None:
    parser = _Resources()
    parser.feed(rendered.html)
    parser.close()
    assert parser.tags[0] == "html" and "table" in parser.tags
    assert len(parser.images) == len(PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.external == []
    assert "@import" not in rendered.html and "url(" not in rendered.html


def test_the_asset_wrote_both_files_after_the_decisions(two_cycles) -> None:
    instance: dg.DagsterInstance = two_cycles["instance"]
    reports = Path(two_cycles["home"]) / "reports"
    md, html = (reports / MD_FILE).read_text(), (reports / HTML_FILE).read_text()
    for cycle in CYCLES:
        assert f"| {cycle} |" in md and f"Cycle {cycle}" in html
    event = instance.get_latest_materialization_event(dg.AssetKey("workflow_log"))
    assert event is not None
    metadata = event.asset_materialization.metadata
    assert metadata["cycles"].value == len(CYCLES)
    assert metadata["decided_cycles"].value == len(CYCLES)
    assert metadata["md_path"].value == str(reports / MD_FILE)
    assert metadata["workflow_log"].value == md
    # Rebuilt by each cycle's validation run, in the same run as its promotion decision.
    runs = {instance.get_run_by_id(e.run_id).tags["dagster/partition"] for e in _workflow_log_events(instance)}
    assert runs == set(CYCLES)


def test_the_run_writing_the_report_is_not_shown_unfinished(two_cycles) -> None:
    """workflow_log runs inside validation_job, whose stored status is STARTED while it writes: the file says how
    that run stood instead, and the report rebuilt after the run ended (kotone report) says SUCCESS."""
    instance: dg.DagsterInstance = two_cycles["instance"]
    md = (Path(two_cycles["home"]) / "reports" / MD_FILE).read_text()
    writer = instance.get_latest_materialization_event(dg.AssetKey("workflow_log")).run_id
    assert instance.get_run_by_id(writer).job_name == "validation_job"
    workflow = md.split("## Workflow", 1)[1].split("\n## ", 1)[0]
    (row,) = [line for line in workflow.splitlines() if line.startswith(f"| {CYCLES[-1]} |")]
    assert f"validation_job {writer[:8]} running, wrote this report; every step before it succeeded" in row
    assert "STARTED" not in md
    later = render_report(two_cycles["report"]).markdown
    assert f"validation_job {writer[:8]} SUCCESS" in later
    assert all(r.status == "SUCCESS" for c in two_cycles["report"].cycles for r in c.dagster_runs)


def _workflow_log_events(instance: dg.DagsterInstance) -> list:
    return list(instance.fetch_materializations(dg.AssetKey("workflow_log"), limit=10).records)


def test_report_of_selected_cycles_only(two_cycles) -> None:
    artifacts: CycleArtifacts = two_cycles["artifacts"]
    report = collect_report(
        two_cycles["instance"], artifacts, ChampionRegistry(artifacts.registry_dir), ["c2"], base_url=BASE_URL
    )
    assert [c.cycle_id for c in report.cycles] == ["c2"]
    assert {e.cycle_id for e in report.events} == {"c2"}
    with pytest.raises(ValueError, match="unknown cycle"):
        collect_report(two_cycles["instance"], artifacts, ChampionRegistry(artifacts.registry_dir), ["c9"])


def test_sensor_ticks_become_events_for_their_cycles() -> None:
    from dagster._core.scheduler.instigation import TickStatus

    ticks = [
        SimpleNamespace(
            status=TickStatus.SUCCESS, run_keys=["validate:c1:abc"], run_ids=["r-1"], timestamp=100.0, error=None
        ),
        SimpleNamespace(
            status=TickStatus.SUCCESS, run_keys=["validate:c9:abc"], run_ids=["r-2"], timestamp=101.0, error=None
        ),
        SimpleNamespace(
            status=TickStatus.FAILURE,
            run_keys=[],
            run_ids=[],
            timestamp=102.0,
            error=SimpleNamespace(message="JobBackendError: down\n"),
        ),
    ]
    events = _tick_events(ticks, {"c1"}, True, BASE_URL)
    assert [(e.cycle_id, e.kind) for e in events] == [("c1", "sensor_tick"), (None, "sensor_tick")]
    assert events[0].url == f"{BASE_URL}/runs/r-1"
    assert "down" in events[1].summary
    # A report of chosen cycles leaves out failures it cannot place in a cycle.
    assert len(_tick_events(ticks, {"c1"}, False, BASE_URL)) == 1


# --- CLI ------------------------------------------------------------------------------------------------


def _cli(home: Path, *args: str):
    return CliRunner().invoke(
        app, ["report", *args], env={"KOTONE_HOME": str(home), "KOTONE_DAGSTER_URL": BASE_URL, "DAGSTER_HOME": None}
    )


def test_cli_formats(two_cycles, tmp_path: Path) -> None:
    home = two_cycles["home"]
    result = _cli(home, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["cycle_id"] for c in doc["cycles"]] == list(CYCLES)
    assert doc["dagster_url"] == BASE_URL

    out = tmp_path / "log.html"
    result = _cli(home, "--format", "html", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and "data:image/png;base64," in out.read_text()

    result = _cli(home)  # markdown by default
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# Kotone workflow log")
    assert all(f"| {c} |" in result.stdout for c in CYCLES)


def test_cli_cycle_range(two_cycles) -> None:
    home = two_cycles["home"]
    for spec, expected in (("c1..c2", ["c1", "c2"]), ("c2..", ["c2"]), ("..c1", ["c1"]), ("c2", ["c2"])):
        result = _cli(home, "--format", "json", "--cycles", spec)
        assert result.exit_code == 0, result.output
        assert [c["cycle_id"] for c in json.loads(result.stdout)["cycles"]] == expected, spec
    for bad in ("c2..c1", "c1..c9", "c1..c2..c3"):
        result = _cli(home, "--cycles", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "error: --cycles" in result.stderr


def test_cli_without_an_instance_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "empty").mkdir()  # a Kotone home with no Dagster instance in it yet
    result = CliRunner().invoke(app, ["report"], env={"KOTONE_HOME": str(tmp_path / "empty")})
    assert result.exit_code == 1
    assert "no Dagster instance" in result.stderr


def test_cli_with_an_empty_instance_says_there_are_no_cycles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "home" / "dagster").mkdir(parents=True)
    result = CliRunner().invoke(app, ["report"], env={"KOTONE_HOME": str(tmp_path / "home")})
    assert result.exit_code == 1
    assert "no cycles" in result.stderr
