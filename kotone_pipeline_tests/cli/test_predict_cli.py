"""``kotone predict``: one text (table or JSON), the champion from the registry, JSONL streams, clean errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.cli.predict import BATCH_LINES, NO_CHAMPION
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair, Vector
from kotone_pipeline.domain.model.local_model import ESTIMATOR_FILE, META_FILE, LocalTextModel
from kotone_pipeline.domain.model.predictor import PredictInput
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry

runner = CliRunner()

_CUES = {1: "whispering", 5: "walking-pace", 9: "stomping"}
REQUEST = "a stomping piece for the night drive"
RULE = "style: stomping techno; instrument: drums"


def _pairs(n: int, prefix: str) -> list[Pair]:
    """Energy (1, 5 or 9) readable from a cue word; the other dims fixed at 3; both source types."""
    levels = list(_CUES)
    return [
        Pair(
            group_id=f"{prefix}{i}",
            source_type="request_text" if i % 2 else "rule_prompt",
            text=f"a {_CUES[levels[i % 3]]} piece, take {prefix}{i}",
            vector=Vector.from_values([levels[i % 3], 3, 3, 3, 3, 3]),
        )
        for i in range(n)
    ]


def _fit(out: Path, model_id: str, hparams: LocalHyperParams, home: Path) -> Path:
    # The encoder caches embeddings under KOTONE_HOME: keep that inside the test's temporary folder.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOTONE_HOME", str(home))
        LocalTextModel(model_id=model_id).fit(_pairs(48, "t"), hparams).save(out)
    return out


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict_fast")
    return _fit(root / "model", "local:fast", LocalHyperParams(use_encoder=False), root / "home")


@pytest.fixture(scope="module")
def encoder_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict_encoder")
    return _fit(root / "model", "local:encoder", LocalHyperParams(), root / "home")


@pytest.fixture(autouse=True)
def kotone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty KOTONE_HOME per test: no champion unless the test promotes one."""
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    return home


def _expected(model_dir: Path, text: str, source_type: str = "request_text") -> dict[str, int]:
    [prediction] = LocalTextModel.load(model_dir).predict([PredictInput(text=text, source_type=source_type)])
    assert prediction.vector is not None
    return prediction.vector.as_dict()


def _promote(home: Path, model_dir: Path, model_id: str = "cycle-007-local") -> None:
    # The same registry location `kotone status` reads.
    champion = Champion(
        model_id=model_id,
        model_uri=str(model_dir),
        cycle_id="cycle-007",
        run_id="run-1",
        holdout_mae=0.3,
        decision_reason="beats the baselines",
    )
    assert ChampionRegistry(CycleArtifacts(home).registry_dir).promote(champion, "decision-1")


# --- one text -------------------------------------------------------------------------------------


def test_table_names_the_model_and_all_six_dims(fast_model: Path) -> None:
    result = runner.invoke(app, ["predict", REQUEST, "--model", str(fast_model)])
    assert result.exit_code == 0, result.output
    assert "local:fast" in result.stdout
    expected = _expected(fast_model, REQUEST)
    for dim in DIMS:
        [row] = [line for line in result.stdout.splitlines() if f" {dim} " in line]
        assert str(expected[dim]) in row.replace(dim, "")


