"""Train the local model on a published dataset directory: what a job runner calls.

    python -m kotone_pipeline.train_local --dataset DIR --out DIR [--hparams JSON]

Reads ``DIR/{train,validation,test,holdout,probe,human}.jsonl`` (the eval splits optional), fits on train and writes
``OUT/model/``, ``OUT/predictions_{validation,holdout,probe,human}.jsonl``, ``OUT/metrics.json`` and ``OUT/run.json``.
Bad input ends the run with one ``error:`` line and exit code 2 (``run.json`` then says ``failed``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kotone_pipeline.domain.data.jsonl import read_models, write_json, write_jsonl
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair
from kotone_pipeline.domain.model import metrics
from kotone_pipeline.domain.model.encoder import EncoderError
from kotone_pipeline.domain.model.local_model import (
    LocalTextModel,
    library_versions,
    parse_hparams,
    training_data_hash,
)
from kotone_pipeline.domain.model.predictor import PredictInput
from kotone_pipeline.services.datasets import SPLIT_FILES
from kotone_pipeline.services.local_jobs import commit_outputs, job_dir_of_output

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
REQUIRED_SPLITS = ("train", "validation", "test")
SCORED_SPLITS = ("validation", "holdout", "probe", "human", "field")
MODEL_SUBDIR = "model"
STAGING_DIR = ".staging"  # inside --out: a local job's outputs before the job lock lets them in
PARENT_POLL_S = 0.5


def _log(message: str) -> None:
    print(f"[train_local] {message}", flush=True)


def read_dataset(dataset: Path) -> dict[str, list[Pair]]:
    """Every split file present; train/validation/test must exist, the eval splits may be absent."""
    if not dataset.is_dir():
        raise ValueError(f"{dataset}: dataset directory not found")
    missing = [SPLIT_FILES[s] for s in REQUIRED_SPLITS if not (dataset / SPLIT_FILES[s]).is_file()]
    if missing:
        raise ValueError(f"{dataset}: missing split file(s) {', '.join(missing)}")
    return {
        split: read_models(dataset / name, Pair).rows
        for split, name in SPLIT_FILES.items()
        if (dataset / name).is_file()
    }


def prediction_records(model: LocalTextModel, pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    predictions = model.predict([PredictInput(p.text, p.source_type) for p in pairs])
    return [
        {
            "pair_id": pair.id,
            "raw": pred.raw,
            "prediction": pred.vector.as_dict() if pred.vector is not None else None,
            "latency_ms": pred.latency_ms,
        }
        for pair, pred in zip(pairs, predictions, strict=True)
    ]


def train(dataset: Path, out: Path, hparams: LocalHyperParams, record: dict[str, Any]) -> None:
    """Fit, predict, score and write every output but ``run.json``; fills ``record`` as it goes."""
    timings: dict[str, float] = record.setdefault("timings_s", {})
    clock = time.perf_counter()
    splits = read_dataset(dataset)
    timings["read_s"] = round(time.perf_counter() - clock, 4)
    record["rows"] = {split: len(pairs) for split, pairs in splits.items()}
    _log("read " + ", ".join(f"{split}={n}" for split, n in record["rows"].items()) + f" from {dataset}")
    if not splits["train"]:
        raise ValueError(f"{dataset / SPLIT_FILES['train']}: no training pairs")
    record["train_data_hash"] = training_data_hash(splits["train"])

    clock = time.perf_counter()
    model = LocalTextModel(model_id=record["model_id"]).fit(splits["train"], hparams)
    timings["fit_s"] = round(time.perf_counter() - clock, 4)
    _log(f"fitted on {len(splits['train'])} pairs in {timings['fit_s']:.2f} s")

    summaries: dict[str, Any] = {}
    for split in SCORED_SPLITS:
        pairs = splits.get(split)
        if not pairs:
            continue
        clock = time.perf_counter()
        records = prediction_records(model, pairs)
        timings[f"predict_{split}_s"] = round(time.perf_counter() - clock, 4)
        write_jsonl(out / f"predictions_{split}.jsonl", records)
        summary, _ = metrics.score_prediction_records(pairs, records, model.model_id, split)
        summaries[split] = summary.model_dump(mode="json")
        _log(f"{split}: vector_mae={summary.vector_mae:.4f} on {summary.rows} rows")

    write_json(out / "metrics.json", summaries)
    model.save(out / MODEL_SUBDIR, metrics=summaries)
    record["metrics"] = {split: s["vector_mae"] for split, s in summaries.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kotone_pipeline.train_local", description="Train the local model on a dataset directory."
    )
    parser.add_argument("--dataset", required=True, type=Path, help="directory with the split JSONL files")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--hparams", default=None, help="JSON object of local hyper-parameters")
    parser.add_argument("--model-id", default=None, help="id recorded in the model and metrics")
    return parser


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _watch_runner(runner_pid: int) -> None:
    """End this process when its job runner is gone. On Linux the runner has the kernel kill it at once
    (PR_SET_PDEATHSIG); elsewhere this thread notices that the process was re-parented."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != runner_pid:
                _error(f"the job runner (pid {runner_pid}) is gone; stopping")
                os._exit(EXIT_FAILED)

    threading.Thread(target=watch, name="watch-job-runner", daemon=True).start()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    # Inside a local job, outputs are written aside and let in under the job lock only while the job is
    # still running: a job recorded CANCELED or ERROR (its runner killed) never gets a model afterwards.
    job_dir, runner_pid = job_dir_of_output(args.out), os.getppid()
    target = args.out / STAGING_DIR if job_dir is not None else args.out
    if job_dir is not None:
        _watch_runner(runner_pid)
        shutil.rmtree(target, ignore_errors=True)
    record: dict[str, Any] = {
        "status": "running",
        "trainer": "local",
        "model_id": args.model_id or f"local:{args.out.name}",
        "dataset": str(args.dataset),
        "started_at": _now(),
        "timings_s": {},
        "library_versions": library_versions(),
    }
    try:
        hparams = parse_hparams(args.hparams)
        record["hparams"] = hparams.model_dump()
        train(args.dataset, target, hparams, record)
        record["status"] = "completed"
        exit_code = 0
    except (ValueError, OSError, EncoderError) as exc:  # bad input or install: one clear message, no traceback
        message = f"{exc.filename}: {exc.strerror or exc}" if isinstance(exc, OSError) and exc.filename else str(exc)
        _error(message)
        record.update(status="failed", error=message)
        exit_code = EXIT_BAD_INPUT
    except Exception as exc:  # a bug: keep the traceback as evidence, and still say so in run.json
        traceback.print_exc()
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        exit_code = EXIT_FAILED
    record["finished_at"] = _now()
    record["timings_s"]["total_s"] = round(time.perf_counter() - started, 3)
    try:
        write_json(target / "run.json", record)
    except OSError as exc:
        _error(f"cannot write {args.out / 'run.json'}: {exc.strerror or exc}")
        return exit_code or EXIT_FAILED
    if job_dir is not None:
        refused = commit_outputs(job_dir, target, args.out, runner_pid)
        if refused is not None:
            _error(refused)
            return EXIT_FAILED
    if exit_code == 0:
        _log(f"wrote {args.out}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
