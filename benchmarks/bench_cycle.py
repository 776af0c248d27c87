"""One local improvement cycle through Dagster vs the same work as plain function calls.

- ``cycle_wall_s``: ``CycleRunner.run_cycle`` in a fresh temp KOTONE_HOME on a fresh ``dg.instance_for_test()``
  instance (cycle_job, sensor ticks while the training job runs, validation_job);
- ``cycle_plain_s``: ``run_cycle_plain`` on LocalJobBackend / LocalDatasetStore / ChampionRegistry in another
  fresh temp home;
- ``dagster_overhead_ratio`` = wall / plain.

Both sides: campaign size 1 (one real ``train_local`` subprocess job), W&B disabled, base set prepared
beforehand and not counted, every run a first cycle (no champion), the same job-poll interval (``POLL_S``).
Runs alternate plain / Dagster so a slow moment of the machine hits both. Targets: one cycle <= 30 s,
ratio <= 1.5. Breakdown keys (``cycle_dagster_*``) say where the Dagster side spends its time.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from benchmarks import Row

CAMPAIGN_SIZE = 1
POLL_S = 0.1
TARGET_WALL_S = 30.0
TARGET_RATIO = 1.5
ENV = {"KOTONE_CAMPAIGN_SIZE": str(CAMPAIGN_SIZE), "KOTONE_WANDB_MODE": "disabled"}


@contextmanager
def _temp_home(prefix: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root / "kotone"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _job_span(job_dirs: Path) -> tuple[float, float]:
    """(created -> finished seconds, finished epoch) of the cycle's training job(s), from the backend's records."""
    from kotone_pipeline.services.local_jobs import LocalJobBackend

    states = LocalJobBackend(job_dirs).statuses([p.name for p in job_dirs.iterdir() if p.is_dir()])
    spans = [
        (datetime.fromisoformat(s.created_at), datetime.fromisoformat(s.finished_at))
        for s in states.values()
        if s.created_at and s.finished_at
    ]
    if not spans:
        raise RuntimeError(f"no finished training job under {job_dirs}")
    first, last = min(c for c, _ in spans), max(f for _, f in spans)
    return (last - first).total_seconds(), last.timestamp()


@contextmanager
def _home_env(home: Path) -> Iterator[None]:
    """KOTONE_HOME for this process too: the embedding cache the steps and jobs share lives there, so each
    side starts from a fresh cache holding the base set's embeddings only (no texts left by earlier runs)."""
    previous = os.environ.get("KOTONE_HOME")
    os.environ["KOTONE_HOME"] = str(home)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("KOTONE_HOME", None)
        else:
            os.environ["KOTONE_HOME"] = previous


def plain_cycle() -> dict[str, float]:
    from kotone_pipeline.cycle.base import write_teacher_pairs
    from kotone_pipeline.cycle.config import LoopConfig
    from kotone_pipeline.cycle.plain_runner import run_cycle_plain
    from kotone_pipeline.domain.model.embedding_cache import prepare_embeddings
    from kotone_pipeline.services.artifacts import CycleArtifacts
    from kotone_pipeline.services.champion import ChampionRegistry
    from kotone_pipeline.services.local_datasets import LocalDatasetStore
    from kotone_pipeline.services.local_jobs import LocalJobBackend
    from kotone_pipeline.services.wandb_tracker import tracker_from_env

    with _temp_home("kotone-bench-plain-") as home, _home_env(home):
        artifacts = CycleArtifacts(home)
        # The base set and its embeddings, as base_job leaves them (not counted, as on the Dagster side).
        setup_started = time.perf_counter()
        pairs, _ = write_teacher_pairs(artifacts)
        prepare_embeddings((p.source_type, p.text) for p in pairs)
        started = time.perf_counter()
        decision = run_cycle_plain(
            artifacts,
            LocalJobBackend(artifacts.jobs_dir),
            LocalDatasetStore(artifacts.datasets_dir),
            ChampionRegistry(artifacts.registry_dir),
            LoopConfig(campaign_size=CAMPAIGN_SIZE),
            "c1",
            earlier_cycles=[],
            poll_interval_s=POLL_S,
            tracker=tracker_from_env({**os.environ, **ENV}, home),
        )
        elapsed = time.perf_counter() - started
        if decision.candidate_holdout_mae is None:
            raise RuntimeError("plain cycle produced no candidate: the training job failed")
        return {"total": elapsed, "job": _job_span(artifacts.jobs_dir)[0], "setup": started - setup_started}


