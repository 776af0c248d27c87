"""GPU check of the real training script (see scripts/gpu_check.sh): tiny Mistral3 model, local data, CUDA.

Builds the tiny random model of the default base model's family and a small dataset in a temporary folder
(nothing is downloaded), runs ``train_lora.py`` on it (bf16 and gradient checkpointing on CUDA, batched
generation), then prints the time of each phase and the peak GPU memory. Exit code: 0 ok, 1 any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--rows", type=int, default=64, help="rows per prediction split (default 64)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (checks this script only)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_check: FAIL: torch sees no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    from kotone_pipeline_tests.hf_standin.fixtures import make_splits
    from kotone_pipeline_tests.hf_standin.tiny_model import build_model_dir, prompt_corpus

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"gpu_check: device {device}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kotone-gpu-check-") as tmp:
        root = Path(tmp)
        splits = make_splits(n_train=max(32, args.rows), n_eval=args.rows)
        data = root / "dataset"
        data.mkdir()
        for split, pairs in splits.items():
            (data / f"{split}.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in pairs))
        clock = time.perf_counter()
        build_model_dir(root / "model", prompt_corpus([p for rows in splits.values() for p in rows]))
        print(f"gpu_check: tiny model built in {time.perf_counter() - clock:.1f} s", flush=True)
        command = [
            sys.executable,
            str(REPO / "kotone_pipeline" / "training" / "train_lora.py"),
            f"--dataset-dir={data}",
            f"--model-dir={root / 'model'}",
            "--base-model=tiny-mistral3",
            '--hparams={"grad_accum": 1, "batch_size": 4, "learning_rate": 0.001}',
            f"--max-steps={args.steps}",
            f"--output-dir={root / 'out'}",
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("WANDB_API_KEY", None)
        result = subprocess.run(command, env=env, text=True)
        record_path = root / "out" / "run.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    problems = []
    if result.returncode != 0:
        problems.append(f"train_lora.py exited {result.returncode}: {record.get('error', 'see the log above')}")
    if record.get("status") != "completed":
        problems.append(f"run status {record.get('status')!r}")
    if record and record.get("steps") != args.steps:
        problems.append(f"trained {record.get('steps')} steps, expected {args.steps}")
    if torch.cuda.is_available() and record.get("device") == "cpu":
        problems.append(f"the script ran on {record.get('device')!r}, not on the GPU")
    print("gpu_check: phases (s): " + json.dumps(record.get("timings_s", {}), sort_keys=True))
    print(f"gpu_check: steps {record.get('steps')}, json_valid {record.get('json_valid')}")
    print(f"gpu_check: peak GPU memory {record.get('peak_gpu_memory_mb', 'n/a')} MB")
    for problem in problems:
        print(f"gpu_check: FAIL: {problem}", file=sys.stderr)
    print("gpu_check: " + ("FAILED" if problems else "OK"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
