"""Promotion gate (docs/design.md § Promotion gate): promote the candidate only if it is measurably
better on the holdout.

Every summary passed here is on the frozen holdout set. The reference is the champion, or the best
baseline (lowest holdout vector_mae) when there is no champion yet. The candidate is promoted iff

* it was scored on the same holdout set as the reference (same dataset name and row count),
* its vector_mae is below the reference's by at least ``min_improvement``,
* no dim's MAE is worse than the reference's by more than ``max_dim_regression``,
* its json_valid_rate is at least ``min_json_valid_rate``,
* its MAE on the hand-written human set is not worse than the reference's by more than
  ``max_human_regression`` (the teacher's holdout alone can reward learning the teacher's words).
  The guard needs both human summaries; when a run recorded no human predictions (or the reference
  has no human summary), the reasons say so and the guard does not block.

Once the field set (reviewed requests people sent the served champion, never trained on) holds at
least ``field_min_rows`` rows, it decides instead: the candidate must beat the reference's field-set
vector_mae by ``min_improvement``, and the teacher's holdout becomes a guard (not worse than the
reference by more than ``max_holdout_regression``); the per-dim, json and human checks still apply.
Below that size the rules above hold, and a reason line says how far the field set is.

Each check adds one reason line, pass or fail, with the numbers. A forced promotion promotes
whatever the checks say and records its reason first, followed by what the checks said.
"""

from __future__ import annotations

from collections.abc import Mapping

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import EvalSummary, GateDecision, GateThresholds

# Float slack for threshold comparisons: 1.000 - 0.995 is 0.00499999... in binary floating point.
_EPS = 1e-9


def _reference(
    champion_id: str | None, champion: EvalSummary | None, baselines: Mapping[str, EvalSummary]
) -> tuple[str, str, EvalSummary]:
    if champion is not None:
        return "champion", champion_id or champion.model_id, champion
    if not baselines:
        raise ValueError("the promotion gate needs a reference: a champion or at least one baseline")
    name = min(baselines, key=lambda n: (baselines[n].vector_mae, n))
    return "baseline", name, baselines[name]


def _checks(
    candidate: EvalSummary, reference: EvalSummary, ref_label: str, th: GateThresholds
) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []

    same_set = candidate.dataset == reference.dataset and candidate.rows == reference.rows
    out.append(
        (
            same_set,
            f"same holdout set: candidate {candidate.dataset!r} ({candidate.rows} rows) vs "
            f"{ref_label} {reference.dataset!r} ({reference.rows} rows)",
        )
    )

    gain = reference.vector_mae - candidate.vector_mae
    improved = gain > 0 and gain >= th.min_improvement - _EPS
    out.append(
        (
            improved,
            f"holdout vector_mae {candidate.vector_mae:.4f} vs {ref_label} {reference.vector_mae:.4f}: "
            f"improvement {gain:+.4f} (needs >= {th.min_improvement:.4f})",
        )
    )

    deltas = {d: candidate.per_dim_mae[d] - reference.per_dim_mae[d] for d in DIMS}
    regressed = {d: v for d, v in deltas.items() if v > th.max_dim_regression + _EPS}
    worst = max(DIMS, key=lambda d: deltas[d])
    if regressed:
        listed = ", ".join(f"{d} {v:+.3f}" for d, v in sorted(regressed.items(), key=lambda kv: -kv[1]))
        text = f"per-dim regression over {th.max_dim_regression:.3f} on {listed}"
    else:
        text = f"no dim worse by more than {th.max_dim_regression:.3f} (worst: {worst} {deltas[worst]:+.3f})"
    out.append((not regressed, text))

    valid_ok = candidate.json_valid_rate >= th.min_json_valid_rate
    out.append((valid_ok, f"json_valid_rate {candidate.json_valid_rate:.3f} (needs >= {th.min_json_valid_rate:.3f})"))
    return out


