"""W&B lineage: dataset and model artifacts, use_artifact links, and the dagster-wandb login path.

Offline runs are read back from wandb's own record file (``run-*.wandb``), as ``wandb sync`` would read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from kotone_pipeline.cycle.documents import AugmentedPairsDoc, HardDimsDoc, ValidatedRun, ValidationSnapshotDoc
from kotone_pipeline.cycle.tracking import (
    CHAMPION_ALIAS,
    DATASET_ARTIFACT,
    MODEL_ARTIFACT,
    log_dataset,
    model_references,
)
from kotone_pipeline.orchestration.resources import TrackerResource
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetRef
from kotone_pipeline.services.tracker import RunLink, artifact_alias, file_reference
from kotone_pipeline.services.wandb_tracker import WandbTracker
from kotone_pipeline_tests.documents import split_doc, submission

FAKE_KEY = "wandbfakekey0123456789abcdef0123456789abcdef"
FAKE_HF = "hf_fakeLineageToken987654321"
HOST = "https://wandb.example.test"
VERSION = "0123456789abcdef"
HUB_SHA = "a" * 40


@dataclass
class ArtifactRecord:
    type: str
    name: str
    aliases: list[str]
    use_after_commit: bool
    digest: str
    metadata: dict[str, Any]
    entries: dict[str, dict[str, str]]  # artifact path -> ref / local_path


def _records(run_dir: Path) -> list[Any]:
    """The protobuf records of an offline run, read with wandb's datastore as ``wandb sync`` reads them.

    wandb-core writes the file in its own process and may still be at it just after ``finish()`` returns on a
    loaded machine: read until the run's ``exit`` record is there and every checksum holds."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal.datastore import DataStore

    (wandb_file,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + 20
    while True:
        records, complete = [], False
        store = DataStore()
        store.open_for_scan(str(wandb_file))
        try:
            while (data := store.scan_data()) is not None:
                record = pb.Record()
                record.ParseFromString(data)
                records.append(record)
            complete = any(r.WhichOneof("record_type") == "exit" for r in records)
        except AssertionError:  # a record still being written
            complete = False
        finally:
            store.close()
        if complete or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _artifact_records(run_dir: Path) -> list[ArtifactRecord]:
    """The artifact records of an offline run."""
    out = []
    for record in _records(run_dir):
        if record.WhichOneof("record_type") != "artifact":
            continue
        art = record.artifact
        out.append(
            ArtifactRecord(
                type=art.type,
                name=art.name,
                aliases=list(art.aliases),
                use_after_commit=art.use_after_commit,
                digest=art.digest,
                metadata=json.loads(art.metadata) if art.metadata else {},
                entries={e.path: {"ref": e.ref, "local_path": e.local_path} for e in art.manifest.contents},
            )
        )
    return out


def _summary(run_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for record in _records(run_dir):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                out[key] = json.loads(item.value_json)
    return out


@dataclass
class Lineage:
    root: Path
    dataset_dir: Path
    model_dir: Path
    dataset_run: RunLink
    train_run: RunLink
    dataset_name: str | None
    model_name: str | None


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lineage]:
    """A dataset run logs the split; a training run uses it and logs the promoted model."""
    base = tmp_path_factory.mktemp("lineage")
    root = base / "home"
    dataset_dir = base / "datasets" / "kotone-pairs" / VERSION
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "train.jsonl").write_text('{"id": "p1"}\n')
    (dataset_dir / "card.json").write_text(json.dumps({"version": VERSION, "rows": 1}))
    model_dir = base / "jobs" / "c1-r0" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "model.json").write_text("{}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DISABLE_WEAVE", "true")
        mp.setenv("WANDB_API_KEY", FAKE_KEY)  # present, but offline must neither use nor write it
        mp.setenv("HF_TOKEN", FAKE_HF)
        mp.setenv("WANDB_DATA_DIR", str(root / "wandb" / "data"))
        mp.setenv("WANDB_CACHE_DIR", str(root / "cache"))
        tracker = WandbTracker("offline", project="kotone-test", root_dir=root)
        with tracker.start("c1", name="c1-dataset", job_type="dataset", config={}) as run:
            dataset_name = run.log_artifact(
                DATASET_ARTIFACT,
                "dataset",
                aliases=["cycle-c1", VERSION],
                files={"card.json": dataset_dir / "card.json"},
                references=[file_reference(dataset_dir), f"https://huggingface.co/datasets/o/kotone/tree/{HUB_SHA}"],
                metadata={"version": VERSION, "hf_token": FAKE_HF, "note": f"pushed with {FAKE_HF}"},
            )
        with tracker.start("c1", name="c1-cycle", job_type="cycle", config={}) as train:
            assert dataset_name is not None
            train.use_artifact(dataset_name, "dataset")
            model_name = train.log_artifact(
                MODEL_ARTIFACT,
                "model",
                aliases=["cycle-c1", CHAMPION_ALIAS],
                references=[file_reference(model_dir)],
                metadata={"model_uri": str(model_dir)},
            )
    yield Lineage(root, dataset_dir, model_dir, run.finish(), train.finish(), dataset_name, model_name)


