"""Next-cycle hyper-parameters from the current model's eval, recorded with reasons
(docs/design.md § Next hyper-parameters).

LoRA SFT trainer (``next_lora_hparams``):
  R1 json_valid_rate < 0.98           -> learning rate x 0.6 (floor 1e-6), epochs + 1 (cap 4)
  R2 candidate mse_norm >= baseline's -> LoRA r 16 -> 32 (never shrinks), alpha = 2r
  R3 hard dims present                -> epochs >= 2
  R4 p95 latency > 1200 ms            -> R2 does not grow r (a bigger adapter is slower to serve)

Local trainer (TF-IDF + Ridge, ``next_local_hparams``), its own two rules:
  L1 candidate mse_norm >= baseline's -> the model underfits: Ridge alpha x 0.5 (floor 1e-3) and
                                          character n-grams on
  L2 hard dims present                -> word n-grams up to at least 2, so the writer's multi-word
                                          phrases ("densely woven", "fully digital") are features

"candidate" is the model the next run starts from (the current champion) evaluated on the probe
set (the holdout set is reserved for the promotion gate); with no candidate (first cycle) R1/R2/L1
cannot fire and the reasons say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kotone_pipeline.domain.data.schemas import (
    EvalSummary,
    HyperParamDecision,
    LocalHyperParams,
    LoraHyperParams,
)

MIN_JSON_VALID_RATE = 0.98
LR_FACTOR = 0.6
LR_FLOOR = 1e-6
MAX_EPOCHS = 4
MIN_EPOCHS_WITH_HARD_DIMS = 2
GROWN_LORA_R = 32
MAX_P95_LATENCY_MS = 1200.0

LOCAL_ALPHA_FACTOR = 0.5
LOCAL_ALPHA_FLOOR = 1e-3
LOCAL_MIN_WORD_NGRAM_WITH_HARD_DIMS = 2


def _patch(current: dict[str, Any], nxt: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in nxt.items() if current.get(k) != v}


def _not_worse_than_baseline(candidate: EvalSummary | None, baseline: EvalSummary | None) -> str | None:
    """The reason text when the candidate does not beat the baseline on mse_norm, else None."""
    if candidate is None or baseline is None:
        return None
    if candidate.mse_norm >= baseline.mse_norm:
        return (
            f"candidate mse_norm {candidate.mse_norm:.5f} >= baseline {baseline.model_id!r} "
            f"mse_norm {baseline.mse_norm:.5f}"
        )
    return None


def next_lora_hparams(
    current: LoraHyperParams,
    candidate: EvalSummary | None,
    baseline: EvalSummary | None,
    hard_dims: Sequence[str],
    p95_latency_ms: float | None = None,
) -> HyperParamDecision:
    """Apply R1–R4 to ``current``. ``p95_latency_ms`` defaults to the candidate's own p95."""
    nxt = current.model_dump()
    reasons: list[str] = []
    latency = p95_latency_ms if p95_latency_ms is not None else (candidate.p95_latency_ms if candidate else None)

    if candidate is not None and candidate.json_valid_rate < MIN_JSON_VALID_RATE:
        # The floor stops the decay; it never raises a rate someone set below it.
        lr = max(nxt["learning_rate"] * LR_FACTOR, min(nxt["learning_rate"], LR_FLOOR))
        epochs = nxt["epochs"] + 1 if nxt["epochs"] < MAX_EPOCHS else nxt["epochs"]
        reasons.append(
            f"R1: json_valid_rate {candidate.json_valid_rate:.3f} < {MIN_JSON_VALID_RATE}: "
            f"learning_rate {nxt['learning_rate']:.3g} -> {lr:.3g} (x{LR_FACTOR}, floor {LR_FLOOR:g}), "
            f"epochs {nxt['epochs']} -> {epochs} (cap {MAX_EPOCHS})"
        )
        nxt["learning_rate"], nxt["epochs"] = lr, epochs

    worse = _not_worse_than_baseline(candidate, baseline)
    if worse is not None:
        if latency is not None and latency > MAX_P95_LATENCY_MS:
            reasons.append(
                f"R4: p95 latency {latency:.0f} ms > {MAX_P95_LATENCY_MS:.0f} ms: LoRA r stays "
                f"{nxt['lora_r']} although R2 would grow it ({worse})"
            )
        elif nxt["lora_r"] < GROWN_LORA_R:
            reasons.append(
                f"R2: {worse}: lora_r {nxt['lora_r']} -> {GROWN_LORA_R}, lora_alpha {nxt['lora_alpha']} -> "
                f"{2 * GROWN_LORA_R}"
            )
            nxt["lora_r"], nxt["lora_alpha"] = GROWN_LORA_R, 2 * GROWN_LORA_R
        else:
            reasons.append(f"R2: {worse}, but lora_r is already {nxt['lora_r']} (>= {GROWN_LORA_R})")

    if hard_dims and nxt["epochs"] < MIN_EPOCHS_WITH_HARD_DIMS:
        reasons.append(f"R3: hard dims {', '.join(hard_dims)}: epochs {nxt['epochs']} -> {MIN_EPOCHS_WITH_HARD_DIMS}")
        nxt["epochs"] = MIN_EPOCHS_WITH_HARD_DIMS

    if not reasons:
        reasons.append(_none_fired("R1–R4", candidate, baseline))
    validated = LoraHyperParams.model_validate(nxt).model_dump()
    cur = current.model_dump()
    return HyperParamDecision(
        trainer="lora", current=cur, next=validated, patch=_patch(cur, validated), reasons=reasons
    )


