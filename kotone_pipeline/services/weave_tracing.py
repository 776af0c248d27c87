"""Weave traces of evaluation predictions (online only).

Online, every prediction of the evaluated model is a ``weave.op`` call and the whole evaluation is a
``weave.Evaluation`` with two scorers: ``vector_mae`` (row MAE, exact, within-one, valid) and
``per_dim_error`` (absolute and signed error per dim). Invalid outputs are scored as the neutral vector,
as everywhere else in the project.

Offline, tracing is off. Weave 0.54 cannot start without its server: ``weave.init`` resolves
credentials and the entity through W&B, calls the trace server's ``/server_info`` (a connection error
is a ``RuntimeError``) and creates the project. Its write-ahead log (``WEAVE_ENABLE_WAL``,
``WEAVE_DISABLE_WAL_SENDER``) only makes requests durable *after* a successful init, and lives under
``~/.weave/wal`` rather than a directory we choose. So there is nothing to keep on disk and upload
later; the offline evaluation's numbers are in the offline W&B run instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from kotone_pipeline.domain.data.dims import DIMS, NEUTRAL_VALUE
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.predictor import PredictInput, Predictor
from kotone_pipeline.services.tracker import TrackerMode, TrackerUnavailableError
from kotone_pipeline.settings import load_settings

OFFLINE_REASON = (
    "offline: weave 0.54 needs its trace server to start (weave.init), so evaluation tracing is off; "
    "the offline W&B run holds the evaluation results"
)
DISABLED_REASON = "tracking disabled"


class TraceResult(BaseModel):
    mode: TrackerMode
    traced: bool
    reason: str | None = None
    project: str | None = None
    rows: int = 0
    evaluation_url: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"weave_traced": self.traced}
        if self.reason:
            meta["weave_reason"] = self.reason
        if self.evaluation_url:
            meta["weave_evaluation_url"] = self.evaluation_url
        return meta


# ------------------------------------------------------------------------------------- scoring (pure)


def _predicted(output: dict[str, Any]) -> dict[str, int]:
    vector = output.get("vector")
    return vector if vector else dict.fromkeys(DIMS, NEUTRAL_VALUE)


def score_vector(target: dict[str, int], output: dict[str, Any]) -> dict[str, Any]:
    """Row-level scores; an invalid output counts as the neutral vector, never as a skipped row."""
    pred = _predicted(output)
    errors = [abs(pred[d] - target[d]) for d in DIMS]
    return {
        "vector_mae": sum(errors) / len(DIMS),
        "exact": all(e == 0 for e in errors),
        "within_one": all(e <= 1 for e in errors),
        "valid": bool(output.get("valid")),
    }


def score_per_dim(target: dict[str, int], output: dict[str, Any]) -> dict[str, dict[str, int]]:
    pred = _predicted(output)
    return {d: {"abs": abs(pred[d] - target[d]), "signed": pred[d] - target[d]} for d in DIMS}


def _dataset(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    return [
        {"pair_id": p.id, "text": p.text, "source_type": p.source_type, "target": p.vector.as_dict()} for p in pairs
    ]


@cache
def _scorers() -> tuple[Any, Any]:
    import weave

    return weave.op(score_vector, name="vector_mae"), weave.op(score_per_dim, name="per_dim_error")


def build_evaluation(predictor: Predictor, pairs: Sequence[Pair], name: str) -> tuple[Any, Any]:
    """The ``weave.Evaluation`` and the traced predict op; runs untraced when weave is not initialised."""
    import weave

    def predict(text: str, source_type: str) -> dict[str, Any]:
        (prediction,) = predictor.predict([PredictInput(text=text, source_type=source_type)])
        return {
            "vector": prediction.vector.as_dict() if prediction.vector else None,
            "valid": prediction.valid,
            "raw": prediction.raw,
            "latency_ms": prediction.latency_ms,
        }

    model = weave.op(predict, name="predict", call_display_name=f"predict:{predictor.model_id}")
    evaluation = weave.Evaluation(name=name, dataset=_dataset(pairs), scorers=list(_scorers()), evaluation_name=name)
    return evaluation, model


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run, also from code that already runs inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ----------------------------------------------------------------------------------------------- entry


def trace_evaluation(
    predictor: Predictor,
    pairs: Sequence[Pair],
    mode: TrackerMode,
    project: str,
    root_dir: Path,
    *,
    entity: str | None = None,
    name: str | None = None,
) -> TraceResult:
    """Trace an evaluation of ``predictor`` on ``pairs`` to Weave (online); a no-op otherwise.

    Offline and disabled return at once without importing weave or calling the predictor.
    ``root_dir`` is where an on-disk trace log would go; weave 0.54 has none that works without its
    server (see the module docstring), so it is unused today.
    Online failures to reach Weave raise ``TrackerUnavailableError``. Note that online the predictor
    runs again for every pair (weave calls it concurrently, ``WEAVE_PARALLELISM`` threads).
    """
    del root_dir
    if mode == "disabled":
        return TraceResult(mode=mode, traced=False, reason=DISABLED_REASON)
    if mode == "offline":
        return TraceResult(mode=mode, traced=False, reason=OFFLINE_REASON)

    import weave
    from weave.trace.env import weave_trace_server_url

    host = weave_trace_server_url()
    settings = load_settings()
    if not settings.wandb_api_key:
        # weave.init would otherwise fall back to an interactive wandb.login prompt.
        raise TrackerUnavailableError(f"Weave unreachable at {host}: WANDB_API_KEY is not set")
    entity = entity or settings.wandb_entity
    project_path = f"{entity}/{project}" if entity else project
    try:
        client = weave.init(project_path)
    except Exception as exc:  # weave wraps every server failure differently; all mean "not usable"
        raise TrackerUnavailableError(f"Weave unreachable at {host}: {type(exc).__name__}: {exc}") from exc
    try:
        evaluation, model = build_evaluation(predictor, pairs, name or f"eval-{predictor.model_id}")
        summary, call = _run(evaluation.evaluate.call(evaluation, model))
        try:
            url = call.ui_url
        except ValueError:
            url = None
    finally:
        client.flush()
        weave.finish()
    return TraceResult(
        mode=mode, traced=True, project=project_path, rows=len(pairs), evaluation_url=url, summary=summary
    )