def test_dataset_artifact_is_the_dataset_runs_output(lineage: Lineage) -> None:
    assert lineage.dataset_name == "kotone-dataset:cycle-c1"  # offline: versions are assigned at sync
    (record,) = _artifact_records(Path(lineage.dataset_run.run_dir or ""))
    assert (record.type, record.name, record.use_after_commit) == ("dataset", "kotone-dataset", False)
    assert set(record.aliases) == {"cycle-c1", VERSION, "latest"}
    # The card is a real (staged) file; the data itself is only referenced, never copied.
    assert record.entries["card.json"]["local_path"]
    assert Path(record.entries["card.json"]["local_path"]).is_relative_to(lineage.root)
    assert record.entries[f"{VERSION}/train.jsonl"]["ref"] == f"{lineage.dataset_dir.as_uri()}/train.jsonl"
    assert record.entries[HUB_SHA]["ref"].startswith("https://huggingface.co/datasets/o/kotone/tree/")


def test_training_run_uses_the_same_dataset_version(lineage: Lineage) -> None:
    produced = _artifact_records(Path(lineage.dataset_run.run_dir or ""))[0]
    used = [r for r in _artifact_records(Path(lineage.train_run.run_dir or "")) if r.type == "dataset"]
    assert len(used) == 1
    # use_after_commit: `wandb sync` records this run as a consumer; the same digest is the same version.
    assert used[0].use_after_commit is True
    assert (used[0].name, used[0].digest) == (produced.name, produced.digest)
    # Only the alias the run asked for is re-asserted (wandb adds 'latest' to every log).
    assert set(used[0].aliases) == {"cycle-c1", "latest"}


def test_champion_model_artifact_references_the_model_folder(lineage: Lineage) -> None:
    assert lineage.model_name == "kotone-model:cycle-c1"
    (model,) = [r for r in _artifact_records(Path(lineage.train_run.run_dir or "")) if r.type == "model"]
    assert (model.name, model.use_after_commit) == ("kotone-model", False)
    assert set(model.aliases) == {"cycle-c1", CHAMPION_ALIAS, "latest"}
    assert model.entries == {"model/model.json": {"ref": f"{lineage.model_dir.as_uri()}/model.json", "local_path": ""}}
    assert model.metadata == {"model_uri": str(lineage.model_dir)}


