"""Cycles through Dagster on the production configuration (HF Jobs + HF Hub dataset store, LoRA trainer),
against the local HF stand-in.

The stand-in runs each job's command as a local subprocess: ``uv run <pinned script URL>`` fetches the script
the cycle published in its dataset commit and runs it.

Three cycles: c1 from the baselines, c2 from c1's HF champion, c3 under injected faults (a create answered
500 after the job was created; 503 on list calls, during submission and for a whole sensor tick).

c2 runs the **real** ``training/train_lora.py`` (the production configuration: no KOTONE_HF_TRAINING_SCRIPT),
as a smoke run (``KOTONE_JOB_MAX_STEPS``, ``KOTONE_JOB_MAX_TRAIN_ROWS``, ``KOTONE_JOB_MAX_PREDICT_ROWS``, as
``kotone cycle new --run --smoke`` sets them): each job downloads the pinned dataset and the default base model
through huggingface_hub from the stand-in, which hosts a tiny random model of the same family (Mistral3, built
in the test), trains LoRA for two steps, predicts the first rows of every eval split in batches, and pushes
adapter, metrics and predictions to its run branch; validation scores those outputs on the full sets (rows
not predicted count as invalid). A random model cannot beat c1's champion, so the gate keeps it, from the
real numbers. (Predicting all ~1600 eval rows of a cycle on 2 shared CPU cores takes minutes per job.)

c1 and c3 publish the stand-in's ``fake_train.py`` (``KOTONE_HF_TRAINING_SCRIPT``), with the same command
line; its machines fit the project's local text model (``FAKE_TRAIN_MODEL=local``), so a run can beat the
baselines and get promoted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import huggingface_hub.constants
import pytest
from dagster._serdes import serialize_value
from huggingface_hub import set_client_factory
from huggingface_hub.utils import _http as hf_http

from kotone_pipeline.cycle import champion_eval, submission
from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.metrics import score_prediction_records
from kotone_pipeline.orchestration.assets.cycle import training_submission
from kotone_pipeline.orchestration.resources import ConfigurationError, resources_from_env
from kotone_pipeline.orchestration.runner import CycleRunner
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.hf_common import RetryPolicy
from kotone_pipeline.services.local_jobs import LocalJobBackend
from kotone_pipeline.services.lora_predictor import TrainExtraMissingError
from kotone_pipeline.training import TRAIN_SCRIPT
from kotone_pipeline.training import train_lora as script
from kotone_pipeline_tests.documents import read_json, split_doc
from kotone_pipeline_tests.hf_standin.fixtures import FAKE_TRAIN_SCRIPT, TOKEN, USER, hf_cycle_env, make_splits
from kotone_pipeline_tests.hf_standin.server import HubStandIn, iter_secret_hits
from kotone_pipeline_tests.hf_standin.tiny_model import prompt_corpus, publish_base_model

pytestmark = pytest.mark.slow
DATA_REPO = f"{USER}/kotone-data"
RUNS_REPO = f"{USER}/kotone-runs"  # the backend's default output repo: <namespace>/<project>-runs
CAMPAIGN = 2
SHA = re.compile(r"^[0-9a-f]{40}$")
ATTEMPTS = RetryPolicy().attempts  # what the resources' backend tries per read before giving up
REAL = "c2"  # the cycle whose jobs run the real training script
SMOKE = {"KOTONE_JOB_MAX_STEPS": "2", "KOTONE_JOB_MAX_TRAIN_ROWS": "16", "KOTONE_JOB_MAX_PREDICT_ROWS": "12"}
PREDICTED = 12


class CountingRunner(CycleRunner):
    """The headless runner, also counting the Jobs list calls each sensor evaluation makes (the runs a tick
    starts are not counted), and running hooks after a job (to inject faults at a chosen point)."""

    def __init__(self, *args: Any, hub: HubStandIn, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hub = hub
        self.list_calls_per_tick: list[int] = []
        self.after: dict[tuple[str, str | None], Any] = {}
        self._tick_start: int | None = None

    def _close_tick(self) -> None:
        if self._tick_start is not None:
            self.list_calls_per_tick.append(self.hub.count("jobs.list") - self._tick_start)
            self._tick_start = None

    def tick_sensor(self) -> int:
        self._tick_start = self.hub.count("jobs.list")
        try:
            return super().tick_sensor()
        finally:
            self._close_tick()

    def _execute(self, job_name: str, partition_key: str | None = None, tags: dict[str, str] | None = None) -> None:
        self._close_tick()
        super()._execute(job_name, partition_key, tags)
        hook = self.after.pop((job_name, partition_key), None)
        if hook is not None:
            hook()


def _jobs_of(hub: HubStandIn, cycle_id: str) -> list[Any]:
    return [j for j in hub.jobs.values() if (j.spec.get("labels") or {}).get("kotone-cycle") == cycle_id]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("kotone")
    with pytest.MonkeyPatch.context() as mp:
        # Xet storage cannot be served by the stand-in: uploads use plain LFS (read at call time).
        mp.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        mp.delenv("WANDB_API_KEY", raising=False)
        hub = HubStandIn({TOKEN: USER}).start()
        hub.machine_env["FAKE_TRAIN_MODEL"] = "local"
        env = hf_cycle_env(home, hub.url, KOTONE_CAMPAIGN_SIZE=str(CAMPAIGN))
        for name, value in env.items():
            mp.setenv(name, value)  # HF_TOKEN is resolved from the environment (dg.EnvVar) at run time
        publish_base_model(hub, prompt_corpus(make_splits(n_train=12, n_eval=4)["train"]))
        try:
            defs = build_definitions(env)
            # c2: the production configuration (the package's train_lora.py is published), smoke-sized.
            real_defs = build_definitions(
                {**{k: v for k, v in env.items() if k != "KOTONE_HF_TRAINING_SCRIPT"}, **SMOKE}
            )
            with dg.instance_for_test() as instance:
                runner = CountingRunner(defs, instance, hub=hub, poll_interval_s=0.2)
                reports = {"c1": runner.run_cycle("c1", timeout_s=120)}
                creates_after_c1 = hub.count("jobs.create")
                real_runner = CountingRunner(real_defs, instance, hub=hub, poll_interval_s=0.5)
                real_runner._cursor = runner._cursor  # one sensor, as the daemon would run it
                reports[REAL] = real_runner.run_cycle(REAL, timeout_s=300)
                runner._cursor = real_runner._cursor
                clean_ticks = [*runner.list_calls_per_tick, *real_runner.list_calls_per_tick]

                # c3 under faults: the first create is handled and then answered 500; one 503 on a list
                # during submission (absorbed by the bounded retry); once submitted, 503 on every attempt of
                # one sensor tick's list call and on the first attempt of the next tick's.
                hub.faults.fail_after("jobs.create", 500)
                hub.faults.fail("jobs.list", 503)
                runner.after[("cycle_job", "c3")] = lambda: hub.faults.fail("jobs.list", 503, times=ATTEMPTS + 1)
                reports["c3"] = runner.run_cycle("c3", timeout_s=180)
                yield SimpleNamespace(
                    hub=hub,
                    home=home,
                    arts=CycleArtifacts(home),
                    defs=defs,
                    instance=instance,
                    runner=runner,
                    real_defs=real_defs,
                    reports=reports,
                    creates_after_c1=creates_after_c1,
                    clean_ticks=clean_ticks,
                    sensor_cursor=json.loads(runner._cursor or "{}"),
                )
        finally:
            hub.stop()
            set_client_factory(hf_http.default_client_factory)  # undo the clients' request timeouts


# --- one clean cycle --------------------------------------------------------------------------------------


def test_the_split_is_one_commit_of_the_dataset_repo_and_every_job_pins_it(world) -> None:
    repo = world.hub.repos[("dataset", DATA_REPO)]
    for cycle in ("c1", "c2", "c3"):
        dataset = read_json(world.arts, cycle, "split_dataset")["dataset"]
        assert dataset["store"] == "hf" and dataset["name"] == DATA_REPO
        sha = dataset["version"]
        assert SHA.match(sha) and sha in repo.commits
        # The job runs the script published in that very commit, on that very commit's data.
        published = TRAIN_SCRIPT if cycle == REAL else FAKE_TRAIN_SCRIPT
        assert repo.commits[sha].files["scripts/train_lora.py"].data == published.read_bytes()
        jobs = _jobs_of(world.hub, cycle)
        assert jobs
        for job in jobs:
            assert job.spec["command"][:3] == [
                "uv",
                "run",
                f"{world.hub.url}/datasets/{DATA_REPO}/resolve/{sha}/scripts/train_lora.py",
            ]
            argv = [*job.spec["command"], *job.spec.get("arguments", [])]
            assert f"--dataset-revision={sha}" in argv
            assert f"--dataset-repo={DATA_REPO}" in argv


def test_one_labelled_job_per_run_and_the_first_cycle_created_exactly_that_many(world) -> None:
    assert world.creates_after_c1 == CAMPAIGN
    for cycle in ("c1", "c2", "c3"):
        labels = [j.spec["labels"] for j in _jobs_of(world.hub, cycle)]
        assert sorted(lab["kotone-run"] for lab in labels) == [f"r{i}" for i in range(CAMPAIGN)]
        assert all(lab["kotone-project"] == "kotone" for lab in labels)
        doc = read_json(world.arts, cycle, "training_submission")
        assert doc["backend"] == "hf" and doc["trainer"] == "lora"
        assert {r["job_id"] for r in doc["runs"]} == {j.id for j in _jobs_of(world.hub, cycle)}


def test_every_sensor_tick_polls_all_jobs_with_one_list_call(world) -> None:
    assert len(world.clean_ticks) >= 2  # c1 and c2 each waited at least one tick for their jobs
    assert world.clean_ticks == [1] * len(world.clean_ticks)


def test_the_sensor_reports_trained_models_and_validation_scores_the_runs_outputs(world) -> None:
    event = world.instance.get_latest_materialization_event(dg.AssetKey("trained_models"))
    assert event is not None
    records = world.instance.fetch_materializations(dg.AssetKey("trained_models"), limit=10).records
    by_cycle = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert set(by_cycle) == {"c1", "c2", "c3"}
    assert by_cycle["c1"]["completed"].value == CAMPAIGN and by_cycle["c1"]["failed"].value == 0

    snapshot = read_json(world.arts, "c1", "validation_snapshot")
    runs_repo = world.hub.repos[("model", RUNS_REPO)]
    for run in snapshot["runs"]:
        assert run["stage"] == "COMPLETED"
        branch_head = runs_repo.branches[f"cycle-c1-{run['run_id']}"]
        # The model is pinned to the commit the outputs were fetched from, not to the movable branch.
        assert run["model_uri"] == f"{RUNS_REPO}@{branch_head}"
        # Re-score the predictions straight from that commit: the snapshot used the same metrics code.
        blob = runs_repo.commits[branch_head].files["predictions_holdout.jsonl"].data.decode()
        recorded = [json.loads(line) for line in blob.splitlines() if line]
        pairs = _holdout_pairs(world)
        summary, _ = score_prediction_records(pairs, recorded, model_id="check", dataset="holdout")
        assert run["holdout"]["vector_mae"] == pytest.approx(summary.vector_mae)
        assert run["holdout"]["rows"] == len(pairs)


def _holdout_pairs(world, cycle: str = "c1") -> list[Pair]:
    ref = read_json(world.arts, cycle, "split_dataset")["dataset"]
    blob = world.hub.repos[("dataset", DATA_REPO)].commits[ref["version"]].files["splits/holdout.jsonl"].data
    return [Pair.model_validate_json(line) for line in blob.decode().splitlines() if line]


def test_the_first_cycle_promotes_its_best_hf_run_over_the_baselines(world) -> None:
    first = world.reports["c1"]
    # The fake job fits the local text model, which beats both baselines by far on this data (as the
    # local end-to-end test shows), so the gate promotes it.
    assert first.champion_before is None
    assert first.decision == "promote", first.reasons
    decision = read_json(world.arts, "c1", "promotion_decision")
    best = read_json(world.arts, "c1", "validation_snapshot")["best_run_id"]
    assert decision["champion_after"]["model_uri"].startswith(f"{RUNS_REPO}@")
    assert decision["champion_after"]["run_id"] == best


def test_rematerializing_training_submission_creates_no_job(world) -> None:
    before = world.hub.count("jobs.create")
    ids_before = {r["job_id"] for r in read_json(world.arts, "c1", "training_submission")["runs"]}
    result = dg.materialize(
        [training_submission], resources=world.defs.resources, partition_key="c1", instance=world.instance
    )
    assert result.success
    assert world.hub.count("jobs.create") == before
    doc = read_json(world.arts, "c1", "training_submission")
    assert {r["job_id"] for r in doc["runs"]} == ids_before
    assert all(r["adopted"] for r in doc["runs"])


# --- the real training script as the jobs of c2 -------------------------------------------------------------


def _branch(world, run_id: str) -> Any:
    repo = world.hub.repos[("model", RUNS_REPO)]
    return repo.commits[repo.branches[f"cycle-{REAL}-{run_id}"]]


def test_each_job_of_the_real_cycle_ran_the_real_script_on_the_tiny_base_model_from_the_hub(world) -> None:
    jobs = _jobs_of(world.hub, REAL)
    assert len(jobs) == CAMPAIGN
    base = world.hub.repos[("model", script.DEFAULT_BASE_MODEL)]
    weights = base.resolve("main").files["model.safetensors"]
    assert weights.lfs  # downloaded through huggingface_hub like the real 4.7 GB file, only smaller
    downloads = [
        r
        for r in world.hub.requests
        if r.path.endswith(f"{script.DEFAULT_BASE_MODEL}/resolve/" + base.branches["main"] + "/model.safetensors")
    ]
    assert len(downloads) >= CAMPAIGN
    for job in jobs:
        assert job.stage == "COMPLETED", "\n".join(line for _, line in job.logs[-40:])
        argv = [*job.spec["command"], *job.spec.get("arguments", [])]
        assert {"--max-steps=2", "--max-train-rows=16", f"--max-predict-rows={PREDICTED}"} <= set(argv)
        logs = "\n".join(line for _, line in job.logs)
        assert "[train_lora] trained 2 steps" in logs
        assert "pushed adapter and training metrics" in logs
        head = _branch(world, job.spec["labels"]["kotone-run"])
        assert {
            "model/adapter_config.json",
            "model/adapter_model.safetensors",
            "metrics.json",
            "run.json",
            # Every predicted split the version holds (no field split: nobody reviewed a served request).
            *(f"predictions_{split}.jsonl" for split in script.PREDICTED_SPLITS if split != "field"),
        } <= set(head.files)
        assert not any(path.startswith("checkpoint/") for path in head.files)
        run = json.loads(head.files["run.json"].data)
        assert run["status"] == "completed" and run["steps"] == 2 and run["rows_trained"] == 16
        assert run["base_model"] == script.DEFAULT_BASE_MODEL and run["prompt_format"] == "chat"
        assert run["predict_batch_size"] == script.JOB_PREDICT_BATCH
        assert run["dataset"]["revision"] == read_json(world.arts, REAL, "split_dataset")["dataset"]["version"]
        adapter = json.loads(head.files["model/adapter_config.json"].data)
        assert adapter["base_model_name_or_path"] == script.DEFAULT_BASE_MODEL
        assert adapter["target_modules"] == script.LORA_TARGET_REGEX  # the vision tower stays frozen


def test_the_real_cycle_recorded_its_timeouts_prices_and_smoke_settings(world) -> None:
    doc = read_json(world.arts, REAL, "training_submission")
    assert doc["smoke"] == {"max_steps": 2, "max_train_rows": 16, "max_predict_rows": PREDICTED}
    assert doc["pricing"]["source"] == "list_jobs_hardware" and doc["pricing"]["flavor"] == "cpu-basic"
    by_run = {j.spec["labels"]["kotone-run"]: j for j in _jobs_of(world.hub, REAL)}
    for run in doc["runs"]:
        job = by_run[run["run_id"]]
        assert job.spec["timeoutSeconds"] == run["timeout_s"] >= 600
        assert job.spec["labels"]["kotone-timeout-s"] == str(run["timeout_s"])


def test_validation_scores_the_real_outputs_and_the_gate_decides_from_them(world) -> None:
    snapshot = read_json(world.arts, REAL, "validation_snapshot")
    pairs = _holdout_pairs(world, REAL)
    for run in snapshot["runs"]:
        assert run["stage"] == "COMPLETED"
        head = _branch(world, run["run_id"])
        assert run["model_uri"] == f"{RUNS_REPO}@{head.oid}"
        recorded = [json.loads(line) for line in head.files["predictions_holdout.jsonl"].data.decode().splitlines()]
        # A smoke run predicts the first rows only; the others score as invalid, on the full holdout set.
        assert [r["pair_id"] for r in recorded] == [p.id for p in pairs[:PREDICTED]]
        assert run["holdout"]["rows"] == len(pairs)
        summary, _ = score_prediction_records(pairs, recorded, model_id="check", dataset="holdout")
        assert run["holdout"]["vector_mae"] == pytest.approx(summary.vector_mae)
    decision = read_json(world.arts, REAL, "promotion_decision")
    # Two steps of LoRA on a random model do not beat c1's champion: kept, with the measured reasons.
    assert world.reports[REAL].decision == "keep"
    assert decision["champion_after"]["model_id"] == world.reports["c1"].champion_after
    assert any("json_valid_rate" in reason for reason in decision["decision"]["reasons"])


# --- the second cycle starts from an HF champion ---------------------------------------------------------


def test_the_next_cycle_scores_the_hf_champion_from_its_recorded_predictions(world) -> None:
    first = world.reports["c1"]
    eval_doc = read_json(world.arts, "c2", "eval_summary")
    assert eval_doc["current_model"] == "champion"
    assert eval_doc["champion"]["model_id"] == first.champion_after
    how = eval_doc["champion_eval"]
    assert how["mode"] == "recorded" and how["holdout"] == "predictions_holdout.jsonl"
    # The dataset commit carries the probe set, so the run predicted it and hard dims are mined from the
    # probe (never from the holdout), as for a local champion.
    assert how["probe"] == "predictions_probe.jsonl"
    champion = eval_doc["summaries"]["champion"]
    assert champion["probe"]["dataset"] == "probe"
    assert champion["probe"]["rows"] == len(world.arts.read_eval_rows("c2", "eval_rows_probe"))
    # The holdout MAE measured now equals what the gate saw for the candidate in cycle 1.
    assert champion["holdout"]["vector_mae"] == pytest.approx(first.candidate_holdout_mae)
    assert world.reports["c2"].champion_before == first.champion_after
    assert read_json(world.arts, "c2", "hard_dims")["eval_model_id"] == first.champion_after


# --- faults -----------------------------------------------------------------------------------------------


def test_the_fault_cycle_completes_without_a_duplicate_job(world) -> None:
    third = world.reports["c3"]
    assert world.arts.has("c3", "promotion_decision")
    assert third.decision in ("promote", "keep")
    runs = Counter(j.spec["labels"]["kotone-run"] for j in _jobs_of(world.hub, "c3"))
    assert runs == Counter({f"r{i}": 1 for i in range(CAMPAIGN)})
    doc = read_json(world.arts, "c3", "training_submission")
    # The job whose create was answered 500 was found by its labels and adopted, not created again.
    assert [r["adopted"] for r in doc["runs"]] == [True] + [False] * (CAMPAIGN - 1)
    refused = [r for r in world.hub.requests if r.route == "jobs.list" and r.status == 503]
    assert len(refused) == 1 + ATTEMPTS + 1
    create_statuses = [r.status for r in world.hub.requests if r.route == "jobs.create"]
    assert create_statuses.count(500) == 1
    # One tick lost its list call to the outage and skipped (counted in the cursor); a later one reported.
    assert world.sensor_cursor["errors"] == 1
    assert "c3" in world.sensor_cursor["reported"]


# --- secrets ----------------------------------------------------------------------------------------------


def test_the_token_is_only_in_job_secrets_and_authorization_headers(world) -> None:
    assert list(iter_secret_hits(world.hub, TOKEN)) == []
    for job in world.hub.jobs.values():
        assert job.spec["secrets"]["HF_TOKEN"] == TOKEN
        public = {k: v for k, v in job.spec.items() if k != "secrets"}
        assert TOKEN not in json.dumps(public)
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in world.hub.requests if r.route == "jobs.create")


def test_the_token_is_nowhere_in_dagster_events_logs_or_files(world) -> None:
    instance: dg.DagsterInstance = world.instance
    materializations = [
        record
        for key in instance.get_asset_keys()
        for record in instance.fetch_materializations(key, limit=1000).records
    ]
    assert {"trained_models", "training_submission", "validation_snapshot"} <= {
        r.asset_key.to_user_string() for r in materializations
    }
    metadata = "\n".join(serialize_value(r.event_log_entry) for r in materializations)
    logs = "\n".join(serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id))
    # The scans have teeth: job ids and the dataset sha are in what they read.
    job_id = next(iter(world.hub.jobs))
    sha = read_json(world.arts, "c1", "split_dataset")["dataset"]["version"]
    assert job_id in metadata and sha in metadata and job_id in logs
    assert TOKEN not in metadata
    assert TOKEN not in logs
    scanned = 0
    for root in (world.home, Path(instance.root_directory)):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                assert TOKEN.encode() not in path.read_bytes(), path
    assert scanned > 20


# --- the champion fallback and the configuration checks, without a stand-in -------------------------------


@pytest.fixture
def small_base() -> SimpleNamespace:
    splits = make_splits(n_train=4, n_eval=4)
    return SimpleNamespace(probe=splits["test"], holdout=splits["holdout"], validation=splits["validation"], field=[])


def _hf_champion(cycle_id: str = "c1", run_id: str = "r0") -> Champion:
    return Champion(
        model_id=f"{cycle_id}/{run_id}",
        model_uri=f"{RUNS_REPO}@{'a' * 40}",
        cycle_id=cycle_id,
        run_id=run_id,
        holdout_mae=0.5,
        decision_reason="test",
    )


def _write_predictions(path: Path, pairs: list[Pair], shift: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for pair in pairs:
        vector = {d: min(10, v + shift) for d, v in pair.vector.as_dict().items()}
        lines.append(json.dumps({"pair_id": pair.id, "raw": json.dumps(vector), "prediction": vector}))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_a_champion_that_cannot_run_here_and_recorded_nothing_fails_with_a_clear_message(
    tmp_path, small_base, monkeypatch
) -> None:
    def no_train_extra(uri: str):
        raise TrainExtraMissingError("LoraPredictor needs the train extra (pip install 'kotone-pipeline[train]')")

    monkeypatch.setattr(champion_eval, "load_predictor", no_train_extra)
    with pytest.raises(champion_eval.ChampionUnavailableError) as err:
        champion_eval.evaluate_champion(CycleArtifacts(tmp_path), _hf_champion(), small_base)
    message = str(err.value)
    assert "recorded no predictions_holdout.jsonl" in message
    assert "TrainExtraMissingError" in message and "validation_snapshot" in message


def test_recorded_predictions_for_another_holdout_set_are_refused(tmp_path, small_base) -> None:
    arts = CycleArtifacts(tmp_path)
    champion = _hf_champion()
    # Predictions for all but one holdout row: scoring the gap as neutral would misstate the champion.
    _write_predictions(arts.path("c1", "runs/r0/predictions_holdout.jsonl"), small_base.holdout[1:])
    with pytest.raises(champion_eval.ChampionUnavailableError, match=r"no prediction for 1 of the 4 holdout rows"):
        champion_eval.evaluate_champion(arts, champion, small_base)


def test_recorded_probe_predictions_are_preferred_to_validation_rows(tmp_path, small_base) -> None:
    arts = CycleArtifacts(tmp_path)
    champion = _hf_champion()
    run_dir = arts.path("c1", "runs/r0")
    _write_predictions(run_dir / "predictions_holdout.jsonl", small_base.holdout)  # exact: MAE 0
    _write_predictions(run_dir / "predictions_probe.jsonl", small_base.probe, shift=1)
    result = champion_eval.evaluate_champion(arts, champion, small_base)
    assert result.how["mode"] == "recorded" and result.how["probe"] == "predictions_probe.jsonl"
    assert result.summaries["holdout"].vector_mae == 0.0
    assert result.summaries["probe"].dataset == "probe" and result.summaries["probe"].vector_mae > 0
    assert [r.pair_id for r in result.rows["probe"]] == [p.id for p in small_base.probe]


def test_without_probe_predictions_or_scored_validation_rows_the_error_says_what_to_rerun(tmp_path, small_base) -> None:
    arts = CycleArtifacts(tmp_path)
    _write_predictions(arts.path("c1", "runs/r0/predictions_holdout.jsonl"), small_base.holdout)
    with pytest.raises(champion_eval.ChampionUnavailableError, match="re-materialize validation_snapshot of cycle c1"):
        champion_eval.evaluate_champion(arts, _hf_champion(), small_base)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KOTONE_JOB_BACKEND": "local", "KOTONE_DATASET_STORE": "hf"}, "KOTONE_DATASET_STORE=local"),
        ({"KOTONE_JOB_BACKEND": "hf", "KOTONE_DATASET_STORE": "local"}, "set KOTONE_DATASET_STORE=hf"),
        (
            {"KOTONE_JOB_BACKEND": "hf", "KOTONE_DATASET_STORE": "hf", "KOTONE_TRAINER": "local"},
            "set KOTONE_TRAINER=lora",
        ),
    ],
)
def test_settings_from_two_worlds_are_refused_when_the_resources_are_built(env, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resources_from_env(env)


def test_the_local_backend_refuses_a_split_published_to_the_hub(tmp_path) -> None:
    arts = CycleArtifacts(tmp_path)
    uri = f"http://hub/datasets/{DATA_REPO}"
    arts.write("c1", split_doc("c1", DatasetRef(store="hf", name=DATA_REPO, version="abc", uri=uri, data_hash="h")))
    backend = LocalJobBackend(tmp_path / "jobs")
    with pytest.raises(ValueError, match="use the local dataset store"):
        submission.step_training_submission(arts, backend, LoopConfig(), "c1")
    assert list(backend.root.iterdir()) == []


def test_the_hf_backend_defaults_the_trainer_to_lora_and_the_local_default_is_unchanged() -> None:
    hf = resources_from_env({"KOTONE_JOB_BACKEND": "hf", "KOTONE_DATASET_STORE": "hf"})
    assert hf["loop_settings"].config().trainer == "lora"
    assert resources_from_env({})["loop_settings"].config().trainer == "local"
