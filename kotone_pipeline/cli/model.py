"""``kotone model fit|eval``: the local scikit-learn model from the command line."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kotone_pipeline.cli._common import check_scale, console, handle_errors, status_console
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.importer import load_pairs
from kotone_pipeline.domain.data.jsonl import created_mode
from kotone_pipeline.domain.data.output import check_output
from kotone_pipeline.domain.data.schemas import EvalSummary

# metrics and local_model (scikit-learn: about a second to import) are imported inside the commands,
# so `kotone --help` and the other command groups start fast.

app = typer.Typer(help="Fit and evaluate the local scikit-learn model.", no_args_is_help=True)

ScaleOption = Annotated[
    int | None,
    typer.Option(
        "--scale",
        callback=check_scale,
        help="Scale of predecessor-format files (10 or 100); required for them, not for Pair files.",
    ),
]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="model")


def summary_table(summary: EvalSummary) -> Table:
    table = Table(title=f"{summary.model_id} on {summary.dataset} ({summary.rows} rows)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("vector_mae", f"{summary.vector_mae:.4f}"),
        ("mae_raw (0..100)", f"{summary.mae_raw:.2f}"),
        ("mse_norm", f"{summary.mse_norm:.4f}"),
        ("mean_r2", f"{summary.mean_r2:.3f}"),
        ("exact_match_rate", f"{summary.exact_match_rate:.3f}"),
        ("within_one_rate", f"{summary.within_one_rate:.3f}"),
        ("json_valid_rate", f"{summary.json_valid_rate:.3f}"),
        ("p50 / p95 latency (ms)", f"{summary.p50_latency_ms:.3f} / {summary.p95_latency_ms:.3f}"),
    ]
    rows += [(f"mae {dim}", f"{summary.per_dim_mae[dim]:.4f}") for dim in DIMS if dim in summary.per_dim_mae]
    rows += [(f"mae ({source})", f"{mae:.4f}") for source, mae in sorted(summary.by_source_type.items())]
    for name, value in rows:
        table.add_row(name, value)
    return table


def save_model_dir(out: Path, save: Callable[[Path], object]) -> None:
    """A new model directory appears whole or not at all: written aside, then renamed into place. An
    existing one is updated file by file (each atomic; model.json, written last, marks a whole model)."""
    if out.exists():
        save(out)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(aside, created_mode(directory=True))  # mkdtemp's 0o700 would stay with the model dir
        save(aside)
        os.rename(aside, out)
    except BaseException:
        shutil.rmtree(aside, ignore_errors=True)
        raise


@app.command("fit")
@handle_errors
def fit(
    train: Annotated[Path, typer.Option("--train", help="Training pairs (Pair or predecessor JSONL).")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation pairs, scored after fitting.")] = None,
    hparams: Annotated[str | None, typer.Option("--hparams", help="JSON object, e.g. '{\"alpha\": 0.5}'.")] = None,
    scale: ScaleOption = None,
) -> None:
    """Fit the local model on a JSONL file and save it (with validation metrics when --valid is given)."""
    from kotone_pipeline.domain.model import metrics
    from kotone_pipeline.domain.model.local_model import ESTIMATOR_FILE, META_FILE, LocalTextModel, parse_hparams

    hp = parse_hparams(hparams)
    check_output(out, inputs=[train, valid], directory=True, say=lambda message: status_console.print(message))
    for name in (ESTIMATOR_FILE, META_FILE):
        check_output(out / name, inputs=[train, valid])
    train_pairs = load_pairs(train, scale, unique=True).rows
    if not train_pairs:
        raise ValueError(f"{train}: no training pairs (the file is empty or blank); nothing written")
    valid_pairs = load_pairs(valid, scale).rows if valid is not None else None
    started = time.perf_counter()
    with status_console.status(f"fitting on {len(train_pairs)} pairs"):
        model = LocalTextModel(model_id=f"local:{out.name}").fit(train_pairs, hp)
    status_console.print(f"fitted on {len(train_pairs)} pairs in {time.perf_counter() - started:.2f} s")
    saved_metrics = None
    if valid_pairs is not None:
        summary, _ = metrics.evaluate(model, valid_pairs, valid.name if valid else "validation")
        saved_metrics = {"validation": summary.model_dump(mode="json")}
        console.print(summary_table(summary))
    save_model_dir(out, lambda directory: model.save(directory, metrics=saved_metrics))
    console.print(f"model saved to {out}")


@app.command("eval")
@handle_errors
def evaluate(
    model_dir: Annotated[Path, typer.Option("--model", help="Model directory written by `model fit`.")],
    data: Annotated[Path, typer.Option("--data", help="Pairs to score (Pair or predecessor JSONL).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    scale: ScaleOption = None,
) -> None:
    """Score a saved model on a JSONL file."""
    from kotone_pipeline.domain.model import metrics
    from kotone_pipeline.domain.model.local_model import LocalTextModel

    model = LocalTextModel.load(model_dir)
    pairs = load_pairs(data, scale).rows
    if not pairs:
        raise ValueError(f"{data}: no pairs to evaluate")
    with status_console.status(f"scoring {len(pairs)} pairs"):
        summary, _ = metrics.evaluate(model, pairs, data.name)
    if as_json:
        typer.echo(json.dumps(summary.model_dump(mode="json"), sort_keys=True))
    else:
        console.print(summary_table(summary))
