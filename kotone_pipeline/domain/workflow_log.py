"""The workflow log: what each cycle set out to do, what ran, what it produced and how the metrics moved.

Pure: the models below are filled by ``kotone_pipeline.orchestration.workflow_log`` from the Dagster
instance and the cycle documents; this module only renders them (markdown, self-contained HTML, JSON)
and draws the plots (matplotlib's Agg canvas, no pyplot state, PNG bytes).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from kotone_pipeline.domain.dims import DIMS

EventKind = Literal[
    "run_start",
    "run_end",
    "materialization",
    "submission",
    "adoption",
    "retry",
    "job_end",
    "sensor_report",
    "sensor_tick",
    "validation",
    "check",
    "decision",
    "rollback",  # a person made an earlier champion current again (`kotone champion rollback`)
]
Decision = Literal["promote", "keep", "pending"]
PLOTS: tuple[tuple[str, str], ...] = (
    ("holdout_mae", "Champion vs candidate holdout MAE by cycle"),
    ("field_mae", "Field-set MAE (reviewed requests people sent) by cycle"),
    ("per_dim_mae", "Per-dim holdout MAE of each cycle's candidate"),
    ("cost_wall", "Cost and wall time by cycle"),
)


class Link(BaseModel):
    """A piece of evidence: a URL when there is one, else what to look at (an offline directory)."""

    label: str
    url: str | None = None
    detail: str | None = None


class DagsterRun(BaseModel):
    run_id: str
    job_name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    url: str
    retry_of: str | None = None  # the validation key this run retried


class TrainingRun(BaseModel):
    run_id: str
    job_id: str
    stage: str
    url: str | None = None
    adopted: bool = False
    hparams: dict[str, Any] = Field(default_factory=dict)
    running_s: float | None = None
    cost_usd: float | None = None
    model_uri: str | None = None
    validation_mae: float | None = None
    holdout_mae: float | None = None
    human_mae: float | None = None


class MetricDelta(BaseModel):
    """Numbers copied from the promotion_decision document (and the candidate's validation_snapshot row)."""

    decision: Decision
    forced: bool = False
    reference_kind: str | None = None
    reference_id: str | None = None
    holdout_before: float | None = None
    holdout_candidate: float | None = None
    holdout_after: float | None = None
    human_before: float | None = None
    human_candidate: float | None = None
    human_after: float | None = None
    primary: str = "holdout"  # the set whose improvement decided ("field" once the field set is large enough)
    field_rows: int = 0
    field_before: float | None = None
    field_candidate: float | None = None
    field_after: float | None = None
    per_dim_delta: dict[str, float] = Field(default_factory=dict)
    candidate_per_dim_mae: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class PeopleCounts(BaseModel):
    """What the cycle took from the request log and from people's reviews."""

    logged: int = 0  # requests served since the previous cycle
    waiting: int = 0  # logged requests nobody had reviewed when the cycle cut the log
    reviewed: int = 0  # labelled reviews since the previous cycle
    to_training: int = 0
    to_field: int = 0
    field_total: int = 0  # the field set this cycle's models were scored on


class CycleEntry(BaseModel):
    cycle_id: str
    stage: str  # the last step whose document exists, or "created"
    # goal
    focus_dims: list[str] = Field(default_factory=list)
    focus_why: str = ""
    hard_dim_source: str | None = None
    hard_dim_k: int | None = None
    # inputs
    champion_before: str | None = None
    dataset_version: str | None = None
    dataset_uri: str | None = None
    dataset_store: str | None = None
    rows_added: int | None = None
    trainer: str | None = None
    backend: str | None = None
    hparams_patch: dict[str, Any] = Field(default_factory=dict)
    hparams_reasons: list[str] = Field(default_factory=list)
    # automated action
    dagster_runs: list[DagsterRun] = Field(default_factory=list)
    training_runs: list[TrainingRun] = Field(default_factory=list)
    # outputs
    artifacts: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)  # model id -> where it is (directory or repo@sha)
    champion_after: str | None = None
    # evidence and numbers
    evidence: list[Link] = Field(default_factory=list)
    delta: MetricDelta | None = None
    cost_usd: float | None = None
    wall_s: float | None = None
    training_s: float | None = None
    repro: list[str] = Field(default_factory=list)
    people: PeopleCounts | None = None  # the flywheel's counts, once the cycle cut the request log


