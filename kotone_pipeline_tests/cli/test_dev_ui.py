"""`kotone dev` and the Dagster UI it serves, after real cycles, looked at in a real headless Chromium.

The session's shared cycles (in-process, into a persistent KOTONE_HOME; a copy of it here) and one
`kotone dev` serve every check, so the UI checks cost a copy and one server start. Screenshots go to
``$KOTONE_HOME/screenshots/`` for people to look at (the paths are printed), or to ``$KOTONE_TEST_SCREENSHOTS``
when set (pytest removes old temporary folders, so keep them there). Without a browser only the browser checks
skip, saying why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kotone_pipeline.cli.dev import QUIET_WARNINGS, dev_env
from kotone_pipeline_tests.browser import browser, new_page, screenshot, settle  # noqa: F401 (fixture)
from kotone_pipeline_tests.dev_server import READY_LINE, DevServer, graphql, kotone_dev
from kotone_pipeline_tests.shared_cycles import FinishedCycles

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow
CYCLE = "c1"
ASSETS = (
    "catalog",
    "teacher_pairs",
    "eval_sets",
    "served_requests",
    "reviewed_requests",
    "eval_summary",
    "hard_dims",
    "augmented_pairs",
    "split_dataset",
    "training_submission",
    "failure_playbook",
    "lexicon_patch",
    "trained_models",
    "validation_snapshot",
    "promotion_decision",
    "workflow_log",
)
# What the UI shows when something broke: an error toast, a Python error panel, a GraphQL failure.
BROKEN = ("Python error", "PythonError", "Unexpected GraphQL error", "Something went wrong", "Error loading")
ENV = {"KOTONE_CAMPAIGN_SIZE": "1", "KOTONE_WANDB_MODE": "disabled"}
SCREENSHOTS_ENV = "KOTONE_TEST_SCREENSHOTS"


@pytest.fixture(scope="module")
def one_cycle(finished_cycles: FinishedCycles, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's finished cycles (shared_cycles.py) in a copy of their home with its persistent instance
    (what `kotone dev` then opens: its daemon ticks the sensors, which must not touch the shared home)."""
    home = finished_cycles.copy_home(tmp_path_factory.mktemp("ui") / "kotone")
    return {"home": home, "report": finished_cycles.reports[CYCLE]}


