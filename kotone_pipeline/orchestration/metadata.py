"""Builders for the metadata people read in the Dagster UI (markdown tables, schemas, links)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalSummary

# The UI's asset pages are read at ~1600 px: a table wider than ~8 columns gets cut off, and a model
# name longer than this wraps its column onto several lines.
MAX_LABEL = 18
DECIMALS = 4
# The UI renders markdown with its HTML: ``cycle-<id>`` loses ``<id>`` as an unknown tag. These elements are
# meant as HTML where our markdown uses them; any other ``<word>`` outside code is shown as typed.
HTML_ELEMENTS = frozenset({"a", "b", "br", "code", "details", "em", "i", "img", "kbd", "pre", "strong", "summary"})
_CODE = re.compile(r"```.*?```|(`+).+?\1", re.DOTALL)
_TAG = re.compile(r"(?<!\\)<(/?)([A-Za-z][\w-]*)([^<>\n]*)>")


def escape_tags(text: str, keep: frozenset[str] = HTML_ELEMENTS) -> str:
    """``text`` with every ``<word>`` outside code spans (``keep``'s elements aside) escaped as ``\\<word>``,
    so a markdown renderer shows the placeholder instead of dropping it as an HTML tag."""

    def outside_code(piece: str) -> str:
        return _TAG.sub(lambda m: m.group(0) if m.group(2).lower() in keep else "\\" + m.group(0), piece)

    out, last = [], 0
    for code in _CODE.finditer(text):
        out += [outside_code(text[last : code.start()]), code.group(0)]
        last = code.end()
    return "".join([*out, outside_code(text[last:])])


def readable_float(value: float) -> float:
    """4 decimals (4 significant digits below 0.001, so a small number never reads as 0); full precision stays
    in the JSON artifacts."""
    if value != value or value in (float("inf"), float("-inf")) or value == 0:
        return value
    if abs(value) >= 10**-3:
        return round(value, DECIMALS)
    return float(f"{value:.{DECIMALS}g}")


def _round_tree(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return readable_float(value)
    if isinstance(value, Mapping):
        return {k: _round_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round_tree(v) for v in value]
    return value


def readable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as the UI should show it: every float (plain, ``float`` or inside ``json``) rounded, and no
    ``<placeholder>`` in markdown taken for an HTML tag."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            value = dg.MetadataValue.float(readable_float(value.value))
        elif isinstance(value, dg.JsonMetadataValue):
            value = dg.MetadataValue.json(_round_tree(value.data))
        elif isinstance(value, float):
            value = dg.MetadataValue.float(readable_float(value))
        elif isinstance(value, dg.MarkdownMetadataValue) and value.value:
            value = dg.MetadataValue.md(escape_tags(value.value))
        out[key] = value
    return out


def as_of(when: datetime | None = None) -> str:
    """The moment a snapshot of changing state (job stages) was taken, in UTC."""
    return (when or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{DECIMALS}f}"
    # A cell holds data (a request may read "<lofi> beats"): no tag in it is meant as HTML.
    return escape_tags(str(value).replace("|", "\\|").replace("\n", " "), keep=frozenset())


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def short_labels(names: Sequence[str]) -> dict[str, str]:
    """name -> column label: short names stay, long ones become ``m1``, ``m2``, ... (see ``label_legend``)."""
    labels: dict[str, str] = {}
    for name in names:
        labels[name] = name if len(name) <= MAX_LABEL else f"m{sum(1 for n in labels if len(n) > MAX_LABEL) + 1}"
    return labels


def label_legend(labels: Mapping[str, str]) -> str:
    """The full id behind every shortened label (empty when none was shortened)."""
    rows = [[label, name] for name, label in labels.items() if label != name]
    return "\n\n" + md_table(["label", "model"], rows) if rows else ""


def _split_key(name: str, dataset: str) -> str:
    # eval_summary keys are "<model> / <dataset>"; the dataset has its own column.
    suffix = f" / {dataset}"
    return name[: -len(suffix)] if name.endswith(suffix) else name


# The UI shows markdown metadata inline only below this many characters (longer: a "[Show Markdown]" link).
INLINE_MARKDOWN_CHARS = 1000


def metrics_tables(summaries: Mapping[str, EvalSummary]) -> tuple[str, str, str]:
    """The headline metrics as two narrow tables (accuracy; validity and speed) and the label legend ("" if none)."""
    models = {name: _split_key(name, s.dataset) for name, s in summaries.items()}
    labels = short_labels(list(dict.fromkeys(models.values())))
    accuracy = [
        [labels[models[n]], s.dataset, s.rows, s.vector_mae, s.mae_raw, s.exact_match_rate, s.within_one_rate]
        for n, s in summaries.items()
    ]
    other = [
        [labels[models[n]], s.dataset, s.mse_norm, s.mean_r2, s.json_valid_rate, s.p95_latency_ms]
        for n, s in summaries.items()
    ]
    return (
        md_table(["model", "dataset", "rows", "vector_mae", "mae_raw", "exact", "within_1"], accuracy),
        md_table(["model", "dataset", "mse_norm", "mean_r2", "json_valid", "p95 ms"], other),
        label_legend(labels).strip(),
    )


def metrics_metadata(summaries: Mapping[str, EvalSummary]) -> dict[str, dg.MetadataValue]:
    """``metrics`` and ``metrics_validity`` (and ``model_labels``): separate entries, each short enough for the
    UI to show inline instead of behind a link."""
    accuracy, validity, legend = metrics_tables(summaries)
    out = {"metrics": dg.MetadataValue.md(accuracy), "metrics_validity": dg.MetadataValue.md(validity)}
    if legend:
        out["model_labels"] = dg.MetadataValue.md(legend)
    return out


def per_dim_table(summaries: Mapping[str, EvalSummary]) -> str:
    labels = short_labels(list(summaries))
    headers = ["dim", *labels.values()]
    rows = [[dim, *(s.per_dim_mae.get(dim, float("nan")) for s in summaries.values())] for dim in DIMS]
    return md_table(headers, rows) + label_legend(labels)


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
    """A file's place: a path, or a link when the state store is remote."""
    text = str(path)
    return dg.MetadataValue.url(text) if text.startswith(("http://", "https://")) else dg.MetadataValue.path(text)


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
