"""WandbTracker against the real wandb SDK: offline runs are read back from wandb's own record file."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kotone_pipeline.domain.data.schemas import (
    EvalRow,
    EvalSummary,
    FailureExample,
    GateDecision,
    HardDimReport,
    Vector,
)
from kotone_pipeline.domain.loop.hard_dims import top_failures
from kotone_pipeline.services.tracker import RunLink, TrackerUnavailableError, redact, tracker_mode_from_env
from kotone_pipeline.services.tracker_tables import (
    PREDICTIONS_TABLE,
    TOP_FAILURES_TABLE,
    eval_metrics,
    failures_table,
    gate_metrics,
    gate_summary,
    hard_dims_metrics,
    predictions_table,
)
from kotone_pipeline.services.wandb_tracker import WandbTracker

FAKE_KEY = "wandbfakekey0123456789abcdef0123456789abcdef"  # 40+ chars, so wandb accepts its shape
FAKE_HF = "hf_fakeTokenValue987654321"


def _row(pid: str, target: list[int], pred: list[int], source_type: str = "request_text") -> EvalRow:
    errors = [abs(p - t) for p, t in zip(pred, target, strict=True)]
    dims = ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia")
    return EvalRow(
        pair_id=pid,
        group_id=f"g_{pid}",
        source_type=source_type,
        text=f"text of {pid}",
        target=Vector.from_values(target),
        prediction=Vector.from_values(pred),
        valid=True,
        abs_error=dict(zip(dims, errors, strict=True)),
        row_mae=sum(errors) / 6,
    )


ROWS = [
    _row("p_a", [8, 5, 5, 5, 5, 5], [5, 5, 5, 5, 5, 5]),  # row MAE 0.5
    _row("p_b", [2, 5, 5, 5, 5, 9], [4, 5, 5, 5, 5, 6], "rule_prompt"),  # 5/6
    _row("p_c", [5, 5, 5, 5, 5, 5], [5, 5, 5, 5, 5, 5]),  # 0
]

SUMMARY = EvalSummary(
    model_id="m1",
    dataset="probe",
    rows=3,
    vector_mae=0.4444,
    mae_raw=4.444,
    mse_norm=0.0144,
    per_dim_mae={
        "energy": 1.6667,
        "warmth": 0.0,
        "brightness": 0.0,
        "acousticness": 0.0,
        "complexity": 0.0,
        "nostalgia": 1.0,
    },
    per_dim_r2={
        "energy": 0.1,
        "warmth": float("nan"),
        "brightness": 0.0,
        "acousticness": 0.0,
        "complexity": 0.0,
        "nostalgia": -0.5,
    },
    mean_r2=-0.1,
    exact_match_rate=1 / 3,
    within_one_rate=1 / 3,
    json_valid_rate=1.0,
    p50_latency_ms=1.5,
    p95_latency_ms=3.0,
    by_source_type={"request_text": 0.25, "rule_prompt": 0.8333},
)

GATE = GateDecision(
    promote=False,
    candidate_run_id="r1",
    reference_kind="baseline",
    reference_id="constant",
    candidate_holdout_mae=1.9,
    reference_holdout_mae=1.8,
    per_dim_delta={"energy": 0.2},
    json_valid_rate=1.0,
    reasons=["holdout MAE 1.900 is not below 1.800 - 0.005"],
)


# ------------------------------------------------------------------------------------- wandb file reader


def _read_records(run_dir: Path) -> dict[str, Any]:
    """The offline run's records, once wandb's writer has flushed them all.

    ``run.finish()`` returns when wandb's service has handled the exit, but its writer may flush the
    file a moment later (a CI run once read it before the run record was there), so the file is read
    again until its exit record is in it.
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            out = _scan_records(run_dir)
        except AssertionError:  # the datastore's check of a block still being written
            if time.monotonic() > deadline:
                raise
        else:
            if out["exit"] or time.monotonic() > deadline:
                return out
        time.sleep(0.2)


