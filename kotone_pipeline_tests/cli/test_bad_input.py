"""Bad input over every command and file format: each case must end with a non-zero exit (or a
reported quarantine), one clear message naming the problem (``path:line`` for files), no traceback,
no partial output and the input untouched.

Each case runs in-process (typer's CliRunner) in a work folder whose every file (name, kind and bytes)
is compared before and after; ``KOTONE_HOME`` lies outside it. A few cases also run as real processes.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app

VECTOR10 = {"energy": 3, "warmth": 4, "brightness": 5, "acousticness": 6, "complexity": 7, "nostalgia": 8}


def old_row(
    text: str = "a calm evening song", vector: object = None, source_type: str = "request_text", **extra
) -> str:
    row = {"request_text": text, "source_type": source_type, "target_hidden_params": {"vector": vector or VECTOR10}}
    row.update(extra)
    return json.dumps(row)


def pair_row(text: str = "a calm evening song", vector: object = None, **extra) -> str:
    row = {"group_id": "g1", "source_type": "request_text", "text": text, "vector": vector or VECTOR10}
    row.update(extra)
    return json.dumps(row)


def lines(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


GOOD = lines(old_row("one"), old_row("two"), old_row("three"))


@dataclass
class Case:
    id: str
    argv: list[str]  # "{w}" is the work folder
    expect: str  # in the output; "{w}" is the work folder
    files: dict[str, bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    codes: tuple[int, ...] = (1, 2)


def imp(name: str, content: bytes, expect: str, *extra: str, scale: str = "10") -> Case:
    argv = ["data", "import", "{w}/in.jsonl", "--scale", scale, "--out", "{w}/out.jsonl", *extra]
    return Case(name, argv, expect, files={"in.jsonl": content})


def vec(**change: object) -> dict[str, object]:
    return {**VECTOR10, **change}


def _fifo(w: Path) -> None:
    os.mkfifo(w / "out.jsonl")


def _hardlink(w: Path) -> None:
    os.link(w / "in.jsonl", w / "out.jsonl")


def _symlink(w: Path) -> None:
    (w / "out.jsonl").symlink_to(w / "in.jsonl")


def _out_dir(w: Path) -> None:
    (w / "out.jsonl").mkdir()


def _model(meta: bytes) -> Callable[[Path], None]:
    def make(w: Path) -> None:
        (w / "model").mkdir()
        (w / "model" / "model.json").write_bytes(meta)

    return make


def _fast_model(w: Path) -> None:
    from kotone_pipeline.domain.data.schemas import Pair
    from kotone_pipeline.domain.model.local_model import LocalHyperParams, LocalTextModel

    pairs = [Pair.model_validate_json(pair_row(f"a {word} tune")) for word in ("calm", "loud", "soft", "bright")]
    LocalTextModel(model_id="local:tiny").fit(pairs, LocalHyperParams(use_encoder=False)).save(w / "model")


def _empty_home(w: Path) -> None:
    """A Kotone home with nothing in it yet (no champion, no Dagster instance)."""
    (w.parent / "home").mkdir(parents=True)


def _registry(w: Path) -> None:
    registry = w.parent / "home" / "registry"
    registry.mkdir(parents=True)
    (registry / "champion.json").write_text('{"model_id": 3}')


FIT = ["model", "fit", "--train", "{w}/train.jsonl", "--out", "{w}/model"]
EVAL = ["model", "eval", "--model", "{w}/model", "--data", "{w}/in.jsonl"]
MANY_BAD = lines(*[f"not json {i}" for i in range(30)])

CASES = [
    # --- data import: the file ------------------------------------------------------------------
    imp("import-empty-file", b"", "no rows (empty or blank); nothing written"),
    imp("import-blank-lines-only", b"\n  \n\t\n", "no rows (empty or blank)"),
    imp("import-invalid-json", lines(old_row(), "{oops", old_row("b")), "{w}/in.jsonl:2: invalid JSON"),
    imp("import-array-line", lines("[1, 2]"), "{w}/in.jsonl:1: expected a JSON object, got list"),
    imp("import-string-line", lines('"text"'), "{w}/in.jsonl:1: expected a JSON object, got str"),
    imp("import-number-line", lines(old_row(), "42"), "{w}/in.jsonl:2: expected a JSON object, got int"),
    imp(
        "import-non-utf8-byte",
        lines(old_row("a"), old_row("b")) + b'{"request_text": "caf\xe9"}\n' + lines(old_row("c")),
        "{w}/in.jsonl:3: not valid UTF-8",
    ),
    imp("import-5000-digit-int", lines('{"n": ' + "9" * 5000 + "}"), "{w}/in.jsonl:1: invalid JSON (Exceeds"),
    imp("import-nested-too-deep", lines("[" * 100_000), "{w}/in.jsonl:1: invalid JSON"),
    imp("import-missing-text", lines(json.dumps({"source_type": "request_text"})), ":1: request_text: missing"),
    imp("import-text-not-string", lines(old_row(text=5)), ":1: request_text: expected a string"),  # type: ignore[arg-type]
    imp("import-empty-text", lines(old_row(text="  ")), ":1: request_text: empty"),
    imp("import-unknown-source-type", lines(old_row(source_type="voice")), ":1: source_type: 'voice'"),
    imp(
        "import-missing-vector",
        lines(json.dumps({"request_text": "x", "source_type": "request_text"})),
        "vector: missing",
    ),
    imp("import-float-on-scale-10", lines(old_row(vector=vec(energy=7.5))), "{w}/in.jsonl:1: target_hidden_params"),
    imp(
        "import-value-above-10", lines(old_row(), old_row("b", vector=vec(energy=11))), "{w}/in.jsonl:2: target_hidden"
    ),
    imp("import-negative-value", lines(old_row(vector=vec(warmth=-1))), "{w}/in.jsonl:1: target_hidden_params"),
    imp("import-missing-dim", lines(old_row(vector={"energy": 3})), "{w}/in.jsonl:1: target_hidden_params"),
    imp("import-vector-is-string", lines(old_row(vector="3,4,5")), "{w}/in.jsonl:1: target_hidden_params"),
    imp("import-bool-in-vector", lines(old_row(vector=vec(energy=True))), "{w}/in.jsonl:1: target_hidden_params"),
    imp("import-duplicate-row", lines(old_row("same"), old_row("same")), "{w}/in.jsonl:2: duplicate of line 1"),
    imp("import-over-100", lines(old_row(vector=vec(energy=101))), "{w}/in.jsonl:1:", scale="100"),
    imp("import-500-bad-lines-capped", MANY_BAD, "... and 10 more; all of them in {w}/out.rejected.jsonl"),
    imp(
        "import-0-10-data-as-scale-100",
        lines(old_row("a", vector=vec(energy=3)), old_row("b"), old_row("c")),
        "looks like 0..10 data",
        scale="100",
    ),
    imp("import-all-bad-in-quarantine", lines("{", "["), "no valid rows; nothing written", "--quarantine"),
    imp("import-bad-scale", GOOD, "must be 10 or 100", scale="7"),
    # --- data import: the paths -----------------------------------------------------------------
    Case("import-missing-input", ["data", "import", "{w}/nope.jsonl", "--scale", "10", "--out", "{w}/o"], "not found"),
    Case(
        "import-input-is-directory",
        ["data", "import", "{w}", "--scale", "10", "--out", "{w}/out.jsonl"],
        "is a directory",
    ),
    Case(
        "import-out-is-the-input",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/in.jsonl"],
        "is the input",
        files={"in.jsonl": GOOD},
    ),
    Case(
        "import-out-hard-link-to-input",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/out.jsonl"],
        "is the input",
        files={"in.jsonl": GOOD},
        prepare=_hardlink,
    ),
    Case(
        "import-out-symlink-to-input",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/out.jsonl"],
        "is the input",
        files={"in.jsonl": GOOD},
        prepare=_symlink,
    ),
    Case(
        "import-out-is-a-directory",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/out.jsonl"],
        "is a directory; name a file",
        files={"in.jsonl": GOOD},
        prepare=_out_dir,
    ),
    Case(
        "import-out-is-a-fifo",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/out.jsonl"],
        "is a FIFO; refusing to replace it",
        files={"in.jsonl": GOOD},
        prepare=_fifo,
    ),
    Case(
        "import-out-is-dev-null",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", os.devnull],
        "is a character device",
        files={"in.jsonl": GOOD},
    ),
    Case(
        "import-out-under-a-file",
        ["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/in.jsonl/out.jsonl"],
        "is not a directory",
        files={"in.jsonl": GOOD},
    ),
    # --- data generate ----------------------------------------------------------------------------
    Case(
        "generate-out-is-a-file",
        ["data", "generate", "--out", "{w}/f", "--groups", "1"],
        "is not a directory",
        {"f": b"x"},
    ),
    Case("generate-zero-groups", ["data", "generate", "--out", "{w}/g", "--groups", "0"], "--groups"),
    # --- model fit ---------------------------------------------------------------------------------
    Case("fit-missing-train", FIT, "{w}/train.jsonl: file not found"),
    Case("fit-empty-train", FIT, "{w}/train.jsonl: no valid JSON object line", {"train.jsonl": b""}),
    Case(
        "fit-duplicate-ids",
        FIT,
        "{w}/train.jsonl:2: duplicate id of line 1",
        {"train.jsonl": lines(pair_row(), pair_row())},
    ),
    Case(
        "fit-bad-vector",
        FIT,
        "{w}/train.jsonl:2: energy: 12 is out of range",
        {"train.jsonl": lines(pair_row(), pair_row("b", vec(energy=12)))},
    ),
    Case(
        "fit-float-vector",
        FIT,
        "{w}/train.jsonl:1: energy: expected an integer",
        {"train.jsonl": lines(pair_row(vector=vec(energy=2.5)))},
    ),
    Case("fit-unknown-field", FIT, "{w}/train.jsonl:1:", {"train.jsonl": lines(pair_row(colour="red"))}),
    Case("fit-predecessor-without-scale", FIT, "pass --scale 10 or --scale 100", {"train.jsonl": GOOD}),
    Case(
        "fit-pair-file-with-scale-100", [*FIT, "--scale", "100"], "does not apply", {"train.jsonl": lines(pair_row())}
    ),
    Case("fit-neither-format", FIT, "{w}/train.jsonl:1: neither a Pair", {"train.jsonl": lines('{"a": 1}')}),
    Case("fit-hparams-not-json", [*FIT, "--hparams", "{alpha"], "hparams", {"train.jsonl": lines(pair_row())}),
    Case("fit-hparams-unknown-key", [*FIT, "--hparams", '{"depth": 3}'], "depth", {"train.jsonl": lines(pair_row())}),
    Case(
        "fit-out-is-a-file",
        ["model", "fit", "--train", "{w}/train.jsonl", "--out", "{w}/train.jsonl"],
        "is a file, but a directory is expected",
        {"train.jsonl": lines(pair_row())},
    ),
    Case(
        "fit-would-overwrite-its-input",
        ["model", "fit", "--train", "{w}/m/model.json", "--out", "{w}/m"],
        "is the input",
        {"m/model.json": lines(pair_row())},
    ),
    Case(
        "fit-bad-valid-line",
        [*FIT, "--valid", "{w}/valid.jsonl"],
        "{w}/valid.jsonl:2: invalid JSON",
        {"train.jsonl": lines(pair_row()), "valid.jsonl": lines(pair_row(), "{")},
    ),
    # --- model eval / predict: a model that cannot be loaded --------------------------------------
    Case("eval-missing-model", EVAL, "{w}/model: model directory not found", {"in.jsonl": lines(pair_row())}),
    Case("eval-no-model-json", EVAL, "model.json missing", {"in.jsonl": lines(pair_row()), "model/x": b""}),
    Case("eval-model-json-array", EVAL, "expected a JSON object, got list", {"in.jsonl": b""}, prepare=_model(b"[1]")),
    Case("eval-model-json-invalid", EVAL, "corrupt model metadata", {"in.jsonl": b""}, prepare=_model(b"{")),
    Case("eval-model-json-other-kind", EVAL, "kind='other'", {"in.jsonl": b""}, prepare=_model(b'{"kind": "other"}')),
    Case("predict-model-json-array", ["predict", "hi", "--model", "{w}/model"], "got list", prepare=_model(b"[]")),
    Case(
        "predict-jsonl-empty-input",
        ["predict", "--jsonl", "{w}/in.jsonl", "--model", "{w}/model"],
        "{w}/in.jsonl: no input lines",
        {"in.jsonl": b"\n\n"},
        prepare=_fast_model,
    ),
    Case("predict-bad-source-type", ["predict", "hi", "--source-type", "poem"], "must be one of"),
    Case("predict-no-champion", ["predict", "something calm"], "no champion yet", prepare=_empty_home),
    Case("predict-no-home", ["predict", "something calm"], "no Kotone home at"),
    Case("predict-jsonl-missing-file", ["predict", "--jsonl", "{w}/nope.jsonl", "--model", "{w}/model"], "nope.jsonl"),
    # --- report / status / cycle ---------------------------------------------------------------------
    Case("report-out-dev-null", ["report", "--out", os.devnull], "is a character device"),
    Case("report-out-is-directory", ["report", "--out", "{w}/d"], "is a directory", {"d/x": b""}),
    Case("report-no-instance", ["report"], "no Dagster instance", prepare=_empty_home),
    Case("report-no-home", ["report"], "no Kotone home at"),
    Case("status-no-home", ["status"], "no Kotone home at"),
    Case("report-bad-cycle-range", ["report", "--out", "{w}/r.md", "--format", "pdf"], "pdf"),
    Case("status-corrupt-champion-registry", ["status"], "corrupt champion registry", prepare=_registry),
    Case("cycle-new-bad-id", ["cycle", "new", "Bad ID!"], "Bad ID!"),
    # --- settings, checked before any command -------------------------------------------------------
    Case(
        "env-nan-threshold",
        ["data", "import", "{w}/x", "--scale", "10", "--out", "{w}/o"],
        "KOTONE_MIN_IMPROVEMENT='nan'",
        env={"KOTONE_MIN_IMPROVEMENT": "nan"},
    ),
    Case(
        "env-bad-timezone",
        ["status"],
        "KOTONE_NIGHTLY_TIMEZONE='Moon/Base'",
        env={"KOTONE_NIGHTLY_TIMEZONE": "Moon/Base"},
    ),
    Case("env-unknown-backend", ["cycle", "new", "c1"], "KOTONE_JOB_BACKEND='k8s'", env={"KOTONE_JOB_BACKEND": "k8s"}),
    Case("env-bad-hf-endpoint", ["demo", "-n", "1"], "HF_ENDPOINT='hub.local'", env={"HF_ENDPOINT": "hub.local"}),
    Case(
        "env-missing-data-dir",
        ["data", "generate", "--out", "{w}/g"],
        "KOTONE_DATA_DIR=",
        env={"KOTONE_DATA_DIR": "/no/such/dir"},
    ),
    Case("env-allow-stale-maybe", ["report"], "KOTONE_ALLOW_STALE='maybe'", env={"KOTONE_ALLOW_STALE": "maybe"}),
    Case(
        "env-negative-regression",
        ["predict", "x"],
        "KOTONE_MAX_DIM_REGRESSION='-0.5'",
        env={"KOTONE_MAX_DIM_REGRESSION": "-0.5"},
    ),
    Case("env-unknown-wandb-mode", ["status"], "KOTONE_WANDB_MODE='silent'", env={"KOTONE_WANDB_MODE": "silent"}),
    Case("env-unknown-dataset-store", ["status"], "KOTONE_DATASET_STORE='s3'", env={"KOTONE_DATASET_STORE": "s3"}),
]


def snapshot(root: Path) -> dict[str, object]:
    """Every path under root with its kind and bytes (links not followed)."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode):
            found[str(path.relative_to(root))] = path.read_bytes()
        else:
            found[str(path.relative_to(root))] = stat.S_IFMT(info.st_mode)
    return found


