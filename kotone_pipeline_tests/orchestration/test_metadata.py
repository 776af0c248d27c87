"""Metadata people read in the UI: rounded floats, narrow tables, short labels with a legend, snapshot times."""

from __future__ import annotations

import re

import dagster as dg

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalSummary
from kotone_pipeline.orchestration.metadata import (
    INLINE_MARKDOWN_CHARS,
    MAX_LABEL,
    as_of,
    metrics_metadata,
    per_dim_table,
    readable,
    readable_float,
)

# ~1600 px of asset page fits this many columns of numbers without cutting the last ones off.
MAX_COLUMNS = 7


def _summary(model_id: str, dataset: str) -> EvalSummary:
    third = 1 / 3
    return EvalSummary(
        model_id=model_id,
        dataset=dataset,
        rows=400,
        vector_mae=0.25416666666666665,
        mae_raw=1.2708333333333333,
        mse_norm=0.012345678,
        per_dim_mae={d: third for d in DIMS},
        per_dim_r2={d: 0.5 for d in DIMS},
        mean_r2=0.87654321,
        exact_match_rate=0.7,
        within_one_rate=0.99,
        json_valid_rate=1.0,
        p50_latency_ms=0.1234567,
        p95_latency_ms=0.2345678,
    )


def _tables(markdown: str) -> list[list[str]]:
    """Header rows of each markdown table."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]


def test_floats_keep_four_decimals_and_small_numbers_stay_visible() -> None:
    assert readable_float(0.25416666666666665) == 0.2542
    assert readable_float(12.345678) == 12.3457
    assert readable_float(0.000123456) == 0.0001235
    assert readable_float(0.0) == 0.0


def test_readable_rounds_float_json_and_plain_values_and_keeps_the_rest() -> None:
    out = readable(
        {
            "mae": dg.MetadataValue.float(0.25416666666666665),
            "shares": dg.MetadataValue.json({"train": 0.80123456, "nested": [0.123456789, True, 3]}),
            "plain": 1.0000049,
            "count": dg.MetadataValue.int(3),
            "name": dg.MetadataValue.text("0.123456789"),
        }
    )
    assert out["mae"].value == 0.2542
    assert out["shares"].data == {"train": 0.8012, "nested": [0.1235, True, 3]}
    assert out["plain"].value == 1.0
    assert out["count"].value == 3
    assert out["name"].value == "0.123456789"


def test_metrics_are_narrow_inline_tables_and_name_long_models_in_a_legend() -> None:
    long_run = "nightly-20261130/r0-lr2e-4"
    names = ("champion", "baseline-constant", "baseline-rule", long_run)
    summaries = {f"{n} / {ds}": _summary(n, ds) for n in names for ds in ("probe", "holdout", "human")}
    entries = metrics_metadata(summaries)
    assert set(entries) == {"metrics", "metrics_validity", "model_labels"}
    # Each entry short enough for the UI to show it inline rather than behind "[Show Markdown]".
    assert all(len(entry.value) < INLINE_MARKDOWN_CHARS for entry in entries.values())
    rows = [row for entry in entries.values() for row in _tables(entry.value) if row[0] != "---"]
    assert all(len(row) <= MAX_COLUMNS for row in rows), rows
    headers = {h for row in rows for h in row}
    assert {"vector_mae", "mae_raw", "json_valid", "p95 ms", "mean_r2", "exact", "within_1"} <= headers
    # Every model cell is short; the long id appears once, in the legend, beside its label.
    model_cells = [row[0] for row in rows if row[1] in ("probe", "holdout", "human")]
    assert model_cells and all(len(cell) <= MAX_LABEL for cell in model_cells)
    assert _tables(entries["model_labels"].value) == [["label", "model"], ["m1", long_run]]
    assert "0.2542" in entries["metrics"].value and "0.25416" not in entries["metrics"].value


def test_per_dim_table_has_short_headers_and_a_legend() -> None:
    names = ["baseline-constant", "c-2026-11-30/r0 / holdout", "c-2026-11-30/r1 / holdout"]
    markdown = per_dim_table({name: _summary(name, "holdout") for name in names})
    header = _tables(markdown)[0]
    assert header == ["dim", "baseline-constant", "m1", "m2"]
    assert ["m2", "c-2026-11-30/r1 / holdout"] in _tables(markdown)
    assert "0.3333" in markdown


def test_as_of_is_a_utc_time() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", as_of())
