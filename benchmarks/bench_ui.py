"""What a person waits for in the UI world (issue 8): runs launched through the code location, `kotone dev`
start-up and memory, a local job's start-up, and a `kotone demo` cycle.

- ``ui_cycle_job_s`` / ``ui_validation_job_s``: start -> end of the cycle_job run (submitted through the
  public GraphQL client to the ``dagster dev`` the driver starts) and of the validation_job run that
  training_jobs_sensor requested from the daemon (a run process each, as from the UI), campaign size 1,
  W&B disabled; ``ui_cycle_s`` the whole cycle and
  ``ui_cycle_vs_plain_ratio`` its ratio to ``run_cycle_plain`` doing the same work as a script would: a new
  interpreter that imports what it needs (target <= 1.5). Both sides start from a fresh home whose cache
  holds the base set's embeddings; ``ui_cycle_plain_warm_s`` is the plain cycle in the benchmark's own warm
  process (libraries imported, encoder loaded), for scale. ``ui_driver_start_s``: starting that
  ``dagster dev`` until its code location has loaded (once per command, not in ``ui_cycle_s``).
- ``dev_ready_s``: `kotone dev` to its "ready" line (UI answering, code location loaded), on a warm
  second start; ``dev_rss_mb``: resident memory of all its processes then (target <= 15 s, <= 700 MB).
- ``local_job_startup_s``: a local job's submit -> ended, for a job that fails at once on a missing
  dataset: the runner and trainer start-up alone (target <= 1.5 s); ``python_startup_s`` the bare
  interpreter, for scale.
- ``demo_cycle_s``: `kotone demo --cycles 3` (what `make demo` runs) on a fresh home, wall time per cycle as
  it reports it, median over the cycles (the demo's defaults: W&B offline, campaign size 2; target <= 8 s);
  ``demo_cycle_max_s`` the slowest, ``demo_setup_s`` the one-time base assets before the first cycle.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Benchmark, Row

KOTONE = str(Path(sys.executable).parent / "kotone")
ENV = {"KOTONE_CAMPAIGN_SIZE": "1", "KOTONE_WANDB_MODE": "disabled"}
READY_LINE = "Kotone: the Dagster UI is ready on "


def _tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "KOTONE_HOME": str(home), **extra}
    env.pop("DAGSTER_HOME", None)
    return env


# --- runs through the code location ---------------------------------------------------------------------
def _ui_cycle() -> dict[str, float]:
    import dagster as dg

    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.driver import DagsterDriver
    from kotone_pipeline.orchestration.runner import CycleRunner, dagster_home, open_instance
    from kotone_pipeline.orchestration.sensors import SENSOR_INTERVAL_ENV

    root = _tmp("kotone-bench-ui-")
    saved = dict(os.environ)
    os.environ.update({"KOTONE_HOME": str(root / "kotone"), SENSOR_INTERVAL_ENV: "1", **ENV})
    os.environ.pop("DAGSTER_HOME", None)
    try:
        instance = open_instance()
        runner = CycleRunner(build_definitions(), instance, poll_interval_s=0.1)
        runner.ensure_base()  # not counted
        starting = time.perf_counter()
        with DagsterDriver(instance, dagster_home(), log_file=root / "runs.log") as driver:
            runner.driver = driver
            started = time.perf_counter()
            runner.run_cycle("c1")
            total = time.perf_counter() - started
        spans = {}
        for record in instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": "c1"})):
            stats = instance.get_run_stats(record.dagster_run.run_id)
            spans[record.dagster_run.job_name] = (stats.end_time or 0.0) - (stats.start_time or 0.0)
        instance.dispose()
        return {
            "total": total,
            "start": started - starting,
            "cycle_job": spans["cycle_job"],
            "validation_job": spans["validation_job"],
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def _plain_cycle_fresh() -> float:
    """``run_cycle_plain`` as a script runs it: a new interpreter that imports what the work needs, then
    the same cycle (the base set and its embeddings are prepared first and not counted, as on the UI side)."""
    code = "import json; from benchmarks.bench_cycle import plain_cycle; print(json.dumps(plain_cycle()))"
    root = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"plain cycle failed: {done.stderr[-1500:]}")
    return wall - json.loads(done.stdout.strip().splitlines()[-1])["setup"]


def run_ui(repeats: int) -> dict[str, float]:
    from benchmarks.bench_cycle import plain_cycle

    ui, plain, warm = [], [], []
    for _ in range(max(1, repeats)):
        plain.append(_plain_cycle_fresh())
        warm.append(plain_cycle()["total"])
        ui.append(_ui_cycle())
    total = statistics.median(r["total"] for r in ui)
    return {
        "ui_cycle_s": total,
        "ui_driver_start_s": statistics.median(r["start"] for r in ui),
        "ui_cycle_job_s": statistics.median(r["cycle_job"] for r in ui),
        "ui_validation_job_s": statistics.median(r["validation_job"] for r in ui),
        "ui_cycle_plain_s": statistics.median(plain),
        "ui_cycle_plain_warm_s": statistics.median(warm),
        "ui_cycle_vs_plain_ratio": total / statistics.median(plain),
    }


def rows_ui(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("cycle through dagster dev + GraphQL", r["ui_cycle_s"], "s", repeats, r["ui_cycle_vs_plain_ratio"],
            "run_cycle_plain; <= 1.5x"),
        Row("  starting dagster dev (once per command)", r["ui_driver_start_s"], "s", repeats),
        Row("  cycle_job run", r["ui_cycle_job_s"], "s", repeats),
        Row("  validation_job run (sensor-requested)", r["ui_validation_job_s"], "s", repeats),
        Row("run_cycle_plain, same work, as a script (new process)", r["ui_cycle_plain_s"], "s", repeats),
        Row("run_cycle_plain in this warm process", r["ui_cycle_plain_warm_s"], "s", repeats),
    ]  # fmt: skip


# --- kotone dev -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_rss_mb(pgid: int) -> float:
    total_kb = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def _dev_start(home: Path, log: Path) -> tuple[float, float]:
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [KOTONE, "dev", "--port", str(_free_port())],
            env=_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while READY_LINE not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError(f"kotone dev did not get ready: {log.read_text(errors='replace')[-1500:]}")
                time.sleep(0.2)
            ready = time.perf_counter() - started
            time.sleep(2)  # the daemon's first sensor ticks
            return ready, _group_rss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_dev(repeats: int) -> dict[str, float]:
    root = _tmp("kotone-bench-dev-")
    try:
        _dev_start(root / "kotone", root / "cold.log")  # cold: creates the instance; not counted
        starts = [_dev_start(root / "kotone", root / f"warm{i}.log") for i in range(max(1, repeats))]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "dev_ready_s": statistics.median(s[0] for s in starts),
        "dev_rss_mb": statistics.median(s[1] for s in starts),
    }


def rows_dev(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("kotone dev, warm start to ready", r["dev_ready_s"], "s", repeats, r["dev_ready_s"] / 15, "target 15 s"),
        Row("kotone dev, RSS of all its processes", r["dev_rss_mb"], "MB", repeats, r["dev_rss_mb"] / 700,
            "target 700 MB"),
    ]  # fmt: skip


# --- a local job's start-up -------------------------------------------------------------------------------
def run_local_job(repeats: int) -> dict[str, float]:
    from kotone_pipeline.services.datasets import DatasetRef
    from kotone_pipeline.services.jobs import JobSpec
    from kotone_pipeline.services.local_jobs import LocalJobBackend

    root = _tmp("kotone-bench-job-")
    try:
        backend = LocalJobBackend(root / "jobs")
        missing = DatasetRef(store="local", name="none", version="v", uri=str(root / "no-dataset"), data_hash="h")
        spans = []
        for i in range(max(3, repeats)):
            started = time.perf_counter()
            state = backend.submit(JobSpec(cycle_id="bench", run_id=f"r{i}", dataset=missing))
            while not state.terminal:
                time.sleep(0.02)
                state = backend.statuses([state.job_id])[state.job_id]
            spans.append(time.perf_counter() - started)
            if state.stage != "ERROR":
                raise RuntimeError(f"expected the job to fail on the missing dataset, got {state.stage}")
        bare = [_timed_run([sys.executable, "-c", "pass"]) for _ in range(max(3, repeats))]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"local_job_startup_s": statistics.median(spans), "python_startup_s": statistics.median(bare)}


def _timed_run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def rows_local_job(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("local job submit -> ended (no work)", r["local_job_startup_s"], "s", max(3, repeats),
            r["local_job_startup_s"] / r["python_startup_s"], "bare python start"),
        Row("bare python start", r["python_startup_s"], "s", max(3, repeats)),
    ]  # fmt: skip


# --- kotone demo ------------------------------------------------------------------------------------------
def run_demo(repeats: int) -> dict[str, float]:
    """``make demo``'s command on a fresh home: setup once, then three cycles. Cycle figures are the
    median over every cycle of every repeat (the first cycle of a home is one of them)."""
    walls, firsts, setups = [], [], []
    for _ in range(max(1, min(repeats, 2))):  # ~1.5 min each
        root = _tmp("kotone-bench-demo-")
        try:
            env = _env(root / "kotone", KOTONE_WANDB_MODE="offline")
            done = subprocess.run(
                [KOTONE, "demo", "--cycles", "3", "--json"], env=env, capture_output=True, text=True, timeout=1200
            )
            if done.returncode != 0:
                raise RuntimeError(f"kotone demo failed: {done.stderr[-1500:]}")
            shown = json.loads(done.stdout)
            cycles = [c["wall_s"] for c in shown["cycles"]]
            walls.extend(cycles)
            firsts.append(cycles[0])
            setups.append(shown["setup_s"])
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "demo_cycle_s": statistics.median(walls),
        "demo_cycle_max_s": max(walls),
        "demo_first_cycle_s": statistics.median(firsts),
        "demo_setup_s": statistics.median(setups),
        "demo_cycles_measured": float(len(walls)),
    }


def rows_demo(r: dict[str, float], repeats: int) -> list[Row]:
    n = int(r["demo_cycles_measured"])
    return [
        Row("kotone demo --cycles 3: cycle wall (median, W&B offline)", r["demo_cycle_s"], "s", n,
            r["demo_cycle_s"] / 8, "target 8 s"),
        Row("kotone demo: slowest cycle", r["demo_cycle_max_s"], "s", n, r["demo_cycle_max_s"] / 8, "target 8 s"),
        Row("kotone demo: first cycle of a home", r["demo_first_cycle_s"], "s", n // 3),
        Row("kotone demo: setup (base assets + their embeddings)", r["demo_setup_s"], "s", n // 3),
    ]  # fmt: skip


BENCHMARKS = [
    Benchmark("local_job", run_local_job, rows_local_job),
    Benchmark("dev", run_dev, rows_dev),
    Benchmark("ui_runs", run_ui, rows_ui),
    Benchmark("demo", run_demo, rows_demo),
]