@pytest.fixture(scope="module")
def ui(one_cycle: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with kotone_dev(one_cycle["home"], tmp_path_factory.mktemp("dev") / "kotone_dev.log", env=ENV) as server:
        yield server


@pytest.fixture(scope="module")
def page(browser: Browser, ui: DevServer) -> Iterator[Page]:  # noqa: F811
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(ui.url + "/asset-groups")
    settle(page)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    page.close()


def _shots(one_cycle: dict[str, Any]) -> Path:
    kept = os.environ.get(SCREENSHOTS_ENV)
    return Path(kept) if kept else one_cycle["home"] / "screenshots"


def _assert_not_broken(page: Page) -> None:
    text = page.inner_text("body")
    shown = [marker for marker in BROKEN if marker in text]
    assert not shown, f"{page.url} shows {shown}"
    toasts = page.locator("[class*='Toast'], [role='alert']")
    assert toasts.count() == 0 or not any("rror" in toasts.nth(i).inner_text() for i in range(toasts.count()))
    assert not page.errors, page.errors  # type: ignore[attr-defined]


def test_kotone_dev_becomes_dagster_and_says_when_ready(ui: DevServer, one_cycle: dict[str, Any]) -> None:
    answer = graphql(ui.port, "{ assetNodes { assetKey { path } } }")
    keys = {"/".join(node["assetKey"]["path"]) for node in answer["data"]["assetNodes"]}
    assert set(ASSETS) <= keys
    assert (one_cycle["home"] / "dagster" / "dagster.yaml").is_file()
    # exec, not a waiting wrapper: the process the test started is `dagster dev` itself.
    cmdline = Path(f"/proc/{ui.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"dagster") for part in cmdline) and b"dev" in cmdline, cmdline
    log = ui.log()
    assert f"{READY_LINE}{ui.url}" in log
    for unactionable in ("SupersessionWarning", "will not be used to configure Dagster"):
        assert unactionable not in log, log[-3000:]


def _shown_as(label: str, name: str) -> bool:
    """A graph node's label names the asset; zoomed out, the UI shortens long names to "traini…_submission"."""
    head, ellipsis, tail = label.partition("…")
    return label == name or (bool(ellipsis) and name.startswith(head) and name.endswith(tail))


def test_the_ui_opens_without_dagsters_community_dialog(browser: Browser, ui: DevServer) -> None:  # noqa: F811
    # A fresh browser (no "seen it" flag stored): the instance's `nux: enabled: false` is what keeps it away.
    assert graphql(ui.port, "{ shouldShowNux }")["data"]["shouldShowNux"] is False
    fresh = new_page(browser)
    fresh.goto(ui.url + "/asset-groups")
    settle(fresh)
    assert fresh.get_by_role("dialog").count() == 0
    assert "community" not in fresh.inner_text("body").lower()
    fresh.close()


def test_global_lineage_shows_every_asset(page: Page, ui: DevServer, one_cycle: dict[str, Any]) -> None:
    page.goto(ui.url + "/asset-groups")
    settle(page)
    page.locator("body").click(position={"x": 1100, "y": 700})  # focus the graph for its shortcut
    page.keyboard.press("Alt+e")  # "Expand all groups": every asset as a node
    page.wait_for_timeout(1500)
    print(screenshot(page, _shots(one_cycle), "01-global-lineage"))
    labels = page.locator("[class*='AssetNode_assetName']").all_inner_texts()
    missing = [name for name in ASSETS if not any(_shown_as(label.strip(), name) for label in labels)]
    assert not missing, f"global lineage does not show {missing} (nodes: {labels})"
    assert len(labels) == len(ASSETS), labels
    _assert_not_broken(page)


def test_cycle_partition_page_shows_the_decision_and_its_reasons(
    page: Page, ui: DevServer, one_cycle: dict[str, Any]
) -> None:
    page.goto(f"{ui.url}/assets/promotion_decision?view=partitions&partition={CYCLE}")
    settle(page)
    print(screenshot(page, _shots(one_cycle), "02-promotion-decision-partition"))
    text = page.inner_text("body")
    decision = one_cycle["report"].decision
    assert decision in text and "decision_log" in text
    assert f"Decision: {decision.upper()}" in text
    # The gate's reasons, as the decision recorded them.
    assert "holdout vector_mae" in text and "json_valid_rate" in text
    _assert_not_broken(page)


def test_split_dataset_description_shows_its_alias_placeholder(
    page: Page, ui: DevServer, one_cycle: dict[str, Any]
) -> None:
    page.goto(f"{ui.url}/assets/split_dataset")
    settle(page)
    print(screenshot(page, _shots(one_cycle), "06-split-dataset-description"))
    text = page.inner_text("body")
    # `cycle-ID` is a code span: shown as typed (a raw <id> was read as an HTML tag and vanished).
    assert "(alias cycle-ID, ID being the cycle's partition key) that the training runs use" in text
    assert page.locator("code", has_text="cycle-ID").count() > 0
    _assert_not_broken(page)


def test_sensors_page_lists_both_sensors(page: Page, ui: DevServer, one_cycle: dict[str, Any]) -> None:
    page.goto(ui.url + "/automation")
    settle(page)
    print(screenshot(page, _shots(one_cycle), "03-automation"))
    for sensor in ("training_jobs_sensor", "nightly_cycle_sensor"):
        assert page.get_by_text(sensor, exact=True).count() > 0, sensor
    _assert_not_broken(page)


def test_the_launchpad_prefills_only_the_forced_promotion_reason(
    page: Page, ui: DevServer, one_cycle: dict[str, Any]
) -> None:
    page.goto(f"{ui.url}/locations/__repository__@kotone_pipeline/jobs/validation_job/playground")
    settle(page)
    print(screenshot(page, _shots(one_cycle), "05-validation-launchpad"))
    editor = page.locator(".CodeMirror").first.inner_text()
    assert "force_reason" in editor
    # No resource config: settings come from KOTONE_* variables, not from a run's YAML.
    for absent in ("resources:", "min_improvement", "home:", str(one_cycle["home"])):
        assert absent not in editor, absent
    _assert_not_broken(page)


def test_workflow_log_html_renders_with_every_image(browser: Browser, one_cycle: dict[str, Any]) -> None:  # noqa: F811
    html = one_cycle["home"] / "reports" / "workflow_log.html"
    assert html.is_file()
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(html.as_uri())
    settle(page, 500)
    print(screenshot(page, _shots(one_cycle), "04-workflow-log"))
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.src.slice(0, 40), ok: e.complete && e.naturalWidth > 0}))"
    )
    assert images, "the workflow log has no plots"
    assert all(image["ok"] for image in images), [i["src"] for i in images if not i["ok"]]
    text = page.inner_text("body")
    assert CYCLE in text and one_cycle["report"].decision in text
    assert not errors and "Traceback" not in text and "undefined" not in text
    page.close()


