"""The workflow log's plots: matplotlib's Agg canvas (no pyplot state), PNG bytes."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.report.model import Report

# --- plots ------------------------------------------------------------------------------------------


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(width: float = 6.4, height: float = 3.0) -> Any:
    # The object-oriented API on an Agg canvas: no pyplot, so no global backend or figure state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    # No "Software"/timestamp chunks, so the same report gives the same bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _x_labels(ax: Any, labels: Sequence[str]) -> None:
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")


def plot_holdout(report: Report) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    labels = [c.cycle_id for c in report.cycles]
    x = range(len(labels))
    before = [_nan(c.delta.holdout_before if c.delta else None) for c in report.cycles]
    candidate = [_nan(c.delta.holdout_candidate if c.delta else None) for c in report.cycles]
    after = [_nan(c.delta.holdout_after if c.delta else None) for c in report.cycles]
    ax.plot(x, before, "o--", color="#8c959f", label="reference before (champion or baseline)")
    ax.plot(x, candidate, "s", color="#0969da", label="candidate")
    ax.step(x, after, where="mid", color="#1a7f37", label="champion after")
    _x_labels(ax, labels)
    ax.set_ylabel("holdout vector MAE")
    ax.set_title("Champion vs candidate holdout MAE", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_field(report: Report) -> bytes:
    """Field-set MAE by cycle: the reference before, the candidate, the champion after (gaps before the
    first reviews)."""
    fig = _figure()
    ax = fig.add_subplot()
    labels = [c.cycle_id for c in report.cycles]
    x = range(len(labels))
    deltas = [c.delta if c.delta and c.delta.field_rows else None for c in report.cycles]
    ax.plot(x, [_nan(d.field_before if d else None) for d in deltas], "o--", color="#8c959f", label="before")
    ax.plot(x, [_nan(d.field_candidate if d else None) for d in deltas], "s", color="#0969da", label="candidate")
    ax.step(x, [_nan(d.field_after if d else None) for d in deltas], where="mid", color="#1a7f37", label="after")
    _x_labels(ax, labels)
    ax.set_ylabel("field-set vector MAE")
    ax.set_title("Field set (reviewed requests) MAE by cycle", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def plot_per_dim(report: Report) -> bytes:
    import numpy as np

    labels = [c.cycle_id for c in report.cycles]
    values = np.array(
        [[_nan((c.delta.candidate_per_dim_mae if c.delta else {}).get(dim)) for c in report.cycles] for dim in DIMS],
        dtype=float,
    ).reshape(len(DIMS), len(labels))
    fig = _figure(max(4.0, 1.2 + 0.45 * len(labels)), 3.2)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis_r")
    ax.set_yticks(range(len(DIMS)))
    ax.set_yticklabels(DIMS)
    _x_labels(ax, labels)
    if len(labels) <= 12:
        low, high = image.get_clim()
        for (row, col), value in np.ndenumerate(values):
            if not math.isnan(value):
                # viridis_r is light at low values: dark text there, white on the dark end.
                dark_cell = high > low and (value - low) / (high - low) > 0.5
                color = "white" if dark_cell else "black"
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(image, ax=ax, label="holdout MAE")
    ax.set_title("Candidate holdout MAE per dim", fontsize=10)
    return _png(fig)


def plot_cost_wall(report: Report) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    labels = [c.cycle_id for c in report.cycles]
    x = range(len(labels))
    costs = [c.cost_usd or 0.0 for c in report.cycles]
    ax.bar(x, costs, color="#bf8700", alpha=0.7, label="cost USD")
    # Local runs cost nothing; an axis from 0 keeps that readable instead of centring on zero.
    ax.set_ylim(0, max(costs) * 1.15 if max(costs, default=0) > 0 else 1.0)
    ax.set_ylabel("cost (USD)")
    _x_labels(ax, labels)
    wall = ax.twinx()
    wall.plot(x, [_nan(c.wall_s) for c in report.cycles], "o-", color="#0969da", label="wall s")
    wall.plot(x, [_nan(c.training_s) for c in report.cycles], "^:", color="#8250df", label="training s")
    wall.set_ylabel("seconds")
    handles = ax.get_legend_handles_labels()[0] + wall.get_legend_handles_labels()[0]
    wall.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="upper left")
    ax.set_title("Cost and wall time by cycle", fontsize=10)
    return _png(fig)


def render_plots(report: Report) -> dict[str, bytes]:
    """Every plot of ``PLOTS`` as PNG bytes; empty when there is no cycle to plot."""
    if not report.cycles:
        return {}
    return {
        "holdout_mae": plot_holdout(report),
        "field_mae": plot_field(report),
        "per_dim_mae": plot_per_dim(report),
        "cost_wall": plot_cost_wall(report),
    }