def _none_fired(rules: str, candidate: EvalSummary | None, baseline: EvalSummary | None) -> str:
    missing = []
    if candidate is None:
        missing.append("no candidate eval")
    if baseline is None:
        missing.append("no baseline eval")
    note = f" ({'; '.join(missing)})" if missing else ""
    return f"no rule fired ({rules}): keep the current hyper-parameters{note}"


def next_local_hparams(
    current: LocalHyperParams,
    candidate: EvalSummary | None,
    baseline: EvalSummary | None,
    hard_dims: Sequence[str],
) -> HyperParamDecision:
    """Apply L1–L2 (see the module doc) to the local trainer's hyper-parameters."""
    nxt = current.model_dump()
    reasons: list[str] = []

    worse = _not_worse_than_baseline(candidate, baseline)
    if worse is not None:
        alpha = max(nxt["alpha"] * LOCAL_ALPHA_FACTOR, min(nxt["alpha"], LOCAL_ALPHA_FLOOR))
        change = f"alpha {nxt['alpha']:g} -> {alpha:g}"
        if not nxt["use_char"]:
            change += ", use_char False -> True"
        reasons.append(f"L1: {worse}: underfitting, {change}")
        nxt["alpha"], nxt["use_char"] = alpha, True

    if hard_dims and nxt["word_ngram_max"] < LOCAL_MIN_WORD_NGRAM_WITH_HARD_DIMS:
        reasons.append(
            f"L2: hard dims {', '.join(hard_dims)}: word_ngram_max {nxt['word_ngram_max']} -> "
            f"{LOCAL_MIN_WORD_NGRAM_WITH_HARD_DIMS}"
        )
        nxt["word_ngram_max"] = LOCAL_MIN_WORD_NGRAM_WITH_HARD_DIMS

    if not reasons:
        reasons.append(_none_fired("L1–L2", candidate, baseline))
    validated = LocalHyperParams.model_validate(nxt).model_dump()
    cur = current.model_dump()
    return HyperParamDecision(
        trainer="local", current=cur, next=validated, patch=_patch(cur, validated), reasons=reasons
    )


# Learning-rate factors of a LoRA campaign's runs (run 0 uses the rules' learning rate).
LORA_LR_LADDER = (1.0, 0.5, 2.0, 0.25, 4.0)

# Base first, then alternately weaker and stronger regularisation, one octave further each time.
_ALPHA_LADDER: tuple[float, ...] = (1.0, 0.5, 2.0, 0.25, 4.0, 0.125, 8.0, 0.0625, 16.0)


def max_campaign_size(trainer: str) -> int:
    return len(_ALPHA_LADDER) if trainer == "local" else len(LORA_LR_LADDER)


def campaign_variants(base: LocalHyperParams, n: int) -> list[LocalHyperParams]:
    """``n`` distinct local variants for one campaign: ``base`` first, then an alpha ladder around it
    (x0.5, x2, x0.25, x4, ...). Deterministic; factors of two keep the alphas exact."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n > len(_ALPHA_LADDER):
        raise ValueError(f"at most {len(_ALPHA_LADDER)} local variants per campaign, got {n}")
    if base.alpha <= 0:
        raise ValueError(f"base alpha must be > 0 for an alpha ladder, got {base.alpha}")
    return [base.model_copy(update={"alpha": base.alpha * f}) for f in _ALPHA_LADDER[:n]]