class Event(BaseModel):
    at: datetime  # UTC
    kind: EventKind
    cycle_id: str | None = None
    summary: str
    run_id: str | None = None
    url: str | None = None


class Report(BaseModel):
    generated_at: datetime
    dagster_url: str
    home: str
    champion: str | None = None
    champion_holdout_mae: float | None = None
    champion_human_mae: float | None = None
    cycles: list[CycleEntry] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    repro_all: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# --- cycle ranges -----------------------------------------------------------------------------------


def select_cycle_range(spec: str | None, known: Sequence[str]) -> list[str]:
    """``A..B`` (inclusive, in cycle order), ``A..``, ``..B`` or a single ``A``; ValueError names what is wrong."""
    if spec is None or not spec.strip():
        return list(known)
    spec = spec.strip()
    if ".." in spec:
        first, _, last = spec.partition("..")
        if ".." in last:
            raise ValueError(f"--cycles {spec!r}: use A..B, A.. or ..B")
    else:
        first = last = spec
    first, last = first.strip(), last.strip()
    for name in (first, last):
        if name and name not in known:
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise ValueError(f"--cycles {spec!r}: unknown cycle {name!r} (known: {shown or 'none'})")
    start = known.index(first) if first else 0
    stop = known.index(last) if last else len(known) - 1
    if start > stop:
        raise ValueError(f"--cycles {spec!r}: {first!r} comes after {last!r}")
    return list(known[start : stop + 1])


# --- formatting helpers ----------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def fmt_time(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _arrow(before: float | None, after: float | None) -> str:
    return f"{fmt_num(before)} → {fmt_num(after)}"


# --- document model shared by the markdown and HTML renderers ---------------------------------------

# A cell or paragraph is a list of parts: (text, href or None).
Parts = list[tuple[str, str | None]]


@dataclass
class _Table:
    headers: list[str]
    rows: list[list[Parts]]


@dataclass
class _Section:
    title: str
    level: int = 2
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("para"|"list"|"table"|"code"|"image", data)


def _t(text: str) -> Parts:
    return [(text, None)]


def _join(parts: Iterable[Parts], sep: str = "; ") -> Parts:
    out: Parts = []
    for i, part in enumerate(parts):
        if i:
            out.append((sep, None))
        out.extend(part)
    return out


def _link_parts(link: Link) -> Parts:
    parts: Parts = [(link.label, link.url)]
    if link.detail:
        parts.append((f" ({link.detail})", None))
    return parts


def _goal(c: CycleEntry) -> Parts:
    if not c.focus_dims:
        return _t("-")
    return _t(f"focus {', '.join(c.focus_dims)}: {c.focus_why}")


def _inputs(c: CycleEntry) -> Parts:
    patch = ", ".join(f"{k}={v}" for k, v in sorted(c.hparams_patch.items())) or "none"
    items = [
        f"champion {c.champion_before or '(baselines)'}",
        f"dataset {c.dataset_version or '-'}",
        f"hard dims from {c.hard_dim_source or '-'}",
        f"patch {patch}" + (f" ({' / '.join(c.hparams_reasons)})" if c.hparams_reasons else ""),
    ]
    return _t("; ".join(items))


def _action(c: CycleEntry) -> Parts:
    runs = [[(f"{r.job_name} {r.run_id[:8]} {r.status}", r.url)] for r in c.dagster_runs]
    jobs = [
        [(f"job {t.job_id} {t.stage}" + (" (adopted)" if t.adopted else ""), _http(t.url))] for t in c.training_runs
    ]
    return _join([*runs, *jobs]) or _t("-")


