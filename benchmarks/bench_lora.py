"""The real LoRA training script on the tiny Mistral3 model, on CPU (needs the train extra).

``lora_cpu_tiny_phase_s``: the script runs as a job would, against the local Hub stand-in (pinned dataset
commit in, run branch out), and its own ``run.json`` timings give each phase: base model download, load,
one optimizer step, prediction per row (batched), push of the adapter. ``predict_batched_speedup``: the
same trained-from-scratch tiny model predicts 32 rows one at a time and in left-padded batches of
``JOB_PREDICT_BATCH``; the ratio of per-row times (target >= 5x). Each figure is a median of ``repeats``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Benchmark, Row

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in and the tiny model live in the test package
    sys.path.insert(0, str(ROOT))

STEPS = 4
PREDICT_ROWS = 32
SPEEDUP_TARGET = 5.0


def phases(repeats: int = 3) -> dict[str, float]:
    import huggingface_hub.constants

    from kotone_pipeline.services.hf_datasets import HfHubDatasetStore
    from kotone_pipeline.training import TRAIN_SCRIPT
    from kotone_pipeline_tests.hf_standin.fixtures import make_splits
    from kotone_pipeline_tests.hf_standin.server import HubStandIn
    from kotone_pipeline_tests.hf_standin.tiny_model import prompt_corpus, publish_base_model

    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    token, user = "hf_bench_token_0123456789", "kotone-bot"
    runs: list[dict[str, float]] = []
    with HubStandIn({token: user}) as hub, tempfile.TemporaryDirectory(prefix="kotone-bench-lora-") as tmp:
        splits = make_splits(n_train=32, n_eval=PREDICT_ROWS // 4)
        store = HfHubDatasetStore(f"{user}/data", token=token, endpoint=hub.url, training_script=TRAIN_SCRIPT)
        ref = store.publish("bench", splits, {"seed": 1})
        publish_base_model(hub, prompt_corpus([p for rows in splits.values() for p in rows]))
        for index in range(max(1, repeats)):
            env = {
                "PATH": os.environ.get("PATH", ""),
                "HOME": tmp,
                "HF_HOME": str(Path(tmp) / f"hf-{index}"),  # a fresh cache: the download is measured each time
                "HF_ENDPOINT": hub.url,
                "HF_TOKEN": token,
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
            command = [
                sys.executable,
                str(TRAIN_SCRIPT),
                f"--dataset-repo={user}/data",
                f"--dataset-revision={ref.version}",
                f"--output-repo={user}/runs",
                f"--output-revision=bench-{index}",
                f"--output-dir={Path(tmp) / f'out-{index}'}",
                '--hparams={"batch_size": 4, "grad_accum": 1}',
                f"--max-steps={STEPS}",
            ]
            started = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            wall = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"train_lora.py failed: {result.stderr[-2000:]}")
            record = json.loads((Path(tmp) / f"out-{index}" / "run.json").read_text())
            t = record["timings_s"]
            predicted = sum(record["rows"].get(s, 0) for s in ("validation", "holdout", "probe", "human"))
            predict_s = sum(v for k, v in t.items() if k.startswith("predict_"))
            runs.append(
                {
                    "lora_cpu_tiny_phase_s.wall": wall,
                    "lora_cpu_tiny_phase_s.download": t["download_base_s"],
                    "lora_cpu_tiny_phase_s.load": t["load_s"],
                    "lora_cpu_tiny_phase_s.train_step": t["train_s"] / record["steps"],
                    "lora_cpu_tiny_phase_s.predict_per_row_batched": predict_s / predicted,
                    "lora_cpu_tiny_phase_s.upload_adapter": t["push_adapter_s"],
                }
            )
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def batched_speedup(repeats: int = 3) -> dict[str, float]:
    import torch

    from kotone_pipeline.training import train_lora as script
    from kotone_pipeline_tests.hf_standin.fixtures import make_splits
    from kotone_pipeline_tests.hf_standin.tiny_model import build_model_dir, prompt_corpus

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rows = [
        {"id": p.id, "text": p.text, "source_type": p.source_type}
        for p in make_splits(n_train=1, n_eval=PREDICT_ROWS)["holdout"]
    ]
    with tempfile.TemporaryDirectory(prefix="kotone-bench-predict-") as tmp:
        corpus = prompt_corpus(make_splits(n_train=8, n_eval=4)["train"])
        build_model_dir(Path(tmp), corpus)
        tokenizer = script.load_tokenizer(tmp)
        model = script.load_base_model(tmp)
    one, batched = [], []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        script.predict_rows(model, tokenizer, rows, batch_size=1)
        one.append((time.perf_counter() - start) / len(rows))
        start = time.perf_counter()
        script.predict_rows(model, tokenizer, rows, batch_size=script.JOB_PREDICT_BATCH)
        batched.append((time.perf_counter() - start) / len(rows))
    one_s, batched_s = statistics.median(one), statistics.median(batched)
    return {
        "predict_batched_speedup": one_s / batched_s,
        "predict_batched_speedup.per_row_one_at_a_time_s": one_s,
        "predict_batched_speedup.per_row_batched_s": batched_s,
    }


def _rows(results: dict[str, float], repeats: int) -> list[Row]:
    return [Row(key, value, "" if key == "predict_batched_speedup" else "s", repeats) for key, value in results.items()]


def _speedup_rows(results: dict[str, float], repeats: int) -> list[Row]:
    rows = _rows(results, repeats)
    if results["predict_batched_speedup"] < SPEEDUP_TARGET:
        print(
            f"predict_batched_speedup {results['predict_batched_speedup']:.1f}x is below the {SPEEDUP_TARGET}x target"
        )
    return rows


BENCHMARKS = [
    Benchmark("lora_cpu_tiny_phase_s", phases, _rows),
    Benchmark("predict_batched_speedup", batched_speedup, _speedup_rows),
]