def dagster_cycle() -> dict[str, float]:
    import dagster as dg

    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.runner import CycleRunner
    from kotone_pipeline.services.artifacts import CycleArtifacts

    with _temp_home("kotone-bench-dagster-") as home, _home_env(home), dg.instance_for_test() as instance:
        runner = CycleRunner(build_definitions({"KOTONE_HOME": str(home), **ENV}), instance, poll_interval_s=POLL_S)
        runner.ensure_base()  # not counted
        started = time.perf_counter()
        report = runner.run_cycle("c1")
        elapsed = time.perf_counter() - started
        if report.candidate_holdout_mae is None:
            raise RuntimeError("Dagster cycle produced no candidate: the training job failed")
        runs = {}
        for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": "c1"})):
            stats = instance.get_run_stats(record.dagster_run.run_id)
            runs[record.dagster_run.job_name] = (stats.start_time or 0.0, stats.end_time or 0.0)
        (cj_start, cj_end), (vj_start, vj_end) = runs["cycle_job"], runs["validation_job"]
        job_s, job_finished = _job_span(CycleArtifacts(home).jobs_dir)
        return {
            "total": elapsed,
            "job": job_s,
            "sensor_latency": vj_start - job_finished,  # job done -> validation run started
            "cycle_job": cj_end - cj_start,
            "validation_job": vj_end - vj_start,
            "between_jobs": vj_start - cj_end,  # training job + sensor ticks until validation is requested
        }


def run(repeats: int = 3) -> dict[str, float]:
    plain_runs, dagster_runs = [], []
    for _ in range(max(1, repeats)):
        plain_runs.append(plain_cycle())
        dagster_runs.append(dagster_cycle())

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    wall, plain = med(dagster_runs, "total"), med(plain_runs, "total")
    ratio = wall / plain
    return {
        "cycle_wall_s": wall,
        "cycle_plain_s": plain,
        "dagster_overhead_ratio": ratio,
        "cycle_wall_min_s": min(r["total"] for r in dagster_runs),
        "cycle_plain_min_s": min(r["total"] for r in plain_runs),
        "cycle_dagster_overhead_s": wall - plain,
        "cycle_dagster_cycle_job_s": med(dagster_runs, "cycle_job"),
        "cycle_dagster_between_jobs_s": med(dagster_runs, "between_jobs"),
        "cycle_dagster_validation_job_s": med(dagster_runs, "validation_job"),
        "cycle_dagster_sensor_latency_s": med(dagster_runs, "sensor_latency"),
        "cycle_training_job_s": med(dagster_runs, "job"),
        "cycle_plain_training_job_s": med(plain_runs, "job"),
        "cycle_campaign_size": float(CAMPAIGN_SIZE),
        "cycle_poll_interval_s": POLL_S,
        "cycle_within_targets": float(wall <= TARGET_WALL_S and ratio <= TARGET_RATIO),
    }


def rows(results: dict[str, float], repeats: int) -> list[Row]:
    ratio = results["dagster_overhead_ratio"]
    return [
        Row(f"Dagster cycle, campaign {CAMPAIGN_SIZE}, W&B off", results["cycle_wall_s"], "s", repeats, ratio,
            f"plain; <= {TARGET_RATIO:g}x"),
        Row("plain run_cycle_plain, same work", results["cycle_plain_s"], "s", repeats),
        Row("fastest Dagster run", results["cycle_wall_min_s"], "s", repeats,
            results["cycle_wall_min_s"] / results["cycle_plain_min_s"], "fastest plain"),
        Row("job poll, both sides (base prebuilt)", results["cycle_poll_interval_s"], "s", repeats),
        Row("  Dagster: cycle_job run", results["cycle_dagster_cycle_job_s"], "s", repeats),
        Row("  Dagster: between the two runs", results["cycle_dagster_between_jobs_s"], "s", repeats),
        Row("    of which job end -> validation", results["cycle_dagster_sensor_latency_s"], "s", repeats),
        Row("  Dagster: validation_job run", results["cycle_dagster_validation_job_s"], "s", repeats),
        Row("  training subprocess", results["cycle_training_job_s"], "s", repeats),
        Row(f"within targets (<= {TARGET_WALL_S:g} s, <= {TARGET_RATIO:g}x)", results["cycle_within_targets"], "",
            repeats),
    ]  # fmt: skip


if __name__ == "__main__":
    for key, value in run(1).items():
        print(f"{key}: {value:.4f}")