def _outputs(c: CycleEntry) -> Parts:
    items = []
    if c.dataset_version:
        items.append(f"dataset commit {c.dataset_version}")
    items += [
        f"model {model_id}{' (champion)' if model_id == c.champion_after else ''}: {uri}"
        for model_id, uri in c.models.items()
    ]
    if "cycle_dir" in c.artifacts:
        items.append(f"docs {c.artifacts['cycle_dir']}")
    return _t("; ".join(items) or "-")


def _delta_cell(c: CycleEntry) -> Parts:
    d = c.delta
    if d is None:
        return _t("pending")
    text = (
        f"{d.decision}{' (forced)' if d.forced else ''}: holdout {_arrow(d.holdout_before, d.holdout_after)}, "
        f"human {_arrow(d.human_before, d.human_after)}"
    )
    if d.field_rows:
        text += f", field {_arrow(d.field_before, d.field_after)} ({d.field_rows} rows, decides: {d.primary})"
    return _t(text)


def _people_section(report: Report) -> _Section | None:
    cycles = [c for c in report.cycles if c.people is not None]
    if not cycles:
        return None
    section = _Section("People's requests")
    section.blocks.append(
        (
            "para",
            _t(
                "Requests the served champion answered, the reviews people made of them, and the field set "
                "(reviewed requests no model trains on). Once the field set holds enough rows it decides the "
                "promotion and the teacher's holdout becomes a guard."
            ),
        )
    )
    rows = []
    for c in cycles:
        p, d = c.people, c.delta
        assert p is not None
        rows.append(
            [
                _t(c.cycle_id),
                _t(str(p.logged)),
                _t(str(p.waiting)),
                _t(str(p.reviewed)),
                _t(str(p.to_training)),
                _t(str(p.to_field)),
                _t(str(p.field_total)),
                _t(_arrow(d.field_before, d.field_after) if d else "pending"),
                _t(d.primary if d else "-"),
            ]
        )
    headers = ["cycle", "logged", "waiting for review", "reviewed", "to training", "to field set"]
    headers += ["field set rows", "field MAE before → after", "decided by"]
    section.blocks.append(("table", _Table(headers, rows)))
    return section


def _http(url: str | None) -> str | None:
    return url if url and url.startswith(("http://", "https://")) else None


