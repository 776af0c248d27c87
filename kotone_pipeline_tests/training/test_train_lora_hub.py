"""The training script's Hub side against the local stand-in: the pinned dataset in, the run branch out.

No heavy packages: training itself is replaced where a test needs a finished or failed run.
"""

from __future__ import annotations

import json

import pytest
from huggingface_hub import HfApi

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

DATA_REPO = f"{USER}/kotone-data"
MODEL_REPO = f"{USER}/kotone-lora"
BRANCH = "cycle-c1-r1"


@pytest.fixture
def hub(hf_standin: HubStandIn, monkeypatch) -> HubStandIn:  # noqa: F811
    monkeypatch.setenv("HF_ENDPOINT", hf_standin.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hf_standin


@pytest.fixture
def published(hub):
    splits = make_splits()
    store = HfHubDatasetStore(DATA_REPO, token=TOKEN, endpoint=hub.url, training_script=TRAIN_SCRIPT, retry=FAST_RETRY)
    return splits, store.publish("c1", splits, {"seed": 7})


def _files(hub: HubStandIn, revision: str) -> set[str]:
    return set(HfApi(endpoint=hub.url, token=TOKEN).list_repo_files(MODEL_REPO, revision=revision))


def _run_record(hub: HubStandIn) -> dict:
    path = HfApi(endpoint=hub.url, token=TOKEN).hf_hub_download(MODEL_REPO, "run.json", revision=BRANCH)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_the_pinned_dataset_commit_loads_as_the_published_rows(published, tmp_path):
    splits, ref = published

    rows = script.load_dataset_dir(script.download_dataset(DATA_REPO, ref.version, tmp_path))

    assert {split: [r["id"] for r in rs] for split, rs in rows.items()} == {
        split: [p.id for p in pairs] for split, pairs in splits.items()
    }
    assert rows["train"][0]["vector"] == splits["train"][0].vector.as_dict()


def _fake_run(args, hparams, record):
    """Stands in for training: writes what a finished run writes (the trainer folder included)."""
    (args.output_dir / script.MODEL_SUBDIR).mkdir()
    (args.output_dir / script.MODEL_SUBDIR / "adapter_config.json").write_text("{}")
    (args.output_dir / script.TRAINER_SUBDIR).mkdir()
    (args.output_dir / script.TRAINER_SUBDIR / "checkpoint.bin").write_bytes(b"\0" * 16)
    for split in script.PREDICTED_SPLITS:
        script.write_jsonl(args.output_dir / f"predictions_{split}.jsonl", [])
    record["steps"] = 2
    return record


def test_a_finished_run_is_uploaded_to_its_own_branch(published, hub, tmp_path, monkeypatch):
    _, ref = published
    monkeypatch.setattr(script, "run", _fake_run)
    out = tmp_path / "out"

    code = script.main(
        [
            f"--dataset-repo={DATA_REPO}",
            f"--dataset-revision={ref.version}",
            f"--output-repo={MODEL_REPO}",
            f"--output-revision={BRANCH}",
            f"--output-dir={out}",
        ]
    )

    assert code == 0
    assert _files(hub, BRANCH) == {
        ".gitattributes",
        "run.json",
        "model/adapter_config.json",
        "predictions_validation.jsonl",
        "predictions_holdout.jsonl",
        "predictions_probe.jsonl",  # the dataset carries the probe eval split, so the run predicts it
        "predictions_human.jsonl",  # and the hand-written human set
        "predictions_field.jsonl",  # and the field set of reviewed requests (this dataset has one)
    }
    assert _files(hub, "main") == {".gitattributes"}  # main is never written
    run = _run_record(hub)
    assert run["status"] == "completed"
    assert run["dataset"] == {"repo": DATA_REPO, "revision": ref.version, "dir": None}
    assert run["output"] == {"repo": MODEL_REPO, "revision": BRANCH}


def test_a_failed_run_still_uploads_its_record_and_exits_1(published, hub, tmp_path, monkeypatch, capsys):
    _, ref = published

    def crash(args, hparams, record):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(script, "run", crash)
    argv = [f"--dataset-repo={DATA_REPO}", f"--dataset-revision={ref.version}", f"--output-dir={tmp_path}"]

    code = script.main([*argv, f"--output-repo={MODEL_REPO}", f"--output-revision={BRANCH}"])

    assert code == script.EXIT_FAILED
    assert "training failed: RuntimeError: CUDA out of memory" in capsys.readouterr().err
    run = _run_record(hub)
    assert run["status"] == "failed" and "out of memory" in run["error"]


def test_secrets_never_reach_the_outputs(published, hub, tmp_path, monkeypatch, capsys):
    _, ref = published
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-value-123")
    monkeypatch.setattr(script, "run", _fake_run)

    argv = [f"--dataset-repo={DATA_REPO}", f"--dataset-revision={ref.version}", f"--output-dir={tmp_path}"]
    assert script.main(argv) == 0

    captured = capsys.readouterr()
    outputs = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")]
    written = "".join(p.read_text() for p in outputs)
    for secret in (TOKEN, "wandb-secret-value-123"):
        assert secret not in captured.out + captured.err + written


def test_a_push_the_hub_rejects_ends_the_run_with_a_clear_message_and_no_traceback(
    published, hub, tmp_path, monkeypatch, capsys
):
    _, ref = published

    def push_adapter(args, hparams, record):
        """Training done: the adapter push goes through the script's real branch client, and is refused."""
        (args.output_dir / script.MODEL_SUBDIR).mkdir()
        (args.output_dir / script.MODEL_SUBDIR / "adapter_config.json").write_text("{}")
        branch = script.RunBranch(args.output_repo, args.output_revision)
        branch.prepare()
        hub.faults.fail("repo.commit", 403, times=10, message="You don't have the rights to write to this repo")
        script._push(branch, args.output_dir, ["model/*"], "adapter and training metrics", record["timings_s"], "k")

    monkeypatch.setattr(script, "run", push_adapter)
    argv = [f"--dataset-repo={DATA_REPO}", f"--dataset-revision={ref.version}", f"--output-dir={tmp_path}"]
    code = script.main([*argv, f"--output-repo={MODEL_REPO}", f"--output-revision={BRANCH}"])

    assert code == script.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"error: push of adapter and training metrics to {MODEL_REPO}@{BRANCH} failed" in err
    assert "rights to write" in err and "Traceback" not in err
    assert "model/adapter_config.json" not in _files(hub, BRANCH)  # nothing half-pushed
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "push of adapter" in record["error"]
