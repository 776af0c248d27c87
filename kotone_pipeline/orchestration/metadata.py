"""Builders for the metadata people read in the Dagster UI (markdown tables, schemas, links)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.schemas import EvalSummary


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(summaries: Mapping[str, EvalSummary]) -> str:
    """One row per model/dataset: the headline metrics side by side."""
    headers = [
        "model",
        "dataset",
        "rows",
        "vector_mae",
        "mae_raw",
        "mse_norm",
        "mean_r2",
        "exact",
        "within_1",
        "json_valid",
        "p95 ms",
    ]
    rows = [
        [
            name,
            s.dataset,
            s.rows,
            s.vector_mae,
            s.mae_raw,
            s.mse_norm,
            s.mean_r2,
            s.exact_match_rate,
            s.within_one_rate,
            s.json_valid_rate,
            s.p95_latency_ms,
        ]
        for name, s in summaries.items()
    ]
    return md_table(headers, rows)


def per_dim_table(summaries: Mapping[str, EvalSummary]) -> str:
    headers = ["dim", *summaries.keys()]
    rows = [[dim, *(s.per_dim_mae.get(dim, float("nan")) for s in summaries.values())] for dim in DIMS]
    return md_table(headers, rows)


def pair_column_schema() -> dg.TableSchema:
    columns = [
        dg.TableColumn("id", "string", description="stable hash of source_type + normalized text"),
        dg.TableColumn("group_id", "string", description="source item; all its rows share one split"),
        dg.TableColumn("source_type", "string", description="request_text | rule_prompt"),
        dg.TableColumn("text", "string"),
        *(dg.TableColumn(f"vector.{dim}", "int", description="0..10") for dim in DIMS),
        dg.TableColumn("parts", "json", description="slot -> part id (rule prompts)"),
        dg.TableColumn("origin", "string", description="teacher | augmented | replay | imported"),
        dg.TableColumn("cycle", "string"),
        dg.TableColumn("parent_id", "string", description="source pair of an augmented/replay row"),
    ]
    return dg.TableSchema(columns=columns)


def dataset_metadata(rows: int, data_hash: str) -> dict[str, Any]:
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": pair_column_schema(),
        "data_hash": dg.MetadataValue.text(data_hash),
    }


def path_value(path: Any) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(path))


def tracking_metadata(link: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """The W&B run: a link when online, the offline run directory and its sync command otherwise."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in link.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif key in ("wandb_url", "wandb_dataset_url", "weave_evaluation_url") and value:
            out[key] = dg.MetadataValue.url(value)
        elif key in ("wandb_run_dir", "wandb_dataset_run_dir") and value:
            out[key] = dg.MetadataValue.path(value)
        elif value:
            out[key] = dg.MetadataValue.text(str(value))
    return out


def human_metadata(summaries: dict[str, dict[str, EvalSummary]]) -> dict[str, dg.MetadataValue]:
    """Each model's MAE on the hand-written human set, the champion's as a number for the UI's plots."""
    rows = [
        [name, by_ds["human"].rows, by_ds["human"].vector_mae] for name, by_ds in summaries.items() if "human" in by_ds
    ]
    out: dict[str, dg.MetadataValue] = {
        "human_set": dg.MetadataValue.md(md_table(["model", "rows", "human-set MAE"], rows) if rows else "not scored")
    }
    current = summaries.get("champion", {}).get("human")
    if current is not None:
        out["champion_human_mae"] = dg.MetadataValue.float(round(current.vector_mae, 4))  # full precision in the JSON
    return out
