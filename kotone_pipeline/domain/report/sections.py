"""The workflow log as sections of paragraphs, lists, tables and code: one document model that the
markdown and the HTML renderers (``render``) both walk, so the two never say different things."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.report.model import (
    PLOTS,
    CycleEntry,
    Link,
    Report,
    fmt_num,
    fmt_signed,
    fmt_time,
    run_status,
)


def _arrow(before: float | None, after: float | None) -> str:
    return f"{fmt_num(before)} → {fmt_num(after)}"


# --- document model shared by the markdown and HTML renderers ---------------------------------------

# A cell or paragraph is a list of parts: (text, href or None).
Parts = list[tuple[str, str | None]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Parts]]


@dataclass
class Section:
    title: str
    level: int = 2
    # ("para"|"list"|"table"|"code"|"image"|"details", data); details: (summary, list of Parts), folded.
    blocks: list[tuple[str, Any]] = field(default_factory=list)


def _t(text: str) -> Parts:
    return [(text, None)]


def _join(parts: Iterable[Parts], sep: str = "; ") -> Parts:
    out: Parts = []
    for i, part in enumerate(parts):
        if i:
            out.append((sep, None))
        out.extend(part)
    return out


def _detail_parts(link: Link) -> Parts:
    return [(link.detail or "", None), *([(" (link)", link.url)] if link.url else [])]


def _short_path(path: str, home: str) -> str:
    """A path under the home as relative to it (the report's head names the home once); others as given."""
    prefix = home.rstrip("/") + "/"
    return path.removeprefix(prefix) if home and path.startswith(prefix) else path


def _evidence_cell(c: CycleEntry) -> Parts:
    """Each piece of evidence by its short name, linked where it has a URL; the paths and upload commands of
    offline runs are in the cycle's section below, folded."""
    return _join(([(e.label, e.url)] for e in c.evidence), " · ") or _t("-")


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
    runs = [[(f"{r.job_name} {r.run_id[:8]} {run_status(r)}", r.url)] for r in c.dagster_runs]
    jobs = [
        [(f"job {t.job_id} {t.stage}" + (" (adopted)" if t.adopted else ""), _http(t.url))] for t in c.training_runs
    ]
    return _join([*runs, *jobs]) or _t("-")


def _outputs(c: CycleEntry, home: str) -> Parts:
    items = []
    if c.dataset_version:
        items.append(f"dataset commit {c.dataset_version}")
    items += [
        f"model {model_id}{' (champion)' if model_id == c.champion_after else ''}: {_short_path(uri, home)}"
        for model_id, uri in c.models.items()
    ]
    docs = c.artifacts.get("cycle_dir")
    if docs and _http(docs):  # the state repo (KOTONE_STATE_STORE=hf): a link, not a wall of URL
        return _join([*(_t(item) for item in items), [("docs in the state repo", docs)]])
    if docs:
        items.append(f"docs {_short_path(docs, home)}")
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


def _people_section(report: Report) -> Section | None:
    cycles = [c for c in report.cycles if c.people is not None]
    if not cycles:
        return None
    section = Section("People's requests")
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
    section.blocks.append(("table", Table(headers, rows)))
    return section


def _http(url: str | None) -> str | None:
    return url if url and url.startswith(("http://", "https://")) else None


def sections(report: Report, with_plots: bool) -> list[Section]:
    head = Section("Kotone workflow log", level=1)
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

    table = Section("Workflow")
    table.blocks.append(
        (
            "table",
            Table(
                ["cycle", "goal", "inputs", "automated action", "output artifacts", "evidence", "metric delta"],
                [
                    [
                        _t(c.cycle_id),
                        _goal(c),
                        _inputs(c),
                        _action(c),
                        _outputs(c, report.home),
                        _evidence_cell(c),
                        _delta_cell(c),
                    ]
                    for c in report.cycles
                ],
            ),
        )
    )

    deltas = Section("Metric deltas")
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
            Table(
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

    events = Section("Event log")
    events.blocks.append(("para", _t(f"{len(report.events)} event(s), oldest first, UTC.")))
    events.blocks.append(
        (
            "table",
            Table(
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

    repro = Section("Repro commands")
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
        plots = Section("Plots")
        for name, title in PLOTS:
            plots.blocks.append(("image", (name, title)))
        out.append(plots)
    return [*out, *details, events, repro]


def _cycle_section(c: CycleEntry) -> Section:
    section = Section(f"Cycle {c.cycle_id}", level=3)
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
                    f"Dagster run {r.run_id} ({r.job_name}, {run_status(r)}, "
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
        *([("evidence: ", None), (e.label, e.url)] for e in c.evidence),
        _t(
            f"cost ${fmt_num(c.cost_usd, 2)}, wall {fmt_num(c.wall_s, 1)} s, training {fmt_num(c.training_s, 1)} s; "
            f"champion after: {c.champion_after or 'none'}"
        ),
    ]
    if c.delta is not None:
        items += [_t(f"decision reason: {r}") for r in c.delta.reasons]
    section.blocks.append(("list", items))
    folded = [_t(f"artifact {name}: {path}") for name, path in sorted(c.artifacts.items())]
    folded += [[(f"{e.label}: ", None), *_detail_parts(e)] for e in c.evidence if e.detail]
    if folded:
        section.blocks.append(("details", (f"Paths and upload commands ({len(folded)})", folded)))
    if c.repro:
        section.blocks.append(("code", "\n".join(c.repro)))
    return section
