"""A local training job starts lean: neither the job runner nor the trainer imports Dagster or trackers."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("dagster", "wandb", "weave", "dagster_wandb", "torch", "transformers")
JOB_PATH = ("kotone_pipeline.services.local_job_runner", "kotone_pipeline.train_local")


def test_the_job_path_imports_no_orchestration_or_tracking() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {JOB_PATH!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(done.stdout) == []
