"""Cycle commands: ``kotone demo``, ``kotone cycle new|delete``, ``kotone status``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from kotone_pipeline.cli._common import console, fail, handle_errors, require_home, status_console
from kotone_pipeline.cli.review import DEFAULT_PORT as REVIEW_PORT

if TYPE_CHECKING:
    from kotone_pipeline.cli.traffic import TrafficReplay
    from kotone_pipeline.orchestration.runner import CycleReport, CycleRunner
    from kotone_pipeline.services.artifacts import CycleArtifacts

cycle_app = typer.Typer(help="Create and inspect improvement cycles.", no_args_is_help=True)

# Where `kotone review` serves its page by default (its --host and --port change it).
REVIEW_URL = f"http://127.0.0.1:{REVIEW_PORT}/"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _runner(progress: bool = True) -> CycleRunner:
    # Imported here so `kotone data ...` does not pay for importing Dagster.
    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.runner import CycleRunner, open_instance

    def say(message: str) -> None:
        if progress:
            # Escaped: "[c1] ..." would otherwise be read as a markup tag and vanish.
            status_console.print(f"[dim]{escape(message)}[/dim]")

    # Failures reach the user as one CycleFailedError line naming the step and its error (the full logs
    # stay in the instance, see `kotone dev`), so Dagster's console logger only prints critical events.
    # On a terminal the waiting line repeats every few seconds; piped, one line per change of state.
    heartbeat = 3.0 if status_console.is_terminal else None
    return CycleRunner(build_definitions(), open_instance(), progress=say, log_level="CRITICAL", heartbeat_s=heartbeat)


@contextmanager
def _through_code_location(runner: CycleRunner) -> Iterator[CycleRunner]:
    """Runs submitted to the same Dagster that `kotone dev` starts, as the UI submits them: one run history
    (docs/architecture.md), validation launched by the daemon from the sensor's ticks."""
    from kotone_pipeline.orchestration.driver import DagsterDriver, DriverStartError
    from kotone_pipeline.orchestration.runner import dagster_home
    from kotone_pipeline.orchestration.sensors import SENSOR_INTERVAL_ENV

    home = dagster_home()
    log = home / "logs" / "kotone-runs.log"
    # The daemon started below ticks training_jobs_sensor: every second while a cycle trains.
    env = {SENSOR_INTERVAL_ENV: os.environ.get(SENSOR_INTERVAL_ENV, "1")}
    status_console.print(
        f"[dim]starting Dagster (webserver, daemon, code server; output goes to {log})[/dim]", highlight=False
    )
    try:
        driver = DagsterDriver(runner.instance, home, log_file=log, env=env).__enter__()
    except (DriverStartError, FileNotFoundError) as exc:
        raise fail(str(exc), code=1) from None
    if driver.note:
        status_console.print(f"[yellow]note:[/yellow] {escape(driver.note)}", highlight=False)
    if not driver.started_here:
        status_console.print(f"[dim]submitting to the running Dagster at {driver.url}[/dim]", highlight=False)
    runner.driver = driver
    try:
        yield runner
    finally:
        runner.driver = None
        driver.__exit__(None, None, None)