def _field_checks(
    candidate: EvalSummary,
    reference: EvalSummary,
    holdout: EvalSummary,
    ref_holdout: EvalSummary,
    ref_label: str,
    th: GateThresholds,
) -> list[tuple[bool, str]]:
    same_set = candidate.rows == reference.rows
    gain = reference.vector_mae - candidate.vector_mae
    improved = gain > 0 and gain >= th.min_improvement - _EPS
    worse = holdout.vector_mae - ref_holdout.vector_mae
    same_holdout = holdout.dataset == ref_holdout.dataset and holdout.rows == ref_holdout.rows
    return [
        (
            same_set,
            f"same field set: candidate {candidate.rows} rows vs {ref_label} {reference.rows} rows "
            f"(the field set decides: at least {th.field_min_rows} reviewed requests)",
        ),
        (
            improved,
            f"field-set vector_mae {candidate.vector_mae:.4f} vs {ref_label} {reference.vector_mae:.4f}: "
            f"improvement {gain:+.4f} (needs >= {th.min_improvement:.4f})",
        ),
        (
            same_holdout and worse <= th.max_holdout_regression + _EPS,
            f"holdout guard: vector_mae {holdout.vector_mae:.4f} vs {ref_label} {ref_holdout.vector_mae:.4f}: "
            f"{worse:+.4f} (may be worse by at most {th.max_holdout_regression:.4f}; {holdout.rows} vs "
            f"{ref_holdout.rows} rows)",
        ),
    ]


def _human_check(
    candidate: EvalSummary | None, reference: EvalSummary | None, ref_label: str, th: GateThresholds
) -> tuple[bool, str]:
    if candidate is None:
        return True, "human set: the candidate run recorded no human-set predictions; guard not applied"
    if reference is None:
        return True, f"human set: candidate MAE {candidate.vector_mae:.4f}; the {ref_label} has no human-set score"
    worse = candidate.vector_mae - reference.vector_mae
    ok = worse <= th.max_human_regression + _EPS
    return ok, (
        f"human set MAE {candidate.vector_mae:.4f} vs {ref_label} {reference.vector_mae:.4f}: "
        f"{worse:+.4f} (may be worse by at most {th.max_human_regression:.4f})"
    )