def test_json_is_one_object_equal_to_the_model_prediction(fast_model: Path) -> None:
    result = runner.invoke(app, ["predict", RULE, "--model", str(fast_model), "--source-type", "rule_prompt", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert set(out) == {"model_id", "text", "source_type", "prediction", "latency_ms"}
    assert out["model_id"] == "local:fast" and out["text"] == RULE and out["source_type"] == "rule_prompt"
    assert out["prediction"] == _expected(fast_model, RULE, "rule_prompt")
    assert list(out["prediction"]) == list(DIMS)
    assert all(isinstance(v, int) and 0 <= v <= 10 for v in out["prediction"].values())
    assert out["latency_ms"] >= 0


def test_default_hyper_parameters_with_the_sentence_encoder(encoder_model: Path) -> None:
    meta = json.loads((encoder_model / META_FILE).read_text())
    assert meta["encoder"] is not None  # this model really uses the encoder
    text = "ささやくような静かなピアノ, whispering"
    result = runner.invoke(app, ["predict", text, "--model", str(encoder_model), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["text"] == text and out["model_id"] == "local:encoder"
    assert out["prediction"] == _expected(encoder_model, text)


def test_champion_mode_reads_the_registry(fast_model: Path, kotone_home: Path) -> None:
    _promote(kotone_home, fast_model)
    for args in (["predict", REQUEST, "--json"], ["predict", REQUEST, "--model", "champion", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["model_id"] == "cycle-007-local"
        assert out["prediction"] == _expected(fast_model, REQUEST)
    table = runner.invoke(app, ["predict", REQUEST])
    assert table.exit_code == 0 and "cycle-007-local" in table.stdout


def test_no_champion_is_one_clear_error(kotone_home: Path) -> None:
    kotone_home.mkdir(parents=True, exist_ok=True)  # a home without a champion yet
    result = runner.invoke(app, ["predict", REQUEST])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {NO_CHAMPION}"
    assert "Traceback" not in result.output


# --- JSONL ----------------------------------------------------------------------------------------


def test_jsonl_predicts_good_lines_in_order_and_reports_bad_ones(fast_model: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": REQUEST, "id": "a"}),  # 1
        json.dumps({"text": "   ", "id": "blank"}),  # 2
        json.dumps({"id": "no-text"}),  # 3
        "{oops",  # 4
        "",  # 5: blank lines are skipped, not bad
        json.dumps({"text": RULE, "source_type": "rule_prompt", "id": 7, "vector": {}}),  # 6: extra keys ignored
        json.dumps({"text": 5}),  # 7
        json.dumps({"text": "x", "source_type": "tweet"}),  # 8
        "[1, 2]",  # 9
        json.dumps({"text": "a whispering lullaby"}),  # 10
    ]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["predict", "--jsonl", str(data), "--model", str(fast_model)])
    assert result.exit_code == 2
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out == [
        {"line": 1, "id": "a", "model_id": "local:fast", "prediction": _expected(fast_model, REQUEST)},
        {"line": 6, "id": 7, "model_id": "local:fast", "prediction": _expected(fast_model, RULE, "rule_prompt")},
        {"line": 10, "model_id": "local:fast", "prediction": _expected(fast_model, "a whispering lullaby")},
    ]
    errors = result.stderr
    for lineno, reason in [
        (2, "empty text"),
        (3, "missing text"),
        (4, "invalid JSON"),
        (7, "text must be a string"),
        (8, "unknown source_type 'tweet'"),
        (9, "expected a JSON object"),
    ]:
        assert f"{data}:{lineno}: {reason}" in errors
    assert f"{data}:5:" not in errors
    assert "predicted 3, skipped 6 bad line(s)" in errors
    assert "Traceback" not in result.output


def test_jsonl_keeps_order_and_line_numbers_across_batches(fast_model: Path, tmp_path: Path) -> None:
    n = BATCH_LINES * 2 + 10
    texts = [f"a {'stomping' if i % 2 else 'whispering'} piece number {i}" for i in range(n)]
    rows = [json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)]
    rows[BATCH_LINES] = "not json"
    data = tmp_path / "many.jsonl"
    data.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["predict", "--jsonl", str(data), "-m", str(fast_model)])
    assert result.exit_code == 2
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["line"] for o in out] == [i + 1 for i in range(n) if i != BATCH_LINES]
    assert [o["id"] for o in out] == [i for i in range(n) if i != BATCH_LINES]
    model = LocalTextModel.load(fast_model)
    expected = model.predict([PredictInput(text=texts[o["id"]], source_type="request_text") for o in out])
    assert [o["prediction"] for o in out] == [p.vector.as_dict() for p in expected if p.vector is not None]
    assert f"predicted {n - 1}, skipped 1 bad line(s)" in result.stderr


def test_jsonl_dash_reads_stdin(fast_model: Path) -> None:
    stdin = json.dumps({"text": REQUEST}) + "\n" + json.dumps({"text": RULE, "source_type": "rule_prompt"}) + "\n"
    result = runner.invoke(app, ["predict", "--jsonl", "-", "--model", str(fast_model)], input=stdin)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2]
    assert out[1]["prediction"] == _expected(fast_model, RULE, "rule_prompt")
    assert "predicted 2, skipped 0 bad line(s)" in result.stderr


def test_jsonl_source_type_option_is_the_default_per_line(fast_model: Path) -> None:
    stdin = json.dumps({"text": RULE}) + "\n"
    args = ["predict", "--jsonl", "-", "-m", str(fast_model), "--source-type", "rule_prompt"]
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prediction"] == _expected(fast_model, RULE, "rule_prompt")


def test_jsonl_bad_utf8_is_one_bad_line(fast_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "bytes.jsonl"
    data.write_bytes(b'{"text": "caf\xe9"}\n' + json.dumps({"text": REQUEST}).encode() + b"\n")
    result = runner.invoke(app, ["predict", "--jsonl", str(data), "-m", str(fast_model)])
    assert result.exit_code == 2
    assert f"{data}:1: not valid UTF-8" in result.stderr
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [2]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", ""], "the text is empty"),
        (["predict", "   "], "the text is empty"),
        (["predict"], "nothing to predict"),
        (["predict", REQUEST, "--jsonl", "-"], "pass either a TEXT or --jsonl FILE, not both"),
        (["predict", REQUEST, "--source-type", "tweet"], "must be one of request_text, rule_prompt"),
        (["predict", "--jsonl", "/no/such/file.jsonl"], "/no/such/file.jsonl: not found"),
    ],
)
def test_bad_arguments_exit_2(fast_model: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--model", str(fast_model)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def _corrupt_estimator(model_dir: Path) -> None:
    (model_dir / ESTIMATOR_FILE).write_bytes(b"not a joblib file")


def _corrupt_meta(model_dir: Path) -> None:
    (model_dir / META_FILE).write_text("{not json")


@pytest.mark.parametrize(
    ("damage", "message"), [(_corrupt_estimator, "corrupt estimator"), (_corrupt_meta, "corrupt model metadata")]
)
def test_a_corrupt_model_dir_is_one_clear_error(fast_model: Path, tmp_path: Path, damage, message: str) -> None:
    broken = Path(shutil.copytree(fast_model, tmp_path / "broken"))
    damage(broken)
    result = runner.invoke(app, ["predict", REQUEST, "--model", str(broken)])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in result.output


def test_a_missing_model_dir_and_a_broken_champion_exit_1(fast_model: Path, tmp_path: Path, kotone_home: Path) -> None:
    missing = runner.invoke(app, ["predict", REQUEST, "--model", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "model directory not found" in missing.stderr
    broken = Path(shutil.copytree(fast_model, tmp_path / "broken"))
    _corrupt_estimator(broken)
    _promote(kotone_home, broken, model_id="cycle-009-local")
    result = runner.invoke(app, ["predict", REQUEST])
    assert result.exit_code == 1
    assert "cannot load the champion cycle-009-local" in result.stderr and "corrupt estimator" in result.stderr
    assert "Traceback" not in result.output


def test_help_explains_modes_and_exit_codes() -> None:
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # rich wraps the help to the terminal's width
    for needle in ("--jsonl", "--model", "--source-type", "Examples", "Exit codes", "NO output line", "FILE:LINE"):
        assert needle in text
    assert "predict" in runner.invoke(app, ["--help"]).output


def test_an_encoder_that_cannot_load_is_one_clear_error(encoder_model: Path, tmp_path: Path) -> None:
    # A model trained with an encoder folder that has since gone away.
    moved = tmp_path / "moved-model"
    shutil.copytree(encoder_model, moved)
    meta = json.loads((moved / "model.json").read_text())
    meta["encoder"]["setting"] = "/no/such/encoder"
    (moved / "model.json").write_text(json.dumps(meta))
    result = runner.invoke(app, ["predict", REQUEST, "--model", str(moved)])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "/no/such/encoder" in line
    assert "Traceback" not in result.output


def test_many_bad_jsonl_lines_print_at_most_20_messages_and_the_count(fast_model: Path, tmp_path: Path) -> None:
    rows = ["not json"] * 500 + [json.dumps({"text": REQUEST})]
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["predict", "--jsonl", str(data), "-m", str(fast_model)])
    assert result.exit_code == 2
    messages = result.stderr.strip().splitlines()
    assert messages[:20] == [f"{data}:{n}: invalid JSON (Expecting value at column 1)" for n in range(1, 21)]
    assert messages[20:] == ["predicted 1, skipped 500 bad line(s) (the first 20 shown above)"]
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [501]