def test_relative_paths_become_absolute_and_only_the_supersession_warning_is_quieted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KOTONE_HOME", raising=False)
    environ = {"KOTONE_DATA_DIR": "data", "KOTONE_WANDB_MODE": "offline", "PYTHONWARNINGS": "error::DeprecationWarning"}
    env = dev_env(environ, tmp_path / "dh", tmp_path)
    assert env["DAGSTER_HOME"] == str(tmp_path / "dh")
    assert env["KOTONE_HOME"] == str(tmp_path / ".kotone")  # the default home, fixed where kotone ran
    assert env["KOTONE_DATA_DIR"] == str(tmp_path / "data")
    assert env["KOTONE_WANDB_MODE"] == "offline"
    assert env["PYTHONWARNINGS"] == f"error::DeprecationWarning,{QUIET_WARNINGS}"


def _asset_job_run(port: int, cycle: str) -> dict[str, Any] | None:
    answer = graphql(
        port,
        """query ($cycle: String!) { runsOrError(filter: {pipelineName: "__ASSET_JOB",
             tags: [{key: "dagster/partition", value: $cycle}]}) {
             ... on Runs { results { runId status tags { key value } } } } }""",
        {"cycle": cycle},
    )
    runs = answer["data"]["runsOrError"]["results"]
    return runs[0] if runs else None


def _run_messages(port: int, run_id: str) -> list[str]:
    answer = graphql(
        port,
        """query ($id: ID!) { logsForRun(runId: $id) { ... on EventConnection {
             events { ... on MessageEvent { message } } } } }""",
        {"id": run_id},
    )
    return [e.get("message") or "" for e in answer["data"]["logsForRun"]["events"]]


# Last in the module: it materializes eval_summary again, which the pages above show.
def test_an_asset_pages_materialize_runs_in_process_on_a_cycle_partition(
    page: Page, ui: DevServer, one_cycle: dict[str, Any]
) -> None:
    assert _asset_job_run(ui.port, CYCLE) is None
    page.goto(f"{ui.url}/assets/eval_summary")
    settle(page)
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=CYCLE).click()
    dialog.get_by_text("Launch runs to materialize eval_summary").click()  # closes the partition list
    page.wait_for_timeout(500)
    print(screenshot(page, _shots(one_cycle), "07-materialize-eval-summary-partition"))
    dialog.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text("Launched run").first.wait_for()
    deadline = time.monotonic() + 600
    run = _asset_job_run(ui.port, CYCLE)
    while (run is None or run["status"] not in ("SUCCESS", "FAILURE", "CANCELED")) and time.monotonic() < deadline:
        time.sleep(2)
        run = _asset_job_run(ui.port, CYCLE)
    assert run is not None and run["status"] == "SUCCESS", run
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/from_ui") == "true"
    assert tags.get("kotone/cycle") == CYCLE  # tagged by its first step: the cycle's filter finds it
    messages = _run_messages(ui.port, run["runId"])
    assert any(m.startswith("Executing steps in process") for m in messages), messages
    assert not any("Launching subprocess" in m for m in messages), messages
    page.goto(f"{ui.url}/runs/{run['runId']}")
    settle(page)
    print(screenshot(page, _shots(one_cycle), "08-materialize-run"))
    _assert_not_broken(page)