def decide_promotion(
    candidate_run_id: str | None,
    candidate: EvalSummary | None,
    champion_id: str | None,
    champion: EvalSummary | None,
    baselines: Mapping[str, EvalSummary],
    thresholds: GateThresholds | None = None,
    force_reason: str | None = None,
    candidate_model_ref: str | None = None,
    candidate_human: EvalSummary | None = None,
    reference_human: Mapping[str, EvalSummary] | None = None,
    candidate_field: EvalSummary | None = None,
    reference_field: Mapping[str, EvalSummary] | None = None,
) -> GateDecision:
    """Promote or keep; the reasons say which checks passed and failed, with numbers.

    ``reference_human`` / ``reference_field``: human-set and field-set summaries by reference id (the
    champion's id, baseline names)."""
    th = thresholds if thresholds is not None else GateThresholds()
    ref_kind, ref_id, reference = _reference(champion_id, champion, baselines)
    ref_label = f"{ref_kind} {ref_id!r}"
    force_reason = force_reason.strip() if force_reason else None

    if candidate is None:
        reasons = [f"keep: no candidate run to judge; the {ref_label} stays"]
        if force_reason:
            reasons.append(f"forced promotion requested ({force_reason}) but there is no candidate to promote")
        return GateDecision(
            promote=False,
            candidate_run_id=candidate_run_id,
            candidate_model_ref=candidate_model_ref,
            reference_kind=ref_kind,  # type: ignore[arg-type]
            reference_id=ref_id,
            candidate_holdout_mae=None,
            reference_holdout_mae=reference.vector_mae,
            thresholds=th,
            reasons=reasons,
        )

    ref_human = (reference_human or {}).get(ref_id)
    ref_field = (reference_field or {}).get(ref_id)
    field_rows = candidate_field.rows if candidate_field is not None else 0
    field_decides = candidate_field is not None and ref_field is not None and field_rows >= th.field_min_rows
    if field_decides:
        assert candidate_field is not None and ref_field is not None
        holdout_checks = _checks(candidate, reference, ref_label, th)
        checks = [
            *_field_checks(candidate_field, ref_field, candidate, reference, ref_label, th),
            *holdout_checks[2:],  # per-dim regression and json validity, on the holdout
        ]
    else:
        checks = _checks(candidate, reference, ref_label, th)
    checks.append(_human_check(candidate_human, ref_human, ref_label, th))
    passed = all(ok for ok, _ in checks)
    lines = [f"{'pass' if ok else 'FAIL'}: {text}" for ok, text in checks]
    if not field_decides and field_rows:
        lines.append(
            f"note: the field set has {field_rows} reviewed requests; it decides from {th.field_min_rows} "
            "(KOTONE_FIELD_MIN_ROWS), the holdout decides until then"
            + ("" if ref_field is not None else f"; the {ref_label} has no field-set score")
        )
    verdict = f"promote over the {ref_label}" if passed else f"keep the {ref_label}"
    if force_reason:
        reasons = [
            f"forced: {force_reason}",
            f"the checks alone would {'promote' if passed else 'keep the ' + ref_label}",
            *lines,
        ]
        promote = True
    else:
        failed = sum(1 for ok, _ in checks if not ok)
        reasons = [
            f"{verdict}: all {len(checks)} checks pass" if passed else f"{verdict}: {failed} check(s) fail",
            *lines,
        ]
        promote = passed
    return GateDecision(
        promote=promote,
        forced=bool(force_reason),
        candidate_run_id=candidate_run_id,
        candidate_model_ref=candidate_model_ref,
        reference_kind=ref_kind,  # type: ignore[arg-type]
        reference_id=ref_id,
        candidate_holdout_mae=candidate.vector_mae,
        reference_holdout_mae=reference.vector_mae,
        per_dim_delta={d: candidate.per_dim_mae[d] - reference.per_dim_mae[d] for d in DIMS},
        json_valid_rate=candidate.json_valid_rate,
        candidate_human_mae=candidate_human.vector_mae if candidate_human else None,
        reference_human_mae=ref_human.vector_mae if ref_human else None,
        primary="field" if field_decides else "holdout",
        field_rows=field_rows,
        candidate_field_mae=candidate_field.vector_mae if candidate_field else None,
        reference_field_mae=ref_field.vector_mae if ref_field else None,
        thresholds=th,
        reasons=reasons,
    )


def decision_markdown(decision: GateDecision) -> str:
    """The decision for the Dagster UI: verdict, the MAE comparison, per-dim deltas and every reason."""
    verdict = "PROMOTE" if decision.promote else "KEEP"
    if decision.forced:
        verdict += " (forced)"
    cand = "—" if decision.candidate_holdout_mae is None else f"{decision.candidate_holdout_mae:.4f}"
    lines = [
        f"**Decision: {verdict}**",
        "",
        "| | model | holdout vector_mae |",
        "|---|---|---:|",
        f"| candidate | {decision.candidate_run_id or '—'} | {cand} |",
        f"| reference ({decision.reference_kind}) | {decision.reference_id} | {decision.reference_holdout_mae:.4f} |",
    ]
    if decision.candidate_human_mae is not None:
        ref_human = "—" if decision.reference_human_mae is None else f"{decision.reference_human_mae:.4f}"
        lines += ["", f"Human set MAE: candidate {decision.candidate_human_mae:.4f}, reference {ref_human}"]
    if decision.candidate_field_mae is not None:
        ref_field = "—" if decision.reference_field_mae is None else f"{decision.reference_field_mae:.4f}"
        decides = "decides" if decision.primary == "field" else f"decides from {decision.thresholds.field_min_rows}"
        lines += [
            "",
            f"Field set MAE ({decision.field_rows} reviewed requests; {decides}): candidate "
            f"{decision.candidate_field_mae:.4f}, reference {ref_field}",
        ]
    if decision.per_dim_delta:
        lines += ["", "| dim | MAE delta (candidate − reference) |", "|---|---:|"]
        lines += [f"| {d} | {decision.per_dim_delta[d]:+.3f} |" for d in DIMS if d in decision.per_dim_delta]
    lines += ["", "Reasons:", *[f"- {r}" for r in decision.reasons]]
    return "\n".join(lines) + "\n"
