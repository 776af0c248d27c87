"""``kotone model fit|eval``: both file formats, one-object JSON output, clean errors, real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import write_jsonl
from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.model.local_model import META_FILE

runner = CliRunner()

_CUES = {1: "whispering", 5: "walking-pace", 9: "stomping"}
REQUIRED_JSON_KEYS = {
    "vector_mae", "mae_raw", "per_dim_mae", "json_valid_rate", "exact_match_rate",
    "within_one_rate", "p50_latency_ms", "p95_latency_ms", "rows",
}  # fmt: skip


def _pairs(n: int, prefix: str) -> list[Pair]:
    """Energy (1, 5 or 9) readable from a cue word; the other dims fixed at 3."""
    levels = list(_CUES)
    return [
        Pair(
            group_id=f"{prefix}{i}",
            source_type="request_text",
            text=f"a {_CUES[levels[i % 3]]} piece, take {prefix}{i}",
            vector=Vector.from_values([levels[i % 3], 3, 3, 3, 3, 3]),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("model_cli")
    paths = {"train": root / "train.jsonl", "valid": root / "valid.jsonl", "model": root / "model"}
    write_jsonl(paths["train"], _pairs(60, "t"))
    write_jsonl(paths["valid"], _pairs(12, "v"))
    args = ["model", "fit", "--train", str(paths["train"]), "--valid", str(paths["valid"])]
    result = runner.invoke(app, [*args, "--out", str(paths["model"]), "--hparams", '{"alpha": 0.3}'])
    assert result.exit_code == 0, result.output
    return paths


def test_fit_saves_a_model_with_validation_metrics(files: dict[str, Path]) -> None:
    meta = json.loads((files["model"] / META_FILE).read_text())
    assert meta["hparams"]["alpha"] == 0.3
    assert meta["train_rows"] == 60
    assert meta["metrics"]["validation"]["rows"] == 12
    # The cue fixes energy exactly and the other dims never vary: a learning model is near perfect.
    assert meta["metrics"]["validation"]["vector_mae"] < 0.2


def test_eval_json_prints_one_object_with_the_metrics(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app, ["model", "eval", "--model", str(files["model"]), "--data", str(files["valid"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert set(summary) >= REQUIRED_JSON_KEYS
    assert summary["rows"] == 12 and set(summary["per_dim_mae"]) == set(DIMS)
    assert summary["mae_raw"] == pytest.approx(10 * summary["vector_mae"])
    assert 0.0 <= summary["p50_latency_ms"] <= summary["p95_latency_ms"]


def test_eval_table_is_readable(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["model", "eval", "--model", str(files["model"]), "--data", str(files["valid"])])
    assert result.exit_code == 0, result.output
    for label in ("vector_mae", "json_valid_rate", "mae energy", "mae (request_text)"):
        assert label in result.output


def _old_format(path: Path, pairs: list[Pair], scale: int) -> Path:
    factor = 10 if scale == 100 else 1
    rows = [
        {
            "request_text": p.text,
            "source_type": p.source_type,
            "target_hidden_params": {"vector": {d: v * factor for d, v in p.vector.as_dict().items()}},
        }
        for p in pairs
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_fit_and_eval_accept_the_predecessor_format_with_a_scale(files: dict[str, Path], tmp_path: Path) -> None:
    train = _old_format(tmp_path / "old_train.jsonl", _pairs(60, "t"), scale=100)
    valid = _old_format(tmp_path / "old_valid.jsonl", _pairs(12, "v"), scale=100)
    out = tmp_path / "m"
    result = runner.invoke(app, ["model", "fit", "--train", str(train), "--out", str(out), "--scale", "100"])
    assert result.exit_code == 0, result.output
    via_old = runner.invoke(
        app, ["model", "eval", "--model", str(out), "--data", str(valid), "--scale", "100", "--json"]
    )
    via_new = runner.invoke(app, ["model", "eval", "--model", str(out), "--data", str(files["valid"]), "--json"])
    # The same pairs in either format score the same (same ids, same 0..10 targets after conversion).
    assert json.loads(via_old.stdout)["vector_mae"] == json.loads(via_new.stdout)["vector_mae"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda f, t: ["eval", "--model", str(t / "none"), "--data", str(f["valid"])],
            "model directory not found",
        ),
        (lambda f, t: ["eval", "--model", str(t), "--data", str(f["valid"])], "model.json missing"),
        (lambda f, t: ["eval", "--model", str(f["model"]), "--data", str(t / "no.jsonl")], "file not found"),
        (
            lambda f, t: [
                "eval",
                "--model",
                str(f["model"]),
                "--data",
                str(_old_format(t / "o.jsonl", _pairs(3, "o"), 10)),
            ],
            "pass --scale 10 or --scale 100",
        ),
        (
            lambda f, t: ["eval", "--model", str(f["model"]), "--data", str(f["valid"]), "--scale", "100"],
            "Pair files are on the 0..10 scale",
        ),
        (
            lambda f, t: ["fit", "--train", str(f["train"]), "--out", str(t / "m"), "--hparams", '{"r": 16}'],
            "unknown key(s) r",
        ),
        (
            lambda f, t: ["fit", "--train", str(f["train"]), "--out", str(t / "m"), "--scale", "7"],
            "must be 10 or 100",
        ),
    ],
)
def test_bad_arguments_give_one_clear_error(files: dict[str, Path], tmp_path: Path, make_args, message: str) -> None:
    result = runner.invoke(app, ["model", *make_args(files, tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_training_lines_are_all_listed(tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    good = json.dumps(_pairs(1, "g")[0].model_dump(mode="json"))
    bad_vector = json.dumps({**json.loads(good), "vector": {d: 11 for d in DIMS}})
    train.write_text("\n".join([good, "{oops", bad_vector]) + "\n")
    result = runner.invoke(app, ["model", "fit", "--train", str(train), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert f"{train}:2: invalid JSON" in result.output
    assert f"{train}:3: energy: 11 is out of range 0..10" in result.output
    assert not (tmp_path / "m").exists()


def test_help_is_available_for_every_model_command() -> None:
    for args in (["--help"], ["model", "--help"], ["model", "fit", "--help"], ["model", "eval", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_console_script_runs_eval_end_to_end(files: dict[str, Path]) -> None:
    script = Path(sys.executable).with_name("kotone")
    if not script.exists():
        pytest.skip("the kotone console script is not installed in this environment (pip install -e .)")
    model, valid = str(files["model"]), str(files["valid"])
    ok = subprocess.run(
        [str(script), "model", "eval", "--model", model, "--data", valid, "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == 12
    bad = subprocess.run(
        [str(script), "model", "eval", "--model", valid, "--data", valid],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"error: {files['valid']}: model directory not found"


def test_a_model_directory_that_fails_half_way_leaves_nothing_behind(tmp_path: Path) -> None:
    from kotone_pipeline.cli.model import save_model_dir

    def half_then_fail(directory: Path) -> None:
        (directory / "estimator.joblib").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    out = tmp_path / "models" / "m1"
    with pytest.raises(OSError, match="No space left"):
        save_model_dir(out, half_then_fail)
    assert list((tmp_path / "models").iterdir()) == []  # neither the model nor its temporary directory
    save_model_dir(out, lambda directory: (directory / "model.json").write_text("{}"))
    assert sorted(p.name for p in out.iterdir()) == ["model.json"]


def test_a_saved_model_directory_follows_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from kotone_pipeline.cli.model import save_model_dir

    old = os.umask(0o022)
    try:
        save_model_dir(tmp_path / "model", lambda d: (d / "model.json").write_text("{}"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755  # mkdtemp's 0o700 before