def _sections(report: Report, with_plots: bool) -> list[_Section]:
    head = _Section("Kotone workflow log", level=1)
    champion = (
        f"{report.champion} (holdout MAE {fmt_num(report.champion_holdout_mae)}, "
        f"human-set MAE {fmt_num(report.champion_human_mae)})"
        if report.champion
        else "none yet"
    )
    head.blocks.append(
        (
            "para",
            [
                (
                    f"Generated {fmt_time(report.generated_at)} from the Dagster instance, the champion registry "
                    f"and the cycle records under {report.home}. {len(report.cycles)} cycle(s); "
                    f"champion now: {champion}. Dagster UI: ",
                    None,
                ),
                (report.dagster_url, report.dagster_url),
            ],
        )
    )
    if report.notes:
        head.blocks.append(("list", [_t(n) for n in report.notes]))

    table = _Section("Workflow")
    table.blocks.append(
        (
            "table",
            _Table(
                ["cycle", "goal", "inputs", "automated action", "output artifacts", "evidence", "metric delta"],
                [
                    [
                        _t(c.cycle_id),
                        _goal(c),
                        _inputs(c),
                        _action(c),
                        _outputs(c),
                        _join(_link_parts(e) for e in c.evidence) or _t("-"),
                        _delta_cell(c),
                    ]
                    for c in report.cycles
                ],
            ),
        )
    )

    deltas = _Section("Metric deltas")
    deltas.blocks.append(
        (
            "para",
            _t(
                "Vector MAE (0..10 scale, lower is better). Before = the gate's reference (the champion the cycle "
                "started from, or the constant baseline before the first champion); after = the champion after "
                "the decision. Per-dim delta = candidate - reference holdout MAE."
            ),
        )
    )
    rows = []
    for c in report.cycles:
        d = c.delta
        if d is None:
            rows.append([_t(c.cycle_id), _t("pending"), *(_t("-") for _ in range(5 + len(DIMS)))])
            continue
        rows.append(
            [
                _t(c.cycle_id),
                _t(d.decision + (" (forced)" if d.forced else "")),
                _t(f"{d.reference_kind or '-'}: {d.reference_id or '-'}"),
                _t(_arrow(d.holdout_before, d.holdout_after)),
                _t(fmt_num(d.holdout_candidate)),
                _t(_arrow(d.human_before, d.human_after)),
                _t(fmt_num(d.human_candidate)),
                *(_t(fmt_signed(d.per_dim_delta.get(dim))) for dim in DIMS),
            ]
        )
    deltas.blocks.append(
        (
            "table",
            _Table(
                [
                    "cycle",
                    "decision",
                    "reference",
                    "holdout before → after",
                    "holdout candidate",
                    "human before → after",
                    "human candidate",
                    *(f"Δ {dim}" for dim in DIMS),
                ],
                rows,
            ),
        )
    )

    details = [_cycle_section(c) for c in report.cycles]
    people = _people_section(report)
    if people is not None:
        details.insert(0, people)

    events = _Section("Event log")
    events.blocks.append(("para", _t(f"{len(report.events)} event(s), oldest first, UTC.")))
    events.blocks.append(
        (
            "table",
            _Table(
                ["time (UTC)", "cycle", "event", "what", "link"],
                [
                    [
                        _t(fmt_time(e.at)),
                        _t(e.cycle_id or "-"),
                        _t(e.kind),
                        _t(e.summary),
                        [(e.run_id[:8] if e.run_id else "link", e.url)] if e.url else _t("-"),
                    ]
                    for e in report.events
                ],
            ),
        )
    )

    repro = _Section("Repro commands")
    repro.blocks.append(
        (
            "para",
            _t(
                "Each cycle trains on every earlier cycle's augmented rows and starts from the champion they "
                "left, so re-create them in order in a fresh KOTONE_HOME:"
            ),
        )
    )
    repro.blocks.append(("code", "\n".join(report.repro_all) or "# no cycles"))

    out = [head, table, deltas]
    if with_plots:
        plots = _Section("Plots")
        for name, title in PLOTS:
            plots.blocks.append(("image", (name, title)))
        out.append(plots)
    return [*out, *details, events, repro]


def _cycle_section(c: CycleEntry) -> _Section:
    section = _Section(f"Cycle {c.cycle_id}", level=3)
    rows_added = "-" if c.rows_added is None else c.rows_added
    items: list[Parts] = [
        _t(f"stage: {c.stage}"),
        _t("goal: " + (f"focus {', '.join(c.focus_dims)} — {c.focus_why}" if c.focus_dims else "-")),
        _t(
            f"inputs: champion {c.champion_before or '(baselines)'}; dataset {c.dataset_version or '-'} "
            f"({c.dataset_store or '-'}: {c.dataset_uri or '-'}); rows added {rows_added}; "
            f"trainer {c.trainer or '-'} on {c.backend or '-'}"
        ),
        _t("hyper-parameter patch: " + (", ".join(f"{k}={v}" for k, v in sorted(c.hparams_patch.items())) or "none")),
        *(_t(f"  reason: {r}") for r in c.hparams_reasons),
        *(
            [
                (
                    f"Dagster run {r.run_id} ({r.job_name}, {r.status}, "
                    f"{fmt_time(r.started_at)} → {fmt_time(r.ended_at)})",
                    r.url,
                ),
                *([(f" retry of {r.retry_of}", None)] if r.retry_of else []),
            ]
            for r in c.dagster_runs
        ),
        *(
            _t(
                f"training job {t.job_id} ({t.run_id}): {t.stage}{', adopted' if t.adopted else ''}; "
                f"running {fmt_num(t.running_s, 1)} s, cost ${fmt_num(t.cost_usd, 2)}; validation MAE "
                f"{fmt_num(t.validation_mae)}, holdout {fmt_num(t.holdout_mae)}, human {fmt_num(t.human_mae)}; "
                f"model {t.model_uri or '-'}"
            )
            + ([(" job page", t.url)] if _http(t.url) else [])
            for t in c.training_runs
        ),
        *(_t(f"artifact {name}: {path}") for name, path in sorted(c.artifacts.items())),
        *([("evidence: ", None), *_link_parts(e)] for e in c.evidence),
        _t(
            f"cost ${fmt_num(c.cost_usd, 2)}, wall {fmt_num(c.wall_s, 1)} s, training {fmt_num(c.training_s, 1)} s; "
            f"champion after: {c.champion_after or 'none'}"
        ),
    ]
    if c.delta is not None:
        items += [_t(f"decision reason: {r}") for r in c.delta.reasons]
    section.blocks.append(("list", items))
    if c.repro:
        section.blocks.append(("code", "\n".join(c.repro)))
    return section