@handle_errors
def demo(
    cycles: int = typer.Option(3, "--cycles", "-n", min=1, max=50, help="How many full cycles to run."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    prefix: str = typer.Option("demo", help="Cycle ids are PREFIX-NNN (continuing after existing ones)."),
    traffic: Path | None = typer.Option(
        None,
        "--traffic",
        exists=True,
        dir_okay=False,
        help='Simulation: JSONL of requests ({"text": ...}) sent to a real `kotone serve` between cycles, '
        "one slice per cycle once there is a champion.",
    ),
    reviewer_from: Path | None = typer.Option(
        None,
        "--reviewer-from",
        exists=True,
        dir_okay=False,
        help="Simulation: JSONL of labelled requests (text + vector) a simulated reviewer uses to answer the "
        "`kotone review` queue; requests it has no label for are skipped. Needs --traffic.",
    ),
) -> None:
    """Run N full local cycles headlessly: evaluate, mine hard dims, augment, split, train, validate, promote.

    Runs go through the workspace's code location as UI runs do, so they show in the UI's run history.
    With --traffic and --reviewer-from (a simulation of an app and a person), each cycle after the first
    champion first serves a slice of the traffic and reviews it, so the loop learns from people's requests."""
    replay = None
    if reviewer_from is not None and traffic is None:
        raise fail("--reviewer-from needs --traffic (the requests to serve and review)")
    if traffic is not None:
        from kotone_pipeline.cli.traffic import (
            TrafficError,
            TrafficReplay,
            first_slice_size,
            read_labels,
            read_traffic,
        )
        from kotone_pipeline.settings import load_settings

        try:
            labels = read_labels(reviewer_from) if reviewer_from else {}
            texts = read_traffic(traffic)
            settings, slices = load_settings(), max(1, cycles - 1)
            first = first_slice_size(len(texts), slices, settings.field_min_rows, settings.field_share)
            replay = TrafficReplay(texts, labels, slices=slices, first_slice=first)
        except TrafficError as exc:
            raise fail(str(exc)) from None
    with _through_code_location(_runner(progress=True)) as runner:
        setup_s = _demo_setup(runner)
        reports = _demo_cycles(runner, cycles, prefix, replay)
    from kotone_pipeline.cli.demo_table import print_demo
    from kotone_pipeline.domain.report.render import HTML_FILE, MD_FILE, REPORTS_DIR

    reports_dir = runner.artifacts.home / REPORTS_DIR
    print_demo(reports, as_json, setup_s, {"html": reports_dir / HTML_FILE, "md": reports_dir / MD_FILE})


def _demo_setup(runner: CycleRunner) -> float | None:
    """The base assets, once per home: seconds spent, or None when they were already there."""
    started = time.monotonic()
    if not runner.ensure_base():
        return None
    setup_s = round(time.monotonic() - started, 2)
    status_console.print(f"  setup done in {setup_s:.1f}s (once per KOTONE_HOME; cycles reuse it)")
    return setup_s


def _serve_and_review(runner: CycleRunner, replay: TrafficReplay | None) -> None:
    """The simulated app and reviewer between cycles (only once a champion serves)."""
    if replay is None:
        return
    from kotone_pipeline.services.state_places import champion_registry

    if champion_registry(runner.artifacts.home).current() is None:
        status_console.print("  traffic: no champion to serve yet; it starts after the first promotion")
        return
    done = replay.run(runner.artifacts.home)
    status_console.print(
        f"  traffic (simulated): served {done['served']} requests through `kotone serve`; the simulated reviewer "
        f"labelled {done['reviewed']} and skipped {done['skipped']} in the `kotone review` queue"
    )


def _demo_cycles(
    runner: CycleRunner, cycles: int, prefix: str, replay: TrafficReplay | None = None
) -> list[CycleReport]:
    from kotone_pipeline.orchestration.runner import CycleFailedError

    existing = set(runner.cycles())
    reports = []
    for unfinished in runner.unfinished_cycles():
        status_console.print(f"[bold]cycle {unfinished}[/bold] stopped before its decision: finishing it first")
        try:
            reports.append(runner.run_cycle(unfinished))
        except CycleFailedError as exc:
            raise fail(
                f"{exc}; cycle {unfinished} is still unfinished, so no new cycle was opened "
                "(fix the cause and re-run: it continues where it stopped)",
                code=1,
            ) from None
    number = 1
    for _ in range(cycles):
        while f"{prefix}-{number:03d}" in existing:
            number += 1
        cycle_id = f"{prefix}-{number:03d}"
        existing.add(cycle_id)
        status_console.print(f"[bold]cycle {cycle_id}[/bold] ({len(reports) + 1}/{cycles})")
        _serve_and_review(runner, replay)
        try:
            report = runner.run_cycle(cycle_id)
        except CycleFailedError as exc:
            raise fail(f"{exc} (inspect it with `kotone dev`; re-running continues where it stopped)", code=1) from None
        field = (
            f"; field set ({report.field_rows} reviewed) {_fmt(report.candidate_field_mae)}"
            f" vs {_fmt(report.reference_field_mae_before)}, decided by the {report.decided_by}"
            if report.field_rows
            else ""
        )
        status_console.print(
            f"  {report.decision}: candidate holdout MAE {_fmt(report.candidate_holdout_mae)}"
            f" vs {_fmt(report.reference_holdout_mae_before)}{field}  ({report.wall_s:.1f}s)"
        )
        reports.append(report)
    return reports


# A first production run that costs cents: one run, a handful of training rows, a few optimizer steps; every
# phase of the job (environment, base model download, training, checkpoint and adapter push, batched
# prediction of the full eval splits, validation, gate) still runs. Explicit KOTONE_* settings win.
SMOKE_SETTINGS = {
    "KOTONE_CAMPAIGN_SIZE": "1",
    "KOTONE_JOB_MAX_TRAIN_ROWS": "32",
    "KOTONE_JOB_MAX_STEPS": "4",
    "KOTONE_JOB_MAX_PREDICT_ROWS": "32",
}


def apply_smoke_settings(env: MutableMapping[str, str]) -> dict[str, str]:
    """Set the smoke settings not already set in ``env``; the ones applied."""
    trainer = env.get("KOTONE_TRAINER") or ("lora" if env.get("KOTONE_JOB_BACKEND") == "hf" else "local")
    if trainer != "lora":
        raise ValueError(
            "--smoke is a first run of the LoRA trainer on HF Jobs: set KOTONE_JOB_BACKEND=hf and "
            "KOTONE_DATASET_STORE=hf (see docs/production.md)"
        )
    applied = {k: v for k, v in SMOKE_SETTINGS.items() if not env.get(k)}
    env.update(applied)
    return applied


@cycle_app.command("new")
@handle_errors
def cycle_new(
    cycle_id: str = typer.Argument(None, help="Cycle id (a-z, 0-9, '_', '-'; max 63). Default: cycle-NNN."),
    run: bool = typer.Option(False, "--run", help="Also run the cycle to the end, like demo does for one cycle."),
    smoke: bool = typer.Option(
        False,
        "--smoke",
        help="With --run, on HF Jobs: a first run that costs cents (1 run, "
        f"{SMOKE_SETTINGS['KOTONE_JOB_MAX_TRAIN_ROWS']} training rows, {SMOKE_SETTINGS['KOTONE_JOB_MAX_STEPS']} "
        f"steps, {SMOKE_SETTINGS['KOTONE_JOB_MAX_PREDICT_ROWS']} predictions per split) exercising every phase of "
        "the job; it is never promoted.",
    ),
) -> None:
    """Add a cycle partition (and optionally run it)."""
    from kotone_pipeline.orchestration.runner import CycleFailedError

    if smoke:
        if not run:
            raise fail("--smoke needs --run (it sizes the cycle's training job)")
        applied = apply_smoke_settings(os.environ)
        status_console.print(f"[dim]smoke run: {', '.join(f'{k}={v}' for k, v in applied.items()) or 'as set'}[/dim]")
    runner = _runner(progress=True)
    existed = cycle_id is not None and cycle_id in runner.cycles()
    created = runner.new_cycle(cycle_id)
    if existed:
        from kotone_pipeline.cycle.steps import STAGES

        row = _cycle_row(runner.artifacts, created, STAGES)
        where = f"last stage {row['stage']}" + (f", decision {row['decision']}" if row["decision"] else "")
        if run and row["decision"]:
            raise fail(
                f"cycle {created} already exists and is finished ({where}); nothing to run: start a new cycle, "
                f"or read it with `kotone report --cycles {created}`",
                code=1,
            )
        status_console.print(
            f"cycle {created} already exists ({where})" + ("; continuing it" if run else "; nothing changed"),
            highlight=False,
        )
    typer.echo(created)
    if run:
        with _through_code_location(runner):
            try:
                report = runner.run_cycle(created)
            except CycleFailedError as exc:
                raise fail(str(exc), code=1) from None
        typer.echo(json.dumps(report.model_dump(), indent=2))


@cycle_app.command("delete")
@handle_errors
def cycle_delete(
    cycle_id: str = typer.Argument(..., help="The cycle (partition key) to remove; invalid keys are accepted here."),
) -> None:
    """Remove a cycle: its partition, its unfinished training jobs (canceled) and its artifacts (moved aside).

    Refuses the cycle that produced the current champion. The artifacts and local job directories move to
    KOTONE_HOME/deleted/<id>-<time>/, so the id can be used again from a clean start."""
    from kotone_pipeline.orchestration.cycle_admin import CycleDeleteRefusedError, delete_cycle
    from kotone_pipeline.orchestration.resources import ChampionRegistryResource

    runner = _runner(progress=False)
    home = str(runner.artifacts.home)
    backend = runner.resources["job_backend"].get_backend()
    try:
        report = delete_cycle(
            runner.instance,
            runner.artifacts,
            ChampionRegistryResource(home=home).get_registry(),
            backend,
            cycle_id,
        )
    except CycleDeleteRefusedError as exc:
        raise fail(str(exc)) from None
    for line in report.lines():
        typer.echo(line)
    if report.cancel_errors:
        raise typer.Exit(1)


def _cycle_row(arts: CycleArtifacts, cycle_id: str, stages: Sequence[str]) -> dict[str, Any]:
    from kotone_pipeline.orchestration.cycle_admin import invalid_reason

    problem = invalid_reason(cycle_id)
    if problem is not None:
        # Dagster accepted the key, but no Kotone artifact can be named after it: report it, go on.
        return {"cycle_id": cycle_id, "stage": "invalid", "decision": None, "problem": problem}
    from kotone_pipeline.cycle.documents import PromotionDecisionDoc

    done = [s for s in stages if arts.has(cycle_id, s)]
    decision = arts.read(cycle_id, PromotionDecisionDoc).decision if "promotion_decision" in done else None
    return {
        "cycle_id": cycle_id,
        "stage": done[-1] if done else "created",
        "decision": ("promote" if decision.promote else "keep") if decision else None,
    }


@handle_errors
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every cycle's stage and decision and the current champion; invalid cycle ids are flagged.

    Only reads: with no Kotone home at KOTONE_HOME it says so and exits 1 (it never creates one)."""
    require_home("to show")
    runner = _runner(progress=False)
    arts = runner.artifacts
    from kotone_pipeline.orchestration.resources import ChampionRegistryResource

    champion = ChampionRegistryResource(home=str(arts.home)).get_registry().current()
    from kotone_pipeline.cycle.steps import STAGES as stages

    rows = [_cycle_row(arts, cycle_id, stages) for cycle_id in runner.cycles()]
    from kotone_pipeline.services.request_log import RequestLog

    log = RequestLog(arts.home)
    review = {
        "logged": log.count(),
        "waiting_for_review": log.count_unreviewed(),
        "reviews": log.count("reviews"),
        "command": "kotone review",
        "url": REVIEW_URL,
    }
    result = {"champion": champion.model_dump(mode="json") if champion else None, "cycles": rows, "review": review}
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"champion: {champion.model_id + f' (holdout MAE {champion.holdout_mae:.4f})' if champion else 'none'}"
    )
    table = Table(title="cycles")
    for column in ["cycle", "last stage", "decision"]:
        table.add_column(column)
    for row in rows:
        table.add_row(row["cycle_id"], row["stage"], row["decision"] or "-")
    console.print(table)
    if review["logged"]:
        console.print(
            f"requests: {review['logged']} served and logged, {review['waiting_for_review']} waiting for review "
            f"({review['reviews']} reviews so far); review them with `kotone review` at {REVIEW_URL}",
            highlight=False,
        )
    else:
        console.print("requests: none logged yet (`kotone serve` logs every request it answers)", highlight=False)
    for row in rows:
        if row.get("problem"):
            # Plain echo: a wrapped line would split the command people copy.
            typer.echo(f"warning: {row['problem']}; remove it with `kotone cycle delete '{row['cycle_id']}'`", err=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("status")(status)
    app.add_typer(cycle_app, name="cycle")
