"""The real training script against the stand-in Hub, on the tiny Mistral3 model: a run killed after its
first pushed checkpoint resumes from it when run again for the same branch; the tokenizer check fails fast.

Needs the train extra; skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kotone_pipeline.services.hf_datasets import HfHubDatasetStore
from kotone_pipeline.training import TRAIN_SCRIPT
from kotone_pipeline.training import train_lora as script
from kotone_pipeline_tests.hf_standin.fixtures import (
    FAST_RETRY,
    TOKEN,
    USER,
    hf_standin_fixture,  # noqa: F401 - the pytest fixture named hf_standin
    make_splits,
)
from kotone_pipeline_tests.hf_standin.server import HubStandIn
from kotone_pipeline_tests.hf_standin.tiny_model import prompt_corpus, publish_base_model

_MISSING = [n for n in ("torch", "transformers", "trl", "peft") if importlib.util.find_spec(n) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.slow,
    pytest.mark.skipif(bool(_MISSING), reason=f"train extra not installed (missing {', '.join(_MISSING)})"),
]

DATA_REPO = f"{USER}/kotone-data"
RUNS_REPO = f"{USER}/kotone-runs"
BRANCH = "cycle-c1-r0"


@pytest.fixture
def world(hf_standin: HubStandIn, tmp_path):  # noqa: F811
    splits = make_splits(n_train=8, n_eval=3)
    store = HfHubDatasetStore(
        DATA_REPO, token=TOKEN, endpoint=hf_standin.url, training_script=TRAIN_SCRIPT, retry=FAST_RETRY
    )
    ref = store.publish("c1", splits, {"seed": 7})
    corpus = prompt_corpus([p for rows in splits.values() for p in rows])
    publish_base_model(hf_standin, corpus)
    publish_base_model(hf_standin, corpus, repo_id="acme/no-tokenizer", with_tokenizer=False)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY",)}
    env.update(
        HF_ENDPOINT=hf_standin.url,
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",  # as on the stand-in's job machines
        HF_HOME=str(tmp_path / "hf-home"),
        TOKENIZERS_PARALLELISM="false",
    )
    return hf_standin, ref, env, splits


def _command(ref, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(TRAIN_SCRIPT),
        f"--dataset-repo={DATA_REPO}",
        f"--dataset-revision={ref.version}",
        f"--output-repo={RUNS_REPO}",
        f"--output-revision={BRANCH}",
        f"--output-dir={out}",
        '--hparams={"batch_size": 1, "grad_accum": 1, "learning_rate": 0.001}',
        "--max-new-tokens=8",
        *extra,
    ]


def _branch_files(hub: HubStandIn) -> set[str]:
    repo = hub.repos.get(("model", RUNS_REPO))
    if repo is None or BRANCH not in repo.branches:
        return set()
    return set(repo.resolve(BRANCH).files)


def _run_json(hub: HubStandIn) -> dict:
    return json.loads(hub.file_at("model", RUNS_REPO, BRANCH, "run.json")[1].data)


def test_a_killed_run_resumes_from_its_pushed_checkpoint_and_trains_no_step_twice(world, tmp_path):
    hub, ref, env, splits = world
    argv = _command(ref, tmp_path / "first", "--max-steps=6", "--checkpoint-steps=2")
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Killed (like a timeout or a preemption) as soon as a checkpoint is on the branch.
        while "checkpoint/trainer_state.json" not in _branch_files(hub):
            assert first.poll() is None, first.stderr.read()[-3000:] if first.stderr else "exited"
            assert time.monotonic() < deadline, "no checkpoint pushed"
            time.sleep(0.1)
        first.kill()
    finally:
        first.wait(timeout=30)
    pushed = json.loads(hub.file_at("model", RUNS_REPO, BRANCH, "checkpoint/trainer_state.json")[1].data)
    assert pushed["global_step"] in (2, 4)
    assert "run.json" not in _branch_files(hub)

    second = subprocess.run(
        _command(ref, tmp_path / "second", "--max-steps=6", "--checkpoint-steps=2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    run = _run_json(hub)
    assert run["status"] == "completed"
    assert run["resumed_from_step"] == pushed["global_step"]
    assert run["steps"] == 6 and run["steps_this_run"] == 6 - pushed["global_step"]
    # The second run logged a loss for the remaining steps only (the trainer logs every step).
    assert (second.stdout + second.stderr).count("'loss':") == 6 - pushed["global_step"]
    logged = json.loads(hub.file_at("model", RUNS_REPO, BRANCH, "metrics.json")[1].data)["loss_history"]
    assert [e["step"] for e in logged] == list(range(1, 7))  # the history travels with the checkpoint
    files = _branch_files(hub)
    # A completed run keeps its adapter and predictions, not the checkpoint.
    assert not any(f.startswith("checkpoint/") for f in files)
    assert {
        "model/adapter_config.json",
        "metrics.json",
        "predictions_holdout.jsonl",
        "predictions_human.jsonl",
    } <= files
    holdout = hub.file_at("model", RUNS_REPO, BRANCH, "predictions_holdout.jsonl")[1].data.decode().splitlines()
    assert [json.loads(line)["pair_id"] for line in holdout] == [p.id for p in splits["holdout"]]

    # Once more for the same branch: everything is there, nothing is trained or predicted again.
    third = subprocess.run(
        _command(ref, tmp_path / "third", "--max-steps=6"), env=env, capture_output=True, text=True, timeout=300
    )
    assert third.returncode == 0, third.stderr[-3000:]
    run = _run_json(hub)
    assert run["resumed"]["training"].startswith("skipped")
    assert set(run["resumed"]) == {"training", "validation", "holdout", "probe", "human"}
    assert "train_s" not in run["timings_s"]


def test_a_base_model_without_a_tokenizer_fails_in_seconds_with_a_clear_message(world, tmp_path):
    hub, ref, env, _ = world
    result = subprocess.run(
        _command(ref, tmp_path / "out", "--base-model=acme/no-tokenizer"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == script.EXIT_BAD_INPUT
    assert "error: base model acme/no-tokenizer: no usable tokenizer" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was trained or pushed: no branch was even created.
    assert _branch_files(hub) == set()