# --- markdown ---------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_parts(parts: Parts, in_table: bool = False) -> str:
    out = []
    for text, href in parts:
        shown = _md_escape(text) if in_table else text.replace("\n", " ")
        out.append(f"[{shown}]({href})" if href else shown)
    return "".join(out)


def to_markdown(report: Report, plots: Mapping[str, bytes] | None = None) -> str:
    """The report as markdown; ``plots`` (name -> PNG) are embedded as data URIs. None: no plots section."""
    lines: list[str] = []
    for section in _sections(report, with_plots=plots is not None):
        lines += ["#" * section.level + " " + section.title, ""]
        for kind, data in section.blocks:
            if kind == "para":
                lines += [_md_parts(data), ""]
            elif kind == "list":
                lines += [f"- {_md_parts(item)}" for item in data] + [""]
            elif kind == "code":
                lines += ["```bash", data, "```", ""]
            elif kind == "table":
                lines.append("| " + " | ".join(data.headers) + " |")
                lines.append("|" + "---|" * len(data.headers))
                lines += ["| " + " | ".join(_md_parts(cell, True) for cell in row) + " |" for row in data.rows]
                lines.append("")
            elif kind == "image" and plots is not None:
                name, title = data
                if name in plots:
                    lines += [f"![{title}]({png_data_uri(plots[name])})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:1400px}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;font-size:.85rem}
img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0;display:block}
a{color:#0969da}
""".strip()


def _html_parts(parts: Parts) -> str:
    out = []
    for text, href in parts:
        shown = html.escape(text)
        out.append(f'<a href="{html.escape(href, quote=True)}">{shown}</a>' if href else shown)
    return "".join(out)


def to_html(report: Report, plots: Mapping[str, bytes] | None = None) -> str:
    """One self-contained HTML page: inline CSS, PNGs as data URIs, no script and no external resource."""
    body: list[str] = []
    for section in _sections(report, with_plots=plots is not None):
        body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for kind, data in section.blocks:
            if kind == "para":
                body.append(f"<p>{_html_parts(data)}</p>")
            elif kind == "list":
                body.append("<ul>" + "".join(f"<li>{_html_parts(item)}</li>" for item in data) + "</ul>")
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(data)}</code></pre>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in data.headers)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_html_parts(cell)}</td>" for cell in row) + "</tr>" for row in data.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "image" and plots is not None:
                name, title = data
                if name in plots:
                    body.append(f'<img alt="{html.escape(title, quote=True)}" src="{png_data_uri(plots[name])}">')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Kotone workflow log</title>\n"
        f"<style>\n{_CSS}\n</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


# --- JSON -------------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


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