def _fill(text: str, w: Path) -> str:
    return text.replace("{w}", str(w))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_clearly_and_harms_nothing(tmp_path: Path, case: Case) -> None:
    w = tmp_path / "w"
    w.mkdir()
    for name, content in case.files.items():
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).write_bytes(content)
    if case.prepare is not None:
        case.prepare(w)
    before = snapshot(w)
    env = {"KOTONE_HOME": str(tmp_path / "home"), "DAGSTER_HOME": None, **case.env}

    result = CliRunner().invoke(app, [_fill(a, w) for a in case.argv], env=env)  # type: ignore[arg-type]

    output = result.output
    assert result.exit_code in case.codes, output
    assert _fill(case.expect, w) in output
    assert "Traceback" not in output and isinstance(result.exception, SystemExit | None), result.exception
    assert output.count("error:") <= 1  # one message (bad lines listed under it, at most 21 of them)
    assert len(output.splitlines()) <= 30
    after = snapshot(w)
    # Nothing partial: the work folder is exactly as before, except the full list of bad lines.
    report = {k: v for k, v in after.items() if k.endswith(".rejected.jsonl")}
    assert {k: v for k, v in after.items() if k not in report} == before
    if report:
        assert "import-" in case.id and str(w / next(iter(report))) in output


def test_quarantine_accounts_for_every_line_with_its_true_number(tmp_path: Path) -> None:
    rows = [old_row(f"song number {i}").encode() for i in range(1, 101)]
    rows[49] = '{"request_text": "caf\xe9 song", "source_type": "request_text"}'.encode("latin-1")  # line 50
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(rows) + b"\n")
    original = source.read_bytes()
    out = tmp_path / "out.jsonl"

    result = CliRunner().invoke(
        app, ["data", "import", str(source), "--scale", "10", "--out", str(out), "--quarantine"]
    )

    assert result.exit_code == 0, result.output
    assert "read 100 line(s): kept 99 + quarantined 1" in result.output
    assert f"{source}:50: not valid UTF-8" in result.output
    assert len(out.read_text().splitlines()) == 99
    rejected = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [50]
    assert source.read_bytes() == original


