"""Domain benchmarks: the data path at scale, and the local model's speed and accuracy."""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import Benchmark, Row, median_seconds, timed
from kotone_pipeline.domain.data.base_data import build_base_set, load_eval_set
from kotone_pipeline.domain.loop import quality, split
from kotone_pipeline.domain.model.baselines import ConstantBaseline, RuleBaseline
from kotone_pipeline.domain.model.embedding_cache import EMBEDDING_CACHE_ENV, clear_encoders, get_encoder
from kotone_pipeline.domain.model.local_model import LocalTextModel
from kotone_pipeline.domain.model.metrics import evaluate
from kotone_pipeline.domain.model.predictor import PredictInput
from kotone_pipeline.domain.requests import teacher
from kotone_pipeline.domain.requests.catalog import load_catalog

SEED = 20260101
SMALL, LARGE = 100_000, 1_000_000  # half rule prompts, half composed requests
PREDICT_GROUPS = 10_000  # 20,000 unseen texts for batch throughput
SINGLE_CALLS = 1_000


# --- data: generate -> quality filter -> split ------------------------------------------------------


def _generate_filter_split(n_pairs: int) -> None:
    catalog = load_catalog()
    rows = teacher.generate_rows(catalog, n_pairs // 2, SEED, "bench", pool="base")
    kept, _ = quality.filter_rows(rows, catalog=catalog)
    split.split_rows(kept, SEED)


def run_data(repeats: int) -> dict[str, float]:
    small_s = median_seconds(lambda: _generate_filter_split(SMALL), repeats)
    gc.collect()
    # The 1M run is done once: it takes ten times as long as the rest of this benchmark.
    large_s = timed(lambda: _generate_filter_split(LARGE))
    gc.collect()
    return {
        "pairs_100k_generate_filter_split_s": small_s,
        "pairs_per_s_at_100k": SMALL / small_s,
        "pairs_1m_generate_filter_split_s": large_s,
        "pairs_per_s_at_1m": LARGE / large_s,
    }


def rows_data(r: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("generate+filter+split, 100k pairs", r["pairs_100k_generate_filter_split_s"], "s", repeats),
        Row("  throughput at 100k", r["pairs_per_s_at_100k"], "pairs/s", repeats),
        Row("generate+filter+split, 1M pairs", r["pairs_1m_generate_filter_split_s"], "s", 1),
        Row(
            "  throughput at 1M",
            r["pairs_per_s_at_1m"],
            "pairs/s",
            1,
            r["pairs_per_s_at_1m"] / r["pairs_per_s_at_100k"],
            "100k throughput",
        ),
    ]


# --- model: fit, predict, holdout accuracy ----------------------------------------------------------


def _cold_fit(base: list) -> float:
    """A fit in a fresh KOTONE_HOME with no encoder loaded: the model file is verified, the session
    built and every request text embedded (what a first run on a new machine pays)."""
    with tempfile.TemporaryDirectory() as home:
        previous = os.environ.get("KOTONE_HOME")
        os.environ["KOTONE_HOME"] = home
        clear_encoders()
        try:
            return timed(lambda: LocalTextModel().fit(base))
        finally:
            clear_encoders()
            if previous is None:
                os.environ.pop("KOTONE_HOME", None)
            else:
                os.environ["KOTONE_HOME"] = previous


def _embed_rate(texts: list[str]) -> float:
    encoder = get_encoder(disk_cache=False)
    fresh = encoder.encoder  # the bare encoder: no cache, every text embedded
    return len(texts) / timed(lambda: fresh.encode(texts))


def run_model(repeats: int) -> dict[str, float]:
    base, _ = build_base_set()
    holdout = load_eval_set("holdout")
    cold_s = statistics.median(_cold_fit(base) for _ in range(max(1, min(repeats, 2))))
    LocalTextModel().fit(base)  # warms this process's embedding cache
    fit_s = median_seconds(lambda: LocalTextModel().fit(base), repeats)
    model = LocalTextModel(model_id="bench-local").fit(base)
    requests = [p.text for p in base if p.source_type == "request_text"][:2000]
    embed_per_s = statistics.median(_embed_rate(requests) for _ in range(max(1, repeats)))
    constant = ConstantBaseline(base)
    unseen = teacher.generate_pairs(load_catalog(), PREDICT_GROUPS, SEED + 1, "benchp", pool="base")
    inputs = [PredictInput(p.text, p.source_type) for p in unseen]
    # One request at a time, as a served model sees them: texts neither the batch nor the fit embedded.
    singles_pool = teacher.generate_pairs(load_catalog(), SINGLE_CALLS * max(1, repeats), SEED + 2, "benchs")
    singles = [PredictInput(p.text, p.source_type) for p in singles_pool if p.source_type == "request_text"]

    with tempfile.TemporaryDirectory() as tmp:
        saved = model.save(Path(tmp) / "model")
        batch_s, constant_s, single_p95 = [], [], []
        previous_cache = os.environ.get(EMBEDDING_CACHE_ENV)
        try:
            for i in range(max(1, repeats)):
                # Cold caches, the conservative figure: a new model object and an empty embedding cache, so no
                # text is a hit from an earlier run of this benchmark (the cache outlives the process).
                os.environ[EMBEDDING_CACHE_ENV] = str(Path(tmp) / f"embeddings-{i}")
                fresh = LocalTextModel.load(saved)
                batch_s.append(timed(lambda m=fresh: m.predict(inputs)))
                constant_s.append(timed(lambda: constant.predict(inputs)))
                latencies = []
                for item in singles[i * SINGLE_CALLS : (i + 1) * SINGLE_CALLS]:
                    started = time.perf_counter()
                    fresh.predict([item])
                    latencies.append((time.perf_counter() - started) * 1000)
                single_p95.append(float(np.percentile(latencies, 95)))
        finally:
            if previous_cache is None:
                os.environ.pop(EMBEDDING_CACHE_ENV, None)
            else:
                os.environ[EMBEDDING_CACHE_ENV] = previous_cache

    local_summary, _ = evaluate(model, holdout, "holdout")
    constant_summary, _ = evaluate(constant, holdout, "holdout")
    rule_summary, _ = evaluate(RuleBaseline.from_train(base), holdout, "holdout")
    results = {
        "fit_base_s": cold_s,
        "fit_base_cached_s": fit_s,
        "embed_per_s": embed_per_s,
        "fit_base_rows": float(len(base)),
        "predict_batch_per_s": len(inputs) / statistics.median(batch_s),
        "predict_batch_per_s_constant": len(inputs) / statistics.median(constant_s),
        "predict_single_p95_ms": statistics.median(single_p95),
        "holdout_mae_local": local_summary.vector_mae,
        "holdout_mae_constant": constant_summary.vector_mae,
        "holdout_mae_rule": rule_summary.vector_mae,
    }
    for source_type, mae in local_summary.by_source_type.items():
        results[f"holdout_mae_local_{source_type}"] = mae
    for source_type, mae in constant_summary.by_source_type.items():
        results[f"holdout_mae_constant_{source_type}"] = mae
    return results


def rows_model(r: dict[str, float], repeats: int) -> list[Row]:
    constant_mae = r["holdout_mae_constant"]
    rows = [
        Row(f"fit local model, base set ({r['fit_base_rows']:.0f} rows), cold", r["fit_base_s"], "s", min(repeats, 2)),
        Row(
            "  the same, embeddings cached",
            r["fit_base_cached_s"],
            "s",
            repeats,
            r["fit_base_cached_s"] / r["fit_base_s"],
            "cold fit",
        ),
        Row("embed request texts (sorted batches of 32)", r["embed_per_s"], "texts/s", repeats),
        Row(
            "predict batched, 20k unseen texts",
            r["predict_batch_per_s"],
            "pred/s",
            repeats,
            r["predict_batch_per_s"] / r["predict_batch_per_s_constant"],
            "constant baseline",
        ),
        Row("predict one new request text (encoder included), p95", r["predict_single_p95_ms"], "ms", repeats),
        Row(
            "holdout MAE, local model",
            r["holdout_mae_local"],
            "",
            1,
            r["holdout_mae_local"] / constant_mae,
            "constant",
        ),
    ]
    for source_type in ("request_text", "rule_prompt"):
        key = f"holdout_mae_local_{source_type}"
        if key in r:
            versus = r.get(f"holdout_mae_constant_{source_type}")
            ratio = r[key] / versus if versus else None
            rows.append(Row(f"  local on {source_type}", r[key], "", 1, ratio, f"constant, {source_type}"))
    rows += [
        Row(
            "holdout MAE, rule baseline",
            r["holdout_mae_rule"],
            "",
            1,
            r["holdout_mae_rule"] / constant_mae,
            "constant",
        ),
        Row("holdout MAE, constant baseline", constant_mae, "", 1),
    ]
    return rows


BENCHMARKS = [
    Benchmark("data", run_data, rows_data),
    Benchmark("model", run_model, rows_model),
]
