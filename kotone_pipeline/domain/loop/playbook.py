"""The failure playbook: where the model fails, in which direction, and what the loop does next.

Built from one evaluation (per-row results) plus the hard-dim report and the next-cycle plan; rendered
as markdown for people and kept as structured fields for machines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.data.schemas import EvalRow, HardDimReport

DEFAULT_FAILURE_THRESHOLD = 0.5  # row MAE: three steps of error spread over the six dims
MIN_EXAMPLES, MAX_EXAMPLES = 5, 10


class DimErrorRow(BaseModel):
    dim: str
    mae: float
    rank: int  # 1 = worst
    focus: bool


class ClusterRow(BaseModel):
    """Rows sharing one key (a source type, or one catalog part ``slot:part_id``)."""

    key: str
    rows: int
    failing: int  # rows with row MAE >= the failure threshold
    invalid: int
    mean_row_mae: float
    worst_dim: str
    worst_dim_mae: float


class DirectionRow(BaseModel):
    """Over- vs under-prediction of one dim; signed error = prediction - target."""

    dim: str
    over: int
    under: int
    exact: int
    mean_signed_error: float


class ExampleFailure(BaseModel):
    pair_id: str
    source_type: str
    text: str
    target: dict[str, int]
    prediction: dict[str, int]
    valid: bool
    row_mae: float


class NextSteps(BaseModel):
    model_config = ConfigDict(extra="forbid")

    focus_dims: list[str] = Field(default_factory=list)
    rows_to_add: int = 0
    replay_rows: int = 0
    hparam_patch: dict[str, Any] = Field(default_factory=dict)
    hparam_reasons: list[str] = Field(default_factory=list)


class Playbook(BaseModel):
    cycle_id: str
    model_id: str
    rows: int
    vector_mae: float
    failure_threshold: float
    hard_dims_source: str
    worst_dims: list[DimErrorRow]
    by_source_type: list[ClusterRow]
    by_part: list[ClusterRow]
    by_direction: list[DirectionRow]
    examples: list[ExampleFailure]
    next_steps: NextSteps
    markdown: str = ""


def _signed_errors(row: EvalRow) -> list[int]:
    return [p - t for p, t in zip(row.prediction.values(), row.target.values(), strict=True)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _per_dim_mae(rows: Sequence[EvalRow]) -> dict[str, float]:
    errors = [_signed_errors(r) for r in rows]
    return {d: _mean([abs(e[i]) for e in errors]) for i, d in enumerate(DIMS)}


def _worst(per_dim: dict[str, float]) -> list[str]:
    """Dims worst first; ties keep the canonical DIMS order so the result is stable."""
    return sorted(per_dim, key=lambda d: (-per_dim[d], DIMS.index(d)))


def _cluster(key: str, rows: Sequence[EvalRow], threshold: float) -> ClusterRow:
    per_dim = _per_dim_mae(rows)
    worst = _worst(per_dim)[0]
    return ClusterRow(
        key=key,
        rows=len(rows),
        failing=sum(r.row_mae >= threshold for r in rows),
        invalid=sum(not r.valid for r in rows),
        mean_row_mae=_mean([r.row_mae for r in rows]),
        worst_dim=worst,
        worst_dim_mae=per_dim[worst],
    )


def _part_sort_key(cluster: ClusterRow) -> tuple[float, int, str]:
    slot, _, part = cluster.key.partition(":")
    return (-cluster.mean_row_mae, SLOTS.index(slot) if slot in SLOTS else len(SLOTS), part)


def build_playbook(
    cycle_id: str,
    rows: list[EvalRow],
    hard_dims: HardDimReport,
    next_steps: dict[str, Any],
    *,
    failure_threshold: float = DEFAULT_FAILURE_THRESHOLD,
    n_examples: int = 8,
    min_part_rows: int = 2,
    max_parts: int = 10,
) -> Playbook:
    """Summarise one evaluation's failures.

    next_steps: ``focus_dims``, ``rows_to_add``, ``replay_rows``, ``hparam_patch``, ``hparam_reasons``.
    Catalog parts seen in fewer than ``min_part_rows`` rows are left out (one row is an anecdote).
    Examples: the worst rows with any error, 5..10 of them (fewer only when fewer rows fail).
    """
    steps = NextSteps.model_validate(next_steps)
    focus = set(hard_dims.focus)
    per_dim = _per_dim_mae(rows)
    worst_dims = [
        DimErrorRow(dim=d, mae=per_dim[d], rank=rank, focus=d in focus)
        for rank, d in enumerate(_worst(per_dim), start=1)
    ]

    by_source = [
        _cluster(source_type, members, failure_threshold)
        for source_type in sorted({r.source_type for r in rows})
        if (members := [r for r in rows if r.source_type == source_type])
    ]

    part_rows: dict[str, list[EvalRow]] = {}
    for row in rows:
        for slot, part in (row.parts or {}).items():
            part_rows.setdefault(f"{slot}:{part}", []).append(row)
    by_part = sorted(
        (
            _cluster(key, members, failure_threshold)
            for key, members in part_rows.items()
            if len(members) >= min_part_rows
        ),
        key=_part_sort_key,
    )[:max_parts]

    signed = [_signed_errors(r) for r in rows]
    by_direction = [
        DirectionRow(
            dim=d,
            over=sum(e[i] > 0 for e in signed),
            under=sum(e[i] < 0 for e in signed),
            exact=sum(e[i] == 0 for e in signed),
            mean_signed_error=_mean([e[i] for e in signed]),
        )
        for i, d in enumerate(DIMS)
    ]

    n_examples = max(MIN_EXAMPLES, min(MAX_EXAMPLES, n_examples))
    focus_idx = [DIMS.index(d) for d in hard_dims.focus if d in DIMS]
    failing = [(r, e) for r, e in zip(rows, signed, strict=True) if any(e)]
    # Worst first; among equals, the rows that miss the focus dims most, then by id for stability.
    failing.sort(key=lambda re: (-re[0].row_mae, -sum(abs(re[1][i]) for i in focus_idx), re[0].pair_id))
    examples = [
        ExampleFailure(
            pair_id=r.pair_id,
            source_type=r.source_type,
            text=r.text,
            target=r.target.as_dict(),
            prediction=r.prediction.as_dict(),
            valid=r.valid,
            row_mae=r.row_mae,
        )
        for r, _ in failing[:n_examples]
    ]

    playbook = Playbook(
        cycle_id=cycle_id,
        model_id=hard_dims.eval_model_id,
        rows=len(rows),
        vector_mae=_mean([abs(x) for e in signed for x in e]),
        failure_threshold=failure_threshold,
        hard_dims_source=hard_dims.source,
        worst_dims=worst_dims,
        by_source_type=by_source,
        by_part=by_part,
        by_direction=by_direction,
        examples=examples,
        next_steps=steps,
    )
    playbook.markdown = render_markdown(playbook)
    return playbook


# ------------------------------------------------------------------------------------------- markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _clusters(title: str, key_name: str, clusters: Sequence[ClusterRow], threshold: float) -> list[str]:
    lines = [f"## {title}", ""]
    if not clusters:
        return [*lines, "_none_", ""]
    lines += _table(
        [key_name, "rows", f"failing (row MAE >= {threshold:g})", "invalid", "mean row MAE", "worst dim"],
        [
            [
                c.key,
                c.rows,
                c.failing,
                c.invalid,
                f"{c.mean_row_mae:.3f}",
                f"{c.worst_dim} ({c.worst_dim_mae:.3f})",
            ]
            for c in clusters
        ],
    )
    return [*lines, ""]


def render_markdown(p: Playbook) -> str:
    focus = ", ".join(d.dim for d in p.worst_dims if d.focus) or "none"
    lines = [
        f"# Failure playbook: cycle `{p.cycle_id}`",
        "",
        f"Model `{p.model_id or 'unknown'}`: {p.rows} rows, vector MAE {p.vector_mae:.3f}. "
        f"Hard dims from `{p.hard_dims_source}`; focus: {focus}.",
        "",
        "## Worst dims",
        "",
        *_table(
            ["rank", "dim", "MAE", "focus"],
            [[d.rank, d.dim, f"{d.mae:.3f}", "yes" if d.focus else ""] for d in p.worst_dims],
        ),
        "",
        *_clusters("Failures by source type", "source_type", p.by_source_type, p.failure_threshold),
        *_clusters("Failures by catalog part (rule prompts)", "part", p.by_part, p.failure_threshold),
        "## Direction of errors (prediction - target)",
        "",
        *_table(
            ["dim", "over", "under", "exact", "mean signed error"],
            [[d.dim, d.over, d.under, d.exact, f"{d.mean_signed_error:+.3f}"] for d in p.by_direction],
        ),
        "",
        "## Example failures",
        "",
    ]
    if not p.examples:
        lines += ["_none_", ""]
    for n, ex in enumerate(p.examples, start=1):
        invalid = " (invalid output, scored as neutral)" if not ex.valid else ""
        lines += [f"### {n}. `{ex.pair_id}` ({ex.source_type}), row MAE {ex.row_mae:.3f}{invalid}", ""]
        lines += [f"> {line}" for line in ex.text.splitlines() or [""]]
        lines += [
            "",
            *_table(["", *DIMS], [["target", *ex.target.values()], ["prediction", *ex.prediction.values()]]),
        ]
        lines.append("")
    s = p.next_steps
    lines += [
        "## What the loop does next",
        "",
        f"- Focus dims: {', '.join(s.focus_dims) or 'none'}",
        f"- Rows to add: {s.rows_to_add} generated + {s.replay_rows} replay",
    ]
    if s.hparam_patch:
        patch = ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in sorted(s.hparam_patch.items()))
        lines.append(f"- Hyper-parameter patch: {patch}")
    else:
        lines.append("- Hyper-parameter patch: none")
    lines += [f"  - {reason}" for reason in s.hparam_reasons]
    return "\n".join(lines) + "\n"


def playbook_files(playbook: Playbook, md_name: str) -> dict[str, str]:
    """The playbook's files: the markdown as ``md_name``, the structured fields beside it as ``.json``."""
    stem = md_name.removesuffix(".md")
    return {md_name: playbook.markdown, f"{stem}.json": playbook.model_dump_json(indent=2, exclude={"markdown"}) + "\n"}