KOTONE = [str(Path(sys.executable).parent / "kotone")]  # the installed console script, as a user runs it


@pytest.mark.parametrize(
    ("argv", "env", "expect"),
    [
        (["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "{w}/in.jsonl"], {}, "is the input"),
        (["data", "import", "{w}/in.jsonl", "--scale", "10", "--out", "/dev/null"], {}, "is a character device"),
        (["status"], {"KOTONE_MIN_IMPROVEMENT": "nan"}, "KOTONE_MIN_IMPROVEMENT='nan': expected a finite number"),
    ],
    ids=["same-inode", "dev-null", "nan-setting"],
)
def test_as_a_real_process(tmp_path: Path, argv: list[str], env: dict[str, str], expect: str) -> None:
    w = tmp_path / "w"
    w.mkdir()
    (w / "in.jsonl").write_bytes(GOOD)
    before = snapshot(w)
    full_env = {**os.environ, "KOTONE_HOME": str(tmp_path / "home"), **env}
    full_env.pop("DAGSTER_HOME", None)
    proc = subprocess.run(
        [*KOTONE, *[_fill(a, w) for a in argv]], env=full_env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert expect in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.count("error:") == 1
    assert snapshot(w) == before and not (tmp_path / "home").exists()


def test_ctrl_c_ends_with_one_line_and_leaves_nothing_partial(tmp_path: Path) -> None:
    from kotone_pipeline.cli._common import INTERRUPTED

    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    os.mkfifo(source)  # the command blocks reading it: a Ctrl-C lands mid-command, deterministically
    env = {**os.environ, "KOTONE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [*KOTONE, "data", "import", str(source), "--scale", "10", "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with source.open("w") as writer:  # returns once the command has opened the file
        writer.write(old_row("one") + "\n")
        writer.flush()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == [INTERRUPTED] and stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no temp file