def test_artifact_metadata_is_redacted_and_no_secret_is_written(lineage: Lineage) -> None:
    (record,) = _artifact_records(Path(lineage.dataset_run.run_dir or ""))
    assert record.metadata == {"version": VERSION, "note": "***"}
    files = [p for p in lineage.root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert FAKE_KEY.encode() not in data, path
        assert FAKE_HF.encode() not in data, path


def test_offline_use_of_an_unknown_artifact_is_recorded_not_fatal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    tracker = WandbTracker("offline", project="p", root_dir=tmp_path)
    with tracker.start("c2", name="c2-cycle", job_type="cycle", config={}) as run:
        run.use_artifact("kotone-dataset:cycle-c1", "dataset")  # logged by another process: no server to ask
    run_dir = Path(run.finish().run_dir or "")
    assert _artifact_records(run_dir) == []
    assert _summary(run_dir)["used_artifacts/dataset"] == "kotone-dataset:cycle-c1"


def test_offline_use_with_the_wrong_type_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    tracker = WandbTracker("offline", project="p", root_dir=tmp_path)
    with tracker.start("c1", name="n", job_type="dataset", config={}) as run:
        name = run.log_artifact("kotone-dataset", "dataset", aliases=["cycle-c1"], metadata={"a": 1})
        assert name == "kotone-dataset:cycle-c1"
        with pytest.raises(ValueError, match="has type 'dataset', not 'model'"):
            run.use_artifact(name, "model")


def test_disabled_mode_logs_no_artifact_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "home"
    card = tmp_path / "card.json"
    card.write_text("{}")
    with WandbTracker("disabled", project="p", root_dir=root).start("c1", "n", "dataset", {}) as run:
        assert run.log_artifact("kotone-dataset", "dataset", ["cycle-c1"], files={"card.json": card}) is None
        run.use_artifact("kotone-dataset:cycle-c1", "dataset")
        # Validation runs in every mode, so a bad name shows before anyone goes online.
        with pytest.raises(ValueError, match="invalid artifact name"):
            run.log_artifact("kotone/dataset", "dataset")
        with pytest.raises(ValueError, match="nothing there"):
            run.log_artifact("kotone-dataset", "dataset", references=[file_reference(tmp_path / "missing")])
        with pytest.raises(ValueError, match="must start with"):
            run.log_artifact("kotone-dataset", "dataset", references=["ftp://x/y"])
    assert not root.exists()


def test_log_dataset_from_a_split_doc(tmp_path: Path, monkeypatch) -> None:
    """What log_cycle records for a local split: the artifact name and the dataset run's sync command."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "datasets" / VERSION
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{}")
    dataset = DatasetRef(store="local", name="kotone-pairs", version=VERSION, uri=str(folder), data_hash="h")
    doc = split_doc("c7", dataset, rows={"train": 1})
    out = log_dataset(WandbTracker("offline", project="p", root_dir=tmp_path / "home"), "c7", doc)
    assert out["wandb_dataset_artifact"] == "kotone-dataset:cycle-c7"
    assert out["wandb_dataset_sync_command"].startswith("wandb sync ")
    run_dir = Path(out["wandb_dataset_sync_command"].removeprefix("wandb sync "))
    (record,) = _artifact_records(run_dir)
    assert set(record.aliases) == {"cycle-c7", VERSION, "latest"}
    assert record.metadata["rows"] == {"train": 1} and record.metadata["cycle_id"] == "c7"
    assert log_dataset(WandbTracker("disabled", project="p", root_dir=tmp_path / "off"), "c7", doc) == {}


def test_model_references(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert model_references(str(tmp_path)) == [tmp_path.as_uri()]
    assert model_references(f"org/kotone-lora@{HUB_SHA}") == [f"https://huggingface.co/org/kotone-lora/tree/{HUB_SHA}"]
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.local:8080/")
    assert model_references("org/m@main") == ["http://hub.local:8080/org/m/tree/main"]
    assert model_references(str(tmp_path / "gone")) == []


def test_artifact_alias_makes_free_values_valid() -> None:
    assert artifact_alias("cycle-c1") == "cycle-c1"
    assert artifact_alias("org/repo@abc:1") == "org-repo-abc-1"
    with pytest.raises(ValueError):
        artifact_alias("//")


# ------------------------------------------------------------------------------------- online login path


@pytest.fixture
def captured_login(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """wandb.login as dagster-wandb calls it, captured instead of reaching the network."""
    import wandb

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(wandb, "login", lambda **kwargs: calls.append(kwargs) or True)
    return calls


def test_online_login_goes_through_dagster_wandb_resource(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_login: list[dict[str, Any]]
) -> None:
    import dagster_wandb.resources
    import wandb

    resource_calls: list[Any] = []
    original = dagster_wandb.resources.wandb_resource
    monkeypatch.setattr(dagster_wandb, "wandb_resource", lambda ctx: resource_calls.append(ctx) or original(ctx))
    monkeypatch.delenv("KOTONE_WANDB_MODE", raising=False)
    resource = TrackerResource(mode="online", api_key=FAKE_KEY, host=HOST, home=str(tmp_path))
    tracker = resource.get_tracker()
    assert captured_login == []  # building the tracker does not log in; the first run does
    factory = tracker._api_factory  # type: ignore[attr-defined]
    assert factory is not None
    handle = factory()
    assert factory() is handle  # one login per tracker
    assert len(resource_calls) == 1
    assert captured_login == [{"key": FAKE_KEY, "host": HOST, "anonymous": "never"}]
    assert handle["sdk"] is wandb and handle["host"] == HOST and handle["api"] is not None


def test_online_key_and_host_default_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_login: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", HOST + "/")
    monkeypatch.delenv("KOTONE_WANDB_MODE", raising=False)
    # As resources_from_env builds it: the key is a dg.EnvVar, resolved by Dagster, never in config.
    resource = TrackerResource(api_key=dg.EnvVar("WANDB_API_KEY"), home=str(tmp_path))
    with dg.build_resources({"tracker": resource}) as resources:
        tracker = resources.tracker.get_tracker()
    assert tracker.mode == "online"
    tracker._api_factory()  # type: ignore[attr-defined]
    assert captured_login == [{"key": FAKE_KEY, "host": HOST, "anonymous": "never"}]


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_offline_and_disabled_never_log_in(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured_login: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    tracker = TrackerResource(mode=mode, api_key=FAKE_KEY, host=HOST, home=str(tmp_path)).get_tracker()
    assert tracker._api_factory is None  # type: ignore[attr-defined]
    with tracker.start("c1", "n", "dataset", {}) as run:
        run.log_metrics({"a": 1.0})
    assert captured_login == []


# ------------------------------------------------------------------------------------ the cycle's lineage


def _cycle_docs(home: Path, dataset_dir: Path) -> CycleArtifacts:
    """The few cycle documents log_cycle reads, without running a cycle."""
    arts = CycleArtifacts(home)
    dataset = DatasetRef(store="local", name="kotone-pairs", version=VERSION, uri=str(dataset_dir), data_hash="h")
    submission_doc = submission("c3", ["c3--r0"], uri=str(dataset_dir))
    submission_doc.runs[0].hparams = {"alpha": 1.0}
    arts.write("c3", submission_doc)
    hard = HardDimsDoc(focus=["energy"], k=1, by_dim={"energy": 1.0}, source="eval_rows", top_failures=[])
    arts.write("c3", hard)
    arts.write("c3", split_doc("c3", dataset, rows={"train": 1}))
    arts.write("c3", AugmentedPairsDoc(cycle_id="c3", counts={"augmented": 1}, focus=["energy"]))
    run = ValidatedRun(run_id="r0", job_id="c3--r0", stage="COMPLETED")
    arts.write("c3", ValidationSnapshotDoc(cycle_id="c3", runs=[run], completed=0, failed=1))
    return arts


@pytest.mark.parametrize("promote", [True, False])
def test_log_cycle_links_dataset_training_and_champion(tmp_path: Path, monkeypatch, promote: bool) -> None:
    from kotone_pipeline.cycle.tracking import log_cycle
    from kotone_pipeline.domain.data.schemas import GateDecision

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    dataset_dir = tmp_path / "datasets" / VERSION
    dataset_dir.mkdir(parents=True)
    (dataset_dir / "card.json").write_text("{}")
    model_dir = tmp_path / "jobs" / "c3-r0" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "weights.json").write_text("{}")
    decision = GateDecision(
        promote=promote,
        candidate_run_id="c3/r0",
        candidate_model_ref=str(model_dir),
        reference_kind="baseline",
        reference_id="constant",
        candidate_holdout_mae=1.0,
        reference_holdout_mae=2.0,
        reasons=["pass"],
    )
    tracker = WandbTracker("offline", project="p", root_dir=tmp_path / "home")
    tracking = log_cycle(tracker, _cycle_docs(tmp_path / "home", dataset_dir), "c3", decision)
    assert tracking["wandb_dataset_artifact"] == "kotone-dataset:cycle-c3"
    assert tracking["wandb_dataset_run_id"] != tracking["wandb_run_id"]
    records = _artifact_records(Path(tracking["wandb_run_dir"]))
    (used,) = [r for r in records if r.type == "dataset"]
    assert used.use_after_commit and used.name == DATASET_ARTIFACT
    models = [r for r in records if r.type == "model"]
    if promote:
        assert tracking["wandb_model_artifact"] == "kotone-model:cycle-c3"
        (model,) = models
        assert set(model.aliases) == {"cycle-c3", CHAMPION_ALIAS, "latest"}
        assert model.entries["model/weights.json"]["ref"] == f"{model_dir.as_uri()}/weights.json"
        assert model.metadata["dataset_artifact"] == "kotone-dataset:cycle-c3"
    else:
        assert "wandb_model_artifact" not in tracking and models == []


def test_offline_use_in_another_process_resolves_through_the_spec(tmp_path: Path, monkeypatch) -> None:
    """The split is logged in one Dagster run, used in a later one: a fresh tracker that never saw the log
    gets the spec rebuilt from the split doc, and records the same version (digest) as used."""
    from kotone_pipeline.cycle.tracking import dataset_artifact_spec

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "datasets" / VERSION
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{}")
    (folder / "train.jsonl").write_text('{"id": "p1"}\n')
    dataset = DatasetRef(store="local", name="kotone-pairs", version=VERSION, uri=str(folder), data_hash="h")
    doc = split_doc("c7", dataset, rows={"train": 1})
    logged = log_dataset(WandbTracker("offline", project="p", root_dir=tmp_path / "home"), "c3", doc)
    (produced,) = _artifact_records(Path(logged["wandb_dataset_run_dir"]))
    later = WandbTracker("offline", project="p", root_dir=tmp_path / "home")
    with later.start("c3", name="c3-cycle", job_type="cycle", config={}) as run:
        run.use_artifact(logged["wandb_dataset_artifact"], "dataset", like=dataset_artifact_spec("c3", doc))
    (used,) = _artifact_records(Path(run.finish().run_dir or ""))
    assert (used.name, used.digest, used.use_after_commit) == (produced.name, produced.digest, True)
    assert set(used.aliases) == {"cycle-c3", "latest"}


def test_only_online_dataset_artifacts_are_passed_to_training_jobs() -> None:
    from kotone_pipeline.cycle.tracking import DATASET_ARTIFACT_ENV, dataset_artifact_for_jobs
    from kotone_pipeline.training import train_lora

    assert train_lora.DATASET_ARTIFACT_ENV == DATASET_ARTIFACT_ENV  # the script cannot import the package
    online = {"wandb_dataset_mode": "online", "wandb_dataset_artifact": "kotone-dataset:v3"}
    dataset = DatasetRef(store="local", name="kotone-pairs", version=VERSION, uri="/d", data_hash="h")
    doc = split_doc("c7", dataset)
    doc.tracking = online
    assert dataset_artifact_for_jobs(doc) == "kotone-dataset:v3"
    offline = {**online, "wandb_dataset_mode": "offline"}
    doc.tracking = offline
    assert dataset_artifact_for_jobs(doc) is None
    doc.tracking = {}
    assert dataset_artifact_for_jobs(doc) is None


class _RecordingRun:
    def __init__(self, fail: bool = False) -> None:
        self.used: list[tuple[str, str]] = []
        self.fail = fail

    def use_artifact(self, name: str, type: str) -> None:
        if self.fail:
            raise RuntimeError(f"artifact {name} not found")
        self.used.append((name, type))


def test_the_training_script_declares_its_dataset_input(capsys) -> None:
    from kotone_pipeline.training.train_lora import declare_dataset_input

    run = _RecordingRun()
    assert declare_dataset_input(run, "kotone-dataset:v3") == "kotone-dataset:v3"
    assert run.used == [("kotone-dataset:v3", "dataset")]
    assert declare_dataset_input(run, None) is None and declare_dataset_input(None, "x:v1") is None
    # A name W&B cannot resolve is a warning in the job's log, never a failed training run.
    assert declare_dataset_input(_RecordingRun(fail=True), "kotone-dataset:v9") is None
    assert "could not declare the dataset artifact kotone-dataset:v9" in capsys.readouterr().err