def _scan_records(run_dir: Path) -> dict[str, Any]:
    """Decode the offline run's .wandb file with wandb's own datastore and protobuf records."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal.datastore import DataStore

    (wandb_file,) = run_dir.glob("run-*.wandb")
    store = DataStore()
    store.open_for_scan(str(wandb_file))
    out: dict[str, Any] = {"config": {}, "history": {}, "summary": {}, "run": None, "exit": False}
    while (data := store.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "exit":
            out["exit"] = True
        elif kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                out["history"][key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                out["summary"][key] = json.loads(item.value_json)
    store.close()
    return out


def _table(run_dir: Path, name: str) -> list[dict[str, Any]]:
    (path,) = (run_dir / "files" / "media" / "table").glob(f"{name}_*.table.json")
    data = json.loads(path.read_text())
    return [dict(zip(data["columns"], row, strict=True)) for row in data["data"]]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunLink, float]]:
    """One offline run for the whole module (wandb init costs about a second)."""
    root = tmp_path_factory.mktemp("kotone_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DISABLE_WEAVE", "true")  # what start() sets by default; kept out of later tests
        mp.setenv("WANDB_API_KEY", FAKE_KEY)  # present but must never be used or written offline
        mp.setenv("HF_TOKEN", FAKE_HF)
        mp.setenv("WANDB_DATA_DIR", str(root / "wandb" / "data"))
        mp.setenv("WANDB_CACHE_DIR", str(root / "cache"))
        started = time.perf_counter()
        tracker = WandbTracker("offline", project="kotone-test", root_dir=root)
        config = {
            "learning_rate": 2e-5,
            "hf_token": FAKE_HF,
            "nested": {"api_key": "x", "epochs": 3, "note": f"leaked {FAKE_KEY}"},
        }
        with tracker.start("cycle-7", name="eval-cycle-7", job_type="eval", config=config) as run:
            run.log_metrics(eval_metrics(SUMMARY), prefix="eval")
            run.log_table(PREDICTIONS_TABLE, predictions_table(ROWS))
            run.log_table(TOP_FAILURES_TABLE, failures_table(top_failures(ROWS, top_n=2)))
            run.log_table("notes", [{"who": "ops", "extra": {"a": 1}, "leak": f"Bearer {FAKE_HF}"}])
            run.log_summary(gate_summary(GATE))
        link = run.finish()
        elapsed = time.perf_counter() - started
    yield root, link, elapsed


def test_offline_run_lives_under_root_and_points_to_sync(offline_run: tuple[Path, RunLink, float]) -> None:
    root, link, elapsed = offline_run
    assert link.mode == "offline" and link.url is None and link.group == "cycle-7"
    run_dir = Path(link.run_dir or "")
    assert run_dir.parent == root / "wandb" and run_dir.name.startswith("offline-run-")
    assert run_dir.name.endswith(link.run_id or "?")
    meta = link.as_metadata()
    assert meta["wandb_sync_command"] == f"wandb sync {run_dir}"
    assert "wandb_url" not in meta
    assert elapsed < 30


def test_offline_run_records_group_job_type_and_redacted_config(
    offline_run: tuple[Path, RunLink, float],
) -> None:
    _, link, _ = offline_run
    records = _read_records(Path(link.run_dir or ""))
    assert records["run"].run_group == "cycle-7"
    assert records["run"].job_type == "eval"
    assert records["run"].display_name == "eval-cycle-7"
    config = {k: v for k, v in records["config"].items() if k != "_wandb"}
    assert config == {"learning_rate": 2e-5, "nested": {"epochs": 3, "note": "***"}}


def test_offline_run_history_holds_the_eval_metrics(offline_run: tuple[Path, RunLink, float]) -> None:
    _, link, _ = offline_run
    history = _read_records(Path(link.run_dir or ""))["history"]
    assert history["eval/vector_mae"] == pytest.approx(0.4444)
    assert history["eval/per_dim_mae/energy"] == pytest.approx(1.6667)
    assert history["eval/per_dim_r2/nostalgia"] == pytest.approx(-0.5)
    assert history["eval/mae_by_source_type/rule_prompt"] == pytest.approx(0.8333)
    assert "eval/per_dim_r2/warmth" not in history  # NaN R² is left out, not logged as NaN
    assert history[f"{PREDICTIONS_TABLE}/_type"] == "table-file"
    assert history[f"{PREDICTIONS_TABLE}/nrows"] == 3


def test_offline_run_tables_read_back(offline_run: tuple[Path, RunLink, float]) -> None:
    _, link, _ = offline_run
    run_dir = Path(link.run_dir or "")
    predictions = {r["pair_id"]: r for r in _table(run_dir, PREDICTIONS_TABLE)}
    assert set(predictions) == {"p_a", "p_b", "p_c"}
    # p_b: energy 2 -> 4 is +2 (over-prediction), nostalgia 9 -> 6 is -3
    assert predictions["p_b"]["err_energy"] == 2 and predictions["p_b"]["err_nostalgia"] == -3
    assert predictions["p_b"]["row_mae"] == pytest.approx(5 / 6)
    assert predictions["p_b"]["source_type"] == "rule_prompt"
    failures = _table(run_dir, TOP_FAILURES_TABLE)
    assert [(f["rank"], f["pair_id"]) for f in failures] == [(1, "p_b"), (2, "p_a")]
    assert failures[1]["target_energy"] == 8 and failures[1]["pred_energy"] == 5
    (note,) = _table(run_dir, "notes")
    assert json.loads(note["extra"]) == {"a": 1}
    assert note["leak"] == "***"


def test_offline_run_summary_holds_the_gate_decision(offline_run: tuple[Path, RunLink, float]) -> None:
    _, link, _ = offline_run
    summary = _read_records(Path(link.run_dir or ""))["summary"]
    assert summary["gate/decision"] == "keep"
    assert summary["gate/reference"] == "baseline:constant"
    assert summary["gate/reasons"].startswith("holdout MAE 1.900")


def test_no_secret_in_any_written_file(offline_run: tuple[Path, RunLink, float]) -> None:
    root, _, _ = offline_run
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 3
    for path in files:
        data = path.read_bytes()
        assert FAKE_KEY.encode() not in data, path
        assert FAKE_HF.encode() not in data, path


def test_offline_run_does_not_wake_weave_when_it_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # wandb.init calls weave.init whenever weave is imported, unless WANDB_DISABLE_WEAVE is set; offline
    # that means an API-key prompt. Start from an environment without the switch.
    import weave  # noqa: F401

    monkeypatch.setenv("WANDB_DISABLE_WEAVE", "1")
    monkeypatch.delenv("WANDB_DISABLE_WEAVE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    with WandbTracker("offline", project="p", root_dir=tmp_path).start("c1", "n", "eval", {}) as run:
        run.log_metrics({"a": 1.0})
    err = capfd.readouterr().err
    assert "API key" not in err and "Logging into Weights" not in err
    assert run.finish().run_dir


def test_finished_run_refuses_more_logging(tmp_path: Path) -> None:
    run = WandbTracker("disabled", project="p", root_dir=tmp_path).start("c1", "n", "eval", {})
    run.finish()
    with pytest.raises(RuntimeError, match="already finished"):
        run.log_metrics({"a": 1})


def test_disabled_mode_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "home"
    tracker = WandbTracker("disabled", project="p", root_dir=root)
    with tracker.start("c1", name="eval-c1", job_type="eval", config={"lr": 1e-4}) as run:
        run.log_metrics(eval_metrics(SUMMARY), prefix="eval")
        run.log_table(PREDICTIONS_TABLE, predictions_table(ROWS))
        run.log_summary(gate_summary(GATE))
        with pytest.raises(TypeError, match="not numeric: bad"):
            run.log_metrics({"bad": "text"})
    assert run.finish() == RunLink(mode="disabled")
    assert run.finish().as_metadata() == {"wandb_mode": "disabled"}
    assert not root.exists()


def test_invalid_cycle_id_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid cycle id"):
        WandbTracker("disabled", project="p", root_dir=tmp_path).start("../etc", "n", "eval", {})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_online_mode_with_unreachable_server_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_WEAVE", "true")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", host)
    tracker = WandbTracker("online", project="p", entity="e", root_dir=tmp_path, init_timeout_s=2)
    started = time.perf_counter()
    with pytest.raises(TrackerUnavailableError, match=rf"W&B unreachable at {host}"):
        tracker.start("c1", name="eval-c1", job_type="eval", config={})
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": "k"}, "online"),
        ({"WANDB_API_KEY": "  "}, "offline"),
        ({"WANDB_API_KEY": "k", "KOTONE_WANDB_MODE": "offline"}, "offline"),
        ({"KOTONE_WANDB_MODE": "Disabled"}, "disabled"),
        ({"KOTONE_WANDB_MODE": "online"}, "online"),
    ],
)
def test_mode_from_env(env: dict[str, str], expected: str) -> None:
    assert tracker_mode_from_env(env) == expected


def test_mode_from_env_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="KOTONE_WANDB_MODE='cloud' is not one of online, offline, disabled"):
        tracker_mode_from_env({"KOTONE_WANDB_MODE": "cloud"})


def test_redact_drops_secret_keys_and_masks_secret_values() -> None:
    config = {"HF_TOKEN": "a", "Password": "b", "lr": 0.1, "items": [{"secret_x": 1, "ok": "a-SECRETVALUE"}]}
    assert redact(config, secrets=["SECRETVALUE"]) == {"lr": 0.1, "items": [{"ok": "***"}]}


def test_metric_helpers_compute_from_domain_objects() -> None:
    report = HardDimReport(
        focus=["energy", "nostalgia"],
        k=2,
        by_dim={"energy": 1.5, "nostalgia": 1.0},
        source="eval_rows",
        top_failures=[FailureExample(**top_failures(ROWS, 1)[0].model_dump())],
    )
    assert hard_dims_metrics(report) == {"mae/energy": 1.5, "mae/nostalgia": 1.0, "k": 2, "top_failures": 1}
    gate = gate_metrics(GATE)
    assert gate["promote"] == 0
    assert gate["improvement"] == pytest.approx(1.8 - 1.9)
    assert gate["dim_delta/energy"] == 0.2
