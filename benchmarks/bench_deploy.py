"""Four cycles through the separate-process deployment vs four sequential cycles in the embedded default.

- ``queued_cycles_s``: PostgreSQL, ``dagster code-server start``, ``dagster-daemon run`` and the webserver
  on the instance of ``deploy/dagster.yaml`` as shipped (queue, at most 4 cycle runs, the
  training_submission pool at 1), started as separate processes (``kotone_pipeline_tests/deploy/topology.py``);
  four ``cycle_job`` runs submitted at once through ``DagsterGraphQLClient``; the clock stops when all four
  have their promotion decision (validation runs requested by the daemon's ``training_jobs_sensor``);
- ``sequential_cycles_s``: the embedded default, as ``kotone demo`` drives it: ``CycleRunner`` on a fresh
  ``dg.instance_for_test()`` (SQLite), four cycles one after the other;
- ``queued_vs_sequential_ratio`` = queued / sequential; target <= 1.1;
- ``daemon_restart_to_tick_s``: ``kill -9`` of the daemon, restart, until training_jobs_sensor's next tick
  is recorded; target <= 60 s.

Both sides: campaign size 1 (one real ``train_local`` subprocess job per cycle), W&B off, base data built
before the clock starts, every cycle in a fresh KOTONE_HOME's history. Starting the deployment (PostgreSQL,
three Dagster processes) is not counted. One repeat is minutes; the figures are from one run each.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from benchmarks import Row

CAMPAIGN_SIZE = 1
CYCLES = 4
ENV = {"KOTONE_CAMPAIGN_SIZE": str(CAMPAIGN_SIZE), "KOTONE_WANDB_MODE": "disabled"}
TARGET_RATIO = 1.1
TARGET_RECOVERY_S = 60.0


def sequential_embedded() -> float:
    import dagster as dg

    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.runner import CycleRunner

    root = Path(tempfile.mkdtemp(prefix="kotone-bench-seq-"))
    previous = os.environ.get("KOTONE_HOME")
    os.environ["KOTONE_HOME"] = str(root / "kotone")
    try:
        with dg.instance_for_test() as instance:
            runner = CycleRunner(build_definitions({"KOTONE_HOME": str(root / "kotone"), **ENV}), instance)
            runner.ensure_base()  # not counted
            started = time.perf_counter()
            for i in range(1, CYCLES + 1):
                report = runner.run_cycle(f"s{i}")
                if report.candidate_holdout_mae is None:
                    raise RuntimeError("embedded cycle produced no candidate: the training job failed")
            return time.perf_counter() - started
    finally:
        if previous is None:
            os.environ.pop("KOTONE_HOME", None)
        else:
            os.environ["KOTONE_HOME"] = previous
        shutil.rmtree(root, ignore_errors=True)


def _last_tick_after(dep, since: float) -> float | None:
    query = """
    query($s: SensorSelector!) {
      sensorOrError(sensorSelector: $s) { ... on Sensor { sensorState { ticks(limit: 20) { timestamp } } } }
    }"""
    selector = {"repositoryLocationName": "kotone_pipeline", "repositoryName": "__repository__",
                "sensorName": "training_jobs_sensor"}  # fmt: skip
    ticks = dep.graphql(query, {"s": selector})["data"]["sensorOrError"]["sensorState"]["ticks"]
    after = [float(t["timestamp"]) for t in ticks if float(t["timestamp"]) > since]
    return min(after) if after else None


def queued_deployment() -> dict[str, float]:
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from kotone_pipeline.cycle.documents import PromotionDecisionDoc
    from kotone_pipeline.orchestration.partitions import cycles
    from kotone_pipeline.services.artifacts import CycleArtifacts
    from kotone_pipeline_tests.deploy.topology import LOCATION, REPOSITORY, deployment

    root = Path(tempfile.mkdtemp(prefix="kotone-bench-deploy-"))
    try:
        with deployment(root, ENV) as dep:
            client = DagsterGraphQLClient("127.0.0.1", port_number=dep.web_port)
            (base,) = dep.wait_runs([client.submit_job_execution("base_job", LOCATION, REPOSITORY)])
            if base.status != dg.DagsterRunStatus.SUCCESS:
                raise RuntimeError(f"base_job failed\n{dep.logs()}")
            ids = [f"d{i}" for i in range(1, CYCLES + 1)]
            with dep.instance() as instance:
                instance.add_dynamic_partitions(cycles.name, ids)
            artifacts = CycleArtifacts(dep.home)
            started = time.perf_counter()
            for cycle_id in ids:
                client.submit_job_execution(
                    "cycle_job", LOCATION, REPOSITORY, tags={"dagster/partition": cycle_id, "kotone/cycle": cycle_id}
                )
            deadline = time.monotonic() + 1800
            while not all(artifacts.has(c, PromotionDecisionDoc) for c in ids):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the four cycles did not end\n{dep.logs()}")
                time.sleep(0.25)
            queued = time.perf_counter() - started
            # Daemon restart -> the next training_jobs_sensor tick.
            dep.stop("daemon", signal.SIGKILL)
            restarted = time.time()
            dep.start("daemon")
            deadline = time.monotonic() + 300
            while (tick := _last_tick_after(dep, restarted)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no sensor tick after the daemon restart\n{dep.logs()}")
                time.sleep(0.25)
            return {"queued": queued, "recovery": tick - restarted}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(repeats: int = 1) -> dict[str, float]:
    # Each side is minutes of work: one run of each, whatever --repeats says (the rows say runs=1).
    queued = queued_deployment()
    sequential = sequential_embedded()
    ratio = queued["queued"] / sequential
    return {
        "queued_cycles_s": queued["queued"],
        "sequential_cycles_s": sequential,
        "queued_vs_sequential_ratio": ratio,
        "daemon_restart_to_tick_s": queued["recovery"],
        "deploy_within_targets": float(ratio <= TARGET_RATIO and queued["recovery"] <= TARGET_RECOVERY_S),
    }


def rows(results: dict[str, float], repeats: int) -> list[Row]:
    ratio = results["queued_vs_sequential_ratio"]
    return [
        Row(f"{CYCLES} cycles at once, separate processes + Postgres + queue", results["queued_cycles_s"], "s", 1,
            ratio, f"sequential embedded; <= {TARGET_RATIO:g}x"),
        Row(f"{CYCLES} cycles one after another, embedded default (SQLite)", results["sequential_cycles_s"], "s", 1),
        Row("daemon kill -9 + restart -> next sensor tick", results["daemon_restart_to_tick_s"], "s", 1,
            versus=f"<= {TARGET_RECOVERY_S:g} s"),
        Row("within targets", results["deploy_within_targets"], "", 1),
    ]  # fmt: skip


if __name__ == "__main__":
    for key, value in run(1).items():
        print(f"{key}: {value:.4f}")
