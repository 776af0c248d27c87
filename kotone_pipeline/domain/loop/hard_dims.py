"""Hard dims (docs/design.md § Hard dims): which dims the champion gets most wrong on the probe set.

Focus = the k dims with the highest MAE on the probe rows (ties broken by DIMS order), unless the
config forces a list. The whole by-dim table and the worst probe rows are kept for the UI and for
augmentation. Only probe rows may be passed here: the holdout set is never mined.
"""

from __future__ import annotations

from collections.abc import Sequence

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalRow, FailureExample, HardDimReport, HardDimSource


def validate_dims(names: Sequence[str], what: str = "forced dims") -> list[str]:
    """Check dim names, keep their order, drop repeats; unknown names are an error naming them."""
    unknown = [n for n in names if n not in DIMS]
    if unknown:
        raise ValueError(f"{what}: unknown dim(s) {', '.join(map(repr, unknown))}; expected some of {', '.join(DIMS)}")
    return list(dict.fromkeys(names))


def per_dim_mae(rows: Sequence[EvalRow]) -> dict[str, float]:
    if not rows:
        return {}
    return {d: sum(row.abs_error[d] for row in rows) / len(rows) for d in DIMS}


def top_failures(rows: Sequence[EvalRow], top_n: int = 20) -> list[FailureExample]:
    """The ``top_n`` rows with the largest row MAE, worst first; ties keep the input order (stable).
    Rows with no error at all are not failures."""
    ranked = sorted((row for row in rows if row.row_mae > 0), key=lambda row: -row.row_mae)
    return [
        FailureExample(
            pair_id=row.pair_id,
            source_type=row.source_type,
            text=row.text,
            target=row.target,
            prediction=row.prediction,
            row_mae=row.row_mae,
        )
        for row in ranked[:top_n]
    ]


def find_hard_dims(
    rows: Sequence[EvalRow],
    k: int = 2,
    forced: Sequence[str] | None = None,
    top_n: int = 20,
    model_id: str = "",
    source: HardDimSource = "eval_rows",
) -> HardDimReport:
    """Rank dims by probe MAE and pick the focus.

    ``forced`` (a non-empty list) overrides the ranking and sets the source to ``"forced"``;
    ``source`` otherwise says where the rows came from (``"eval_rows"`` or ``"wandb_failures"``)."""
    if not 0 <= k <= len(DIMS):
        raise ValueError(f"k must be between 0 and {len(DIMS)}, got {k}")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    if source == "forced" and not forced:
        raise ValueError("source 'forced' needs a non-empty list of forced dims")
    by_dim = per_dim_mae(rows)
    if forced:
        focus = validate_dims(forced)
        source = "forced"
        k = len(focus)
    else:
        if not rows:
            raise ValueError("no eval rows to rank dims on (and no forced dims)")
        order = {d: i for i, d in enumerate(DIMS)}
        focus = sorted(DIMS, key=lambda d: (-by_dim[d], order[d]))[:k]
    return HardDimReport(
        focus=focus,
        k=k,
        by_dim=by_dim,
        source=source,
        top_failures=top_failures(rows, top_n),
        eval_model_id=model_id,
    )
