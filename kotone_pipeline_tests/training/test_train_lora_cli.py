"""Bad input to the training script: one clear message, exit code 2, run.json says failed (no heavy deps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LoraHyperParams, Pair
from kotone_pipeline.services.datasets import SPLIT_FILES
from kotone_pipeline.training import train_lora as script

SHA = "0123456789abcdef0123456789abcdef01234567"


def _pair(text: str, value: int = 5) -> Pair:
    return Pair(group_id=f"g-{text}", source_type="request_text", text=text, vector={d: value for d in DIMS})


def _write_dataset(root: Path) -> Path:
    for split in SPLIT_FILES:
        pairs = [_pair(f"{split} commission {i}", i) for i in range(2)]
        (root / SPLIT_FILES[split]).write_text("".join(p.model_dump_json() + "\n" for p in pairs))
    return root


def _run(argv: list[str], out: Path, capsys) -> tuple[int, str, dict]:
    code = script.main([*argv, "--output-dir", str(out)])
    err = capsys.readouterr().err
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    return code, err, run


def test_defaults_and_split_files_match_the_pipeline():
    assert LoraHyperParams().model_dump() == script.DEFAULT_HPARAMS
    assert script.SPLIT_FILES == SPLIT_FILES


def test_hparams_patch_the_defaults():
    hparams = script.parse_hparams('{"learning_rate": 1.2e-5, "lora_r": 32, "epochs": 3.0}')

    assert hparams == {**LoraHyperParams().model_dump(), "learning_rate": 1.2e-5, "lora_r": 32, "epochs": 3}
    assert type(hparams["epochs"]) is int


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1]", "expected a JSON object"),
        ('{"lr": 0.1}', "unknown key"),
        ('{"lora_r": 2.5}', "lora_r: expected an integer"),
        ('{"epochs": "2"}', "epochs: expected a number"),
        ('{"batch_size": 0}', "batch_size: expected an integer >= 1"),
        ('{"learning_rate": 0}', "learning_rate"),
        ('{"lora_dropout": 1.0}', "lora_dropout"),
    ],
)
def test_bad_hparams_are_rejected(raw, message):
    with pytest.raises(script.BadInput, match=message):
        script.parse_hparams(raw)


def test_missing_dataset_dir_is_named(tmp_path, capsys):
    code, err, run = _run(["--dataset-dir", str(tmp_path / "nowhere")], tmp_path / "out", capsys)

    assert code == script.EXIT_BAD_INPUT
    assert f"{tmp_path / 'nowhere'}: dataset directory not found" in err
    assert "Traceback" not in err
    assert run["status"] == "failed" and "not found" in run["error"]


def test_missing_holdout_is_named(tmp_path, capsys):
    dataset = _write_dataset(tmp_path)
    (dataset / "holdout.jsonl").unlink()

    code, err, _ = _run(["--dataset-dir", str(dataset)], tmp_path / "out", capsys)

    assert code == script.EXIT_BAD_INPUT
    assert "missing split file(s) holdout.jsonl" in err


def test_every_bad_line_is_reported_with_file_and_line(tmp_path, capsys):
    dataset = _write_dataset(tmp_path)
    good = _pair("fine text").model_dump(mode="json")
    lines = [
        json.dumps(good),
        json.dumps({**good, "vector": {**good["vector"], "energy": 11}}),
        "",
        json.dumps({**good, "source_type": "tweet"}),
        json.dumps({k: v for k, v in good.items() if k != "id"}),
    ]
    (dataset / "train.jsonl").write_text("\n".join(lines) + "\n")

    code, err, run = _run(["--dataset-dir", str(dataset)], tmp_path / "out", capsys)

    train = dataset / "train.jsonl"
    assert code == script.EXIT_BAD_INPUT
    assert f"{train}:2: vector.energy: expected an integer 0..10, got 11" in err
    assert f"{train}:4: source_type: expected one of request_text, rule_prompt, got 'tweet'" in err
    assert f"{train}:5: id: expected a non-empty string" in err
    assert f"{train}:1:" not in err
    assert "3 bad line(s)" in run["error"]


def test_invalid_json_line_is_reported(tmp_path, capsys):
    dataset = _write_dataset(tmp_path)
    with (dataset / "validation.jsonl").open("a") as handle:
        handle.write('{"id": "x", \n')

    code, err, _ = _run(["--dataset-dir", str(dataset)], tmp_path / "out", capsys)

    assert code == script.EXIT_BAD_INPUT
    assert f"{dataset / 'validation.jsonl'}:3: invalid JSON" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --dataset-dir, or --dataset-repo together with --dataset-revision"),
        (["--dataset-repo", "org/data", "--dataset-revision", "main"], "pinned commit sha"),
        (["--dataset-repo", "not a repo", "--dataset-revision", SHA], "--dataset-repo: expected ORG/NAME"),
        (["--dataset-repo", "org/data"], "together with --dataset-revision"),
        (["--dataset-dir", "d", "--dataset-repo", "org/data", "--dataset-revision", SHA], "not both"),
        (["--dataset-dir", "d", "--output-repo", "org/model"], "needs --output-revision"),
        (["--dataset-dir", "d", "--output-repo", "org/model", "--output-revision", "main"], "not main"),
        (["--dataset-dir", "d", "--max-steps", "0"], "--max-steps"),
        (["--dataset-dir", "d", "--max-new-tokens", "0"], "--max-new-tokens"),
    ],
)
def test_bad_arguments_are_rejected_before_any_work(tmp_path, capsys, argv, message):
    code, err, run = _run(argv, tmp_path / "out", capsys)

    assert code == script.EXIT_BAD_INPUT
    assert message in err
    assert run["status"] == "failed"


def test_missing_training_packages_are_named(tmp_path, capsys, monkeypatch):
    for name in script.HEAVY_PACKAGES:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError

    code, err, run = _run(["--dataset-dir", str(_write_dataset(tmp_path))], tmp_path / "out", capsys)

    assert code == script.EXIT_BAD_INPUT
    assert "missing package(s) torch, transformers, trl, peft, accelerate" in err
    assert run["rows"] == {"train": 2, "validation": 2, "test": 2, "holdout": 2, "probe": 2, "human": 2, "field": 2}
