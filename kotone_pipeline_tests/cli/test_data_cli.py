"""``kotone data``: generate through the quality filter; import strict or with quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.domain.data.base_data import load_generation_params
from kotone_pipeline.domain.data.jsonl import read_models
from kotone_pipeline.domain.data.schemas import Pair

runner = CliRunner()


def _old_row(text: str, energy: object, source_type: str = "request_text") -> str:
    vector = {
        "energy": energy,
        "warmth": 50,
        "brightness": 50,
        "acousticness": 50,
        "complexity": 50,
        "nostalgia": 50,
    }
    return json.dumps({"request_text": text, "source_type": source_type, "target_hidden_params": {"vector": vector}})


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "old.jsonl"
    lines = [
        _old_row("a calm evening song", 65),  # ok on scale 100
        _old_row("a lively morning jingle", 7.5),  # fractional: bad on 10, fine on 100
        _old_row("an odd one", 40, source_type="voice"),  # bad on any scale
        _old_row("a loud anthem", 150),  # out of range on any scale
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_generate_writes_the_filtered_base_set_and_report(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = runner.invoke(app, ["data", "generate", "--out", str(out), "--groups", "30", "--seed", "5"])
    assert result.exit_code == 0, result.output
    pairs = read_models(out / "base.jsonl", Pair).rows
    report = json.loads((out / "quality_report.json").read_text())
    assert report["params"]["base"]["n_groups"] == 30 and report["params"]["base"]["seed"] == 5
    per_group = 1 + report["params"]["base"]["requests_per_group"]  # a rule prompt and the group's requests
    assert report["report"]["kept"] == len(pairs) and report["report"]["seen"] == 30 * per_group
    assert {p.source_type for p in pairs} == {"request_text", "rule_prompt"}
    assert "quality filter" in result.output and "rejected: duplicate" in result.output

    again = tmp_path / "again"
    runner.invoke(app, ["data", "generate", "--out", str(again), "--groups", "30", "--seed", "5"])
    assert (again / "base.jsonl").read_bytes() == (out / "base.jsonl").read_bytes()
    other = tmp_path / "other"
    runner.invoke(app, ["data", "generate", "--out", str(other), "--groups", "30", "--seed", "6"])
    assert (other / "base.jsonl").read_bytes() != (out / "base.jsonl").read_bytes()


def test_generate_defaults_to_kotone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["data", "generate", "--groups", "5"])
    assert result.exit_code == 0, result.output
    params = load_generation_params()
    assert len(read_models(tmp_path / "home" / "data" / "base.jsonl", Pair).rows) == 5 * (
        1 + params.base.requests_per_group
    )


def test_import_strict_lists_every_bad_line_and_writes_nothing(old_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported.jsonl"
    result = runner.invoke(app, ["data", "import", str(old_file), "--scale", "100", "--out", str(out)])
    assert result.exit_code == 2
    assert f"{old_file}:3: source_type: 'voice'" in result.output
    assert f"{old_file}:4: target_hidden_params.vector: energy: 150 is out of range 0..100" in result.output
    assert f"{old_file}:1:" not in result.output and f"{old_file}:2:" not in result.output
    assert "2 bad line(s)" in result.output and "Traceback" not in result.output
    assert not out.exists()
    # On the 0..10 scale every line is bad (50 is out of range, 7.5 is fractional): all four are listed.
    result = runner.invoke(app, ["data", "import", str(old_file), "--scale", "10", "--out", str(out)])
    assert all(f"{old_file}:{n}:" in result.output for n in (1, 2, 3, 4))
    assert "non-integral 7.5" in result.output


def test_import_quarantine_keeps_good_rows_and_lists_the_rest(old_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported.jsonl"
    args = ["data", "import", str(old_file), "--scale", "100", "--out", str(out), "--quarantine"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    pairs = read_models(out, Pair).rows
    # 65 -> 7 and 7.5 -> 1 under half-up on the 0..100 scale.
    assert [(p.text, p.vector.energy, p.origin) for p in pairs] == [
        ("a calm evening song", 7, "imported"),
        ("a lively morning jingle", 1, "imported"),
    ]
    rejected = [json.loads(line) for line in (tmp_path / "imported.rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejected] == [(3, str(old_file)), (4, str(old_file))]
    assert "out of range 0..100" in rejected[1]["reason"]


def test_import_clean_file_removes_a_stale_rejected_list(tmp_path: Path) -> None:
    clean = tmp_path / "clean.jsonl"
    clean.write_text(_old_row("a tidy little waltz", 30) + "\n")
    out = tmp_path / "imported.jsonl"
    (tmp_path / "imported.rejected.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["data", "import", str(clean), "--scale", "100", "--out", str(out), "--quarantine"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "imported.rejected.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scale", "50"], "must be 10 or 100"),
        ([], "Missing option '--scale'"),
    ],
)
def test_import_rejects_bad_scale(old_file: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["data", "import", str(old_file), "--out", str(tmp_path / "x.jsonl"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_import_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    result = runner.invoke(app, ["data", "import", str(missing), "--scale", "10", "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert f"{missing}: file not found" in result.output
    assert "Traceback" not in result.output


def test_help_is_available_for_every_data_command() -> None:
    for args in (["data", "--help"], ["data", "generate", "--help"], ["data", "import", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output


def _small_scale_row(text: str, value: int) -> str:
    vector = dict.fromkeys(("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia"), value)
    return json.dumps({"request_text": text, "source_type": "request_text", "target_hidden_params": {"vector": vector}})


def test_zero_to_ten_data_imported_as_scale_100_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.jsonl"
    path.write_text(
        "".join(_small_scale_row(f"song number {word}", v) + "\n" for word, v in (("one", 3), ("two", 7), ("three", 9)))
    )
    out = tmp_path / "imported.jsonl"
    flagged = runner.invoke(app, ["data", "import", str(path), "--scale", "100", "--out", str(out)])
    assert flagged.exit_code == 2, flagged.output
    assert "looks like 0..10 data" in flagged.output and "--scale 10" in flagged.output
    assert not out.exists()
    forced = runner.invoke(app, ["data", "import", str(path), "--scale", "100", "--out", str(out), "--allow-collapsed"])
    assert forced.exit_code == 0 and "looks like 0..10 data" in forced.output
    assert {v for p in read_models(out, Pair).rows for v in p.vector.values()} <= {0, 1}
    clean = runner.invoke(app, ["data", "import", str(path), "--scale", "10", "--out", str(out)])
    assert clean.exit_code == 0 and "looks like" not in clean.output
    assert sorted(p.vector.energy for p in read_models(out, Pair).rows) == [3, 7, 9]
