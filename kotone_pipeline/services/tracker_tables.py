"""The domain's results as a tracker run logs them: metric dicts and tables (``EvalSummary``, ``EvalRow``,
``HardDimReport``, ``SplitStats``, ``GateDecision``), so that a step logs each in one line."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads only when a table is built: the code location starts leaner
    import pandas as pd

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import (
    EvalRow,
    EvalSummary,
    FailureExample,
    GateDecision,
    HardDimReport,
    SplitStats,
)

# Table names shared with wandb_failures.py, which reads the failure table back from the last run.
PREDICTIONS_TABLE = "predictions"
TOP_FAILURES_TABLE = "top_failures"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def eval_metrics(summary: EvalSummary) -> dict[str, float]:
    """Headline metrics, per-dim MAE and R², MAE by source type; log with a prefix such as ``eval``."""
    out: dict[str, float] = {
        "rows": summary.rows,
        "vector_mae": summary.vector_mae,
        "mae_raw": summary.mae_raw,
        "mse_norm": summary.mse_norm,
        "mean_r2": summary.mean_r2,
        "exact_match_rate": summary.exact_match_rate,
        "within_one_rate": summary.within_one_rate,
        "json_valid_rate": summary.json_valid_rate,
        "p50_latency_ms": summary.p50_latency_ms,
        "p95_latency_ms": summary.p95_latency_ms,
    }
    out.update({f"per_dim_mae/{d}": v for d, v in summary.per_dim_mae.items()})
    out.update({f"per_dim_r2/{d}": v for d, v in summary.per_dim_r2.items()})
    out.update({f"mae_by_source_type/{s}": v for s, v in summary.by_source_type.items()})
    # R² is NaN for a constant target; W&B charts choke on NaN, so such entries are left out.
    return {k: v for k, v in out.items() if _finite(float(v)) is not None}


def predictions_table(rows: Sequence[EvalRow]) -> pd.DataFrame:
    """One line per scored prediction: target, prediction and signed error per dim."""
    import pandas as pd

    records = []
    for row in rows:
        record: dict[str, Any] = {
            "pair_id": row.pair_id,
            "group_id": row.group_id,
            "source_type": row.source_type,
            "text": row.text,
            "valid": row.valid,
            "row_mae": row.row_mae,
            "latency_ms": row.latency_ms,
        }
        target, prediction = row.target.as_dict(), row.prediction.as_dict()
        for d in DIMS:
            record[f"target_{d}"] = target[d]
            record[f"pred_{d}"] = prediction[d]
            record[f"err_{d}"] = prediction[d] - target[d]
        records.append(record)
    return pd.DataFrame(records, columns=_prediction_columns())


def _prediction_columns() -> list[str]:
    base = ["pair_id", "group_id", "source_type", "text", "valid", "row_mae", "latency_ms"]
    return base + [f"{kind}_{d}" for d in DIMS for kind in ("target", "pred", "err")]


FAILURE_COLUMNS: tuple[str, ...] = (
    "rank",
    "pair_id",
    "source_type",
    "text",
    "row_mae",
    *(f"target_{d}" for d in DIMS),
    *(f"pred_{d}" for d in DIMS),
)


def failures_table(failures: Sequence[FailureExample]) -> pd.DataFrame:
    """The failing rows, worst first; the layout ``wandb_failures.failures_from_table`` reads back."""
    import pandas as pd

    records = []
    for rank, failure in enumerate(failures, start=1):
        record: dict[str, Any] = {
            "rank": rank,
            "pair_id": failure.pair_id,
            "source_type": failure.source_type,
            "text": failure.text,
            "row_mae": failure.row_mae,
        }
        record.update({f"target_{d}": v for d, v in failure.target.as_dict().items()})
        record.update({f"pred_{d}": v for d, v in failure.prediction.as_dict().items()})
        records.append(record)
    return pd.DataFrame(records, columns=list(FAILURE_COLUMNS))


def hard_dims_metrics(report: HardDimReport) -> dict[str, float]:
    out: dict[str, float] = {f"mae/{d}": v for d, v in report.by_dim.items()}
    out["k"] = report.k
    out["top_failures"] = len(report.top_failures)
    return out


def split_metrics(stats: SplitStats) -> dict[str, float]:
    out: dict[str, float] = {f"rows/{s}": n for s, n in stats.rows.items()}
    out.update({f"groups/{s}": n for s, n in stats.groups.items()})
    for split, by_source in stats.counts.items():
        for source_type, by_origin in by_source.items():
            for origin, n in by_origin.items():
                out[f"counts/{split}/{source_type}/{origin}"] = n
    for split, by_dim in stats.dim_stats.items():
        for dim, dim_stats in by_dim.items():
            out[f"dim_mean/{split}/{dim}"] = dim_stats.mean
    return out


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    out: dict[str, float] = {
        "promote": int(decision.promote),
        "forced": int(decision.forced),
        "reference_holdout_mae": decision.reference_holdout_mae,
    }
    if decision.candidate_holdout_mae is not None:
        out["candidate_holdout_mae"] = decision.candidate_holdout_mae
        out["improvement"] = decision.reference_holdout_mae - decision.candidate_holdout_mae
    if decision.json_valid_rate is not None:
        out["json_valid_rate"] = decision.json_valid_rate
    out.update({f"dim_delta/{d}": v for d, v in decision.per_dim_delta.items()})
    return out


def gate_summary(decision: GateDecision) -> dict[str, Any]:
    return {
        "gate/decision": "promote" if decision.promote else "keep",
        "gate/reference": f"{decision.reference_kind}:{decision.reference_id}",
        "gate/candidate_run_id": decision.candidate_run_id or "",
        "gate/reasons": "\n".join(decision.reasons),
    }
