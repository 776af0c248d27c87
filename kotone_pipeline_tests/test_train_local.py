"""The job runner's entry point: outputs a run needs, and one clear message on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kotone_pipeline import train_local
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import write_jsonl
from kotone_pipeline.domain.data.schemas import EvalSummary, Pair, Vector
from kotone_pipeline.domain.model.local_model import LocalTextModel, training_data_hash
from kotone_pipeline.services.datasets import SPLIT_FILES

_WORDS = {0: "silent", 5: "steady", 10: "thunderous"}


def _pairs(n: int, prefix: str) -> list[Pair]:
    """Energy readable from one cue word; the other dims constant."""
    levels = list(_WORDS)
    return [
        Pair(
            group_id=f"{prefix}{i}",
            source_type="request_text",
            text=f"a {_WORDS[levels[i % 3]]} tune number {prefix}{i}",
            vector=Vector.from_values([levels[i % 3], 4, 4, 4, 4, 4]),
        )
        for i in range(n)
    ]


def _dataset(root: Path, holdout: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": _pairs(60, "t"), "validation": _pairs(9, "v"), "test": _pairs(9, "s")}
    if holdout:
        splits["holdout"] = _pairs(12, "h")
    for split, pairs in splits.items():
        write_jsonl(root / SPLIT_FILES[split], pairs)
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writes_model_predictions_metrics_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset, out = _dataset(tmp_path / "ds"), tmp_path / "out"
    assert train_local.main(["--dataset", str(dataset), "--out", str(out), "--hparams", '{"alpha": 0.5}']) == 0
    assert "fitted on 60 pairs" in capsys.readouterr().out

    validation = _pairs(9, "v")
    records = _lines(out / "predictions_validation.jsonl")
    assert [r["pair_id"] for r in records] == [p.id for p in validation]
    assert set(records[0]) == {"pair_id", "raw", "prediction", "latency_ms"}
    assert all(set(r["prediction"]) == set(DIMS) and json.loads(r["raw"]) == r["prediction"] for r in records)
    assert len(_lines(out / "predictions_holdout.jsonl")) == 12

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"validation", "holdout"}
    summary = EvalSummary.model_validate(metrics["holdout"])
    assert summary.rows == 12 and summary.json_valid_rate == 1.0
    # Energy is fully determined by a cue word; a model that learned nothing would be off by ~3.3 there.
    assert summary.per_dim_mae["energy"] < 0.5

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "completed"
    assert run["hparams"]["alpha"] == 0.5
    assert run["rows"] == {"train": 60, "validation": 9, "test": 9, "holdout": 12}
    assert run["train_data_hash"] == training_data_hash(_pairs(60, "t"))
    assert run["metrics"]["holdout"] == summary.vector_mae
    assert {"read_s", "fit_s", "total_s"} <= set(run["timings_s"])

    model = LocalTextModel.load(out / "model")
    assert model.meta["metrics"]["validation"]["rows"] == 9


def test_without_holdout_only_validation_is_predicted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert train_local.main(["--dataset", str(_dataset(tmp_path / "ds", holdout=False)), "--out", str(out)]) == 0
    assert (out / "predictions_validation.jsonl").exists()
    assert not (out / "predictions_holdout.jsonl").exists()
    assert set(json.loads((out / "metrics.json").read_text())) == {"validation"}


def _no_dir(root: Path) -> None:
    pass


def _empty_dir(root: Path) -> None:
    root.mkdir()


def _bad_train_line(root: Path) -> None:
    _dataset(root)
    good = (root / "train.jsonl").read_text().splitlines()
    (root / "train.jsonl").write_text("\n".join([good[0], "", "not json", *good[1:]]) + "\n")


@pytest.mark.parametrize(
    ("setup", "hparams", "message"),
    [
        (_no_dir, None, "dataset directory not found"),
        (_empty_dir, None, "missing split file(s) train.jsonl, validation.jsonl, test.jsonl"),
        (_bad_train_line, None, "train.jsonl:3: invalid JSON"),
        (_dataset, '{"alpha": 1, "epochs": 2}', "unknown key(s) epochs"),
        (_dataset, "{alpha", "--hparams is not valid JSON"),
    ],
)
def test_bad_input_gives_one_message_and_a_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, hparams: str | None, message: str
) -> None:
    dataset, out = tmp_path / "ds", tmp_path / "out"
    setup(dataset)
    args = ["--dataset", str(dataset), "--out", str(out)] + (["--hparams", hparams] if hparams else [])
    assert train_local.main(args) == train_local.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err
    assert "Traceback" not in err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and message in run["error"]
    assert not (out / "model").exists()


def test_runs_as_a_module_in_a_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kotone_pipeline.train_local",
            "--dataset",
            str(tmp_path / "nope"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'}: dataset directory not found"


def test_a_corrupt_encoder_file_ends_the_job_with_its_path_checksum_and_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotone_pipeline.domain.model.embedding_cache import clear_encoders
    from kotone_pipeline.domain.model.encoder import default_spec

    spec = default_spec()
    folder = tmp_path / "encoder"
    folder.mkdir()
    model = folder / "model.onnx"
    data = bytearray(spec.model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    model.write_bytes(bytes(data))
    (folder / "tokenizer.json").write_bytes(spec.tokenizer_path.read_bytes())
    monkeypatch.setenv("KOTONE_ENCODER", str(folder))
    monkeypatch.setenv("KOTONE_ENCODER_SHA256", spec.model_sha256)
    clear_encoders()
    out = tmp_path / "out"
    try:
        code = train_local.main(["--dataset", str(_dataset(tmp_path / "ds")), "--out", str(out)])
    finally:
        clear_encoders()
    assert code == train_local.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(model) in err and spec.model_sha256 in err
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
