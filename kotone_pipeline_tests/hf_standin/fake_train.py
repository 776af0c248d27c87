# /// script
# requires-python = ">=3.10"
# dependencies = ["huggingface_hub>=2,<3"]
# ///
"""A stand-in for ``train_lora.py`` with the same command line: it downloads the pinned dataset from the Hub,
"trains" a per-dim median predictor, predicts validation and holdout, and uploads its outputs to the run's
output branch. ``--hparams '{"fail": true}'`` makes it fail after printing a few log lines;
``{"sleep_s": N}`` makes it run for N seconds first.

``FAKE_TRAIN_MODEL=local`` in the job's machine env (``HubStandIn.machine_env``) fits the project's local
text model instead of the median, so that a run can really beat the baselines (end-to-end cycle tests);
the stand-in's machines have the repository on their ``PYTHONPATH``.

``FAKE_TRAIN_STALL_S=N`` in the machine env makes a first attempt push a checkpoint to its output branch and
then hang for N seconds (a test advances the stand-in's clock past the job's timeout to kill it); an attempt
that finds the checkpoint resumes without hanging, like ``train_lora.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DIMS = ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset-repo", required=True)
    parser.add_argument("--dataset-revision", required=True)
    parser.add_argument("--output-repo", required=True)
    parser.add_argument("--output-revision", required=True)
    parser.add_argument("--hparams", default="{}")
    parser.add_argument("--max-steps", type=int, default=None)  # accepted like train_lora.py's; unused
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--max-predict-rows", type=int, default=None)
    args = parser.parse_args()
    hparams = json.loads(args.hparams)
    print(f"fake trainer: {args.dataset_repo}@{args.dataset_revision} -> {args.output_repo}@{args.output_revision}")
    print(f"secrets present: HF_TOKEN={bool(os.environ.get('HF_TOKEN'))} WANDB={bool(os.environ.get('WANDB_API_KEY'))}")
    time.sleep(float(hparams.get("sleep_s", 0)))
    if hparams.get("fail"):
        for step in range(5):
            print(f"step {step}: loss nan")
        print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr)
        return 1

    from huggingface_hub import HfApi, snapshot_download

    stall_s = float(os.environ.get("FAKE_TRAIN_STALL_S") or 0)
    resumed = bool(stall_s) and _checkpoint(args.output_repo, args.output_revision, stall_s)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(
            snapshot_download(
                args.dataset_repo,
                repo_type="dataset",
                revision=args.dataset_revision,
                allow_patterns=["*.jsonl"],
                local_dir=tmp,
            )
        )
        splits = {
            name: [json.loads(line) for line in (data / "splits" / f"{name}.jsonl").read_text().splitlines() if line]
            for name in ("train", "validation", "holdout", "probe", "human")
            if (data / "splits" / f"{name}.jsonl").is_file()
        }
    median = {d: int(statistics.median_low(r["vector"][d] for r in splits["train"])) for d in DIMS}
    out = Path("outputs")
    out.mkdir(exist_ok=True)
    predict = _local_model(splits["train"]) if os.environ.get("FAKE_TRAIN_MODEL") == "local" else None
    for split in ("validation", "holdout", "probe", "human"):
        if split not in splits:
            continue
        vectors = predict(splits[split]) if predict else [median] * len(splits[split])
        lines = [
            json.dumps({"pair_id": r["id"], "raw": json.dumps(v), "prediction": v, "latency_ms": 1.0})
            for r, v in zip(splits[split], vectors, strict=True)
        ]
        (out / f"predictions_{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    rows = {name: len(rows) for name, rows in splits.items()}
    record = {"status": "completed", "rows": rows, "hparams": hparams, "resumed_from_checkpoint": resumed}
    (out / "run.json").write_text(json.dumps(record))
    (out / "metrics.json").write_text(json.dumps({"train_median": median}))
    api = HfApi()
    api.create_repo(args.output_repo, repo_type="model", private=True, exist_ok=True)
    api.create_branch(args.output_repo, branch=args.output_revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=args.output_repo,
        folder_path=str(out),
        revision=args.output_revision,
        commit_message="fake run",
    )
    print(f"uploaded outputs: {commit.oid}")
    return 0


def _checkpoint(repo: str, branch: str, stall_s: float) -> bool:
    """True when the branch holds a checkpoint (resume); else push one and hang (the job then times out)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", private=True, exist_ok=True)
    api.create_branch(repo, branch=branch, exist_ok=True)
    if api.file_exists(repo, "checkpoint/state.json", revision=branch):
        print("resuming from checkpoint/state.json")
        return True
    api.upload_file(path_or_fileobj=b'{"step": 1}', path_in_repo="checkpoint/state.json", repo_id=repo, revision=branch)
    print(f"checkpoint pushed; stalling {stall_s:.0f}s", flush=True)
    time.sleep(stall_s)
    return False


def _local_model(train: list[dict]) -> Callable[[list[dict]], list[dict[str, int] | None]]:
    """The project's local text model fitted on the train rows (stand-in machines can import the repo)."""
    from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair
    from kotone_pipeline.domain.model.local_model import LocalTextModel
    from kotone_pipeline.domain.model.predictor import PredictInput

    # No sentence encoder: a stand-in machine has a clean environment (no shared embedding cache), and
    # this only has to be a candidate that learns, not the best one.
    hparams = LocalHyperParams(use_encoder=False)
    model = LocalTextModel(model_id="fake-lora").fit([Pair.model_validate(r) for r in train], hparams)

    def predict(rows: list[dict]) -> list[dict[str, int] | None]:
        predictions = model.predict([PredictInput(r["text"], r["source_type"]) for r in rows])
        return [p.vector.as_dict() if p.vector is not None else None for p in predictions]

    print(f"fitted the local text model on {len(train)} rows")
    return predict


if __name__ == "__main__":
    sys.exit(main())
