"""Weave tracing: off offline and disabled (the predictor is not even called), the evaluation's scorers
on a hand-computed example, and a clear failure when the Weave server cannot be reached."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.schemas import Pair, Vector
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor
from kotone_pipeline.services.tracker import TrackerUnavailableError
from kotone_pipeline.services.weave_tracing import (
    OFFLINE_REASON,
    build_evaluation,
    score_per_dim,
    score_vector,
    trace_evaluation,
)

# weave 0.54 reads pydantic's instance model_fields, deprecated since pydantic 2.11; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Accessing the 'model_fields' attribute:DeprecationWarning")

PAIRS = [
    Pair(
        group_id="g1",
        source_type="request_text",
        text="a driving chase cue",
        vector=Vector.from_values([8, 5, 5, 5, 5, 5]),
    ),
    Pair(
        group_id="g2",
        source_type="request_text",
        text="an old-time lullaby",
        vector=Vector.from_values([2, 5, 5, 5, 5, 9]),
    ),
]


class TablePredictor(Predictor):
    """Fixed answers by text; None means the model produced no valid vector."""

    model_id = "table"

    def __init__(self, answers: dict[str, list[int] | None]) -> None:
        self.answers = answers
        self.calls = 0

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        self.calls += len(inputs)
        out = []
        for item in inputs:
            values = self.answers[item.text]
            vector = Vector.from_values(values) if values else None
            out.append(Prediction(vector=vector, raw="{}" if vector else "no json", latency_ms=1.0))
        return out


def _predictor() -> TablePredictor:
    return TablePredictor({"a driving chase cue": [5, 5, 5, 5, 5, 5], "an old-time lullaby": None})


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_tracing_is_a_no_op_offline_and_disabled(mode: str, tmp_path: Path) -> None:
    predictor = _predictor()
    result = trace_evaluation(predictor, PAIRS, mode, "kotone", tmp_path / "home")  # type: ignore[arg-type]
    assert result.traced is False and result.mode == mode
    assert predictor.calls == 0
    assert not (tmp_path / "home").exists()
    assert result.as_metadata()["weave_traced"] is False


def test_offline_reason_says_why() -> None:
    result = trace_evaluation(_predictor(), PAIRS, "offline", "kotone", Path("unused"))
    assert result.reason == OFFLINE_REASON and "weave.init" in result.reason


def test_invalid_output_scores_as_the_neutral_vector() -> None:
    target = {"energy": 2, "warmth": 5, "brightness": 5, "acousticness": 5, "complexity": 5, "nostalgia": 9}
    invalid = {"vector": None, "valid": False}
    # neutral 5s: energy off by 3, nostalgia by 4 -> 7/6
    assert score_vector(target, invalid) == {
        "vector_mae": pytest.approx(7 / 6),
        "exact": False,
        "within_one": False,
        "valid": False,
    }
    per_dim = score_per_dim(target, invalid)
    assert per_dim["energy"] == {"abs": 3, "signed": 3}
    assert per_dim["nostalgia"] == {"abs": 4, "signed": -4}


def test_evaluation_runs_the_predictor_and_summarises_the_scores() -> None:
    import asyncio

    predictor = _predictor()
    evaluation, model = build_evaluation(predictor, PAIRS, "eval-test")
    summary = asyncio.run(evaluation.evaluate(model))  # untraced: weave.init was not called
    assert predictor.calls == 2
    # row MAEs: 3/6 (energy 8 -> 5) and 7/6 (invalid -> neutral) -> mean 10/12
    assert summary["vector_mae"]["vector_mae"]["mean"] == pytest.approx(10 / 12)
    assert summary["vector_mae"]["valid"]["true_fraction"] == pytest.approx(0.5)
    # energy: |5-8| and |5-2| -> mean abs 3, signed -3 and +3 -> mean 0; nostalgia: 0 and -4 -> -2
    assert summary["per_dim_error"]["energy"]["abs"]["mean"] == pytest.approx(3.0)
    assert summary["per_dim_error"]["energy"]["signed"]["mean"] == pytest.approx(0.0)
    assert summary["per_dim_error"]["nostalgia"]["signed"]["mean"] == pytest.approx(-2.0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_online_with_unreachable_weave_server_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("WANDB_API_KEY", "wandbfakekey0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("WANDB_BASE_URL", host)
    monkeypatch.setenv("WF_TRACE_SERVER_URL", host)
    monkeypatch.setenv("WANDB_ENTITY", "team")
    predictor = _predictor()
    started = time.perf_counter()
    with pytest.raises(TrackerUnavailableError, match=rf"^Weave unreachable at {host}: RuntimeError: .*"):
        trace_evaluation(predictor, PAIRS, "online", "kotone", tmp_path)
    assert time.perf_counter() - started < 30
    assert predictor.calls == 0


def test_online_without_api_key_fails_before_any_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WF_TRACE_SERVER_URL", "http://weave.internal")
    with pytest.raises(TrackerUnavailableError, match="Weave unreachable at http://weave.internal: WANDB_API_KEY"):
        trace_evaluation(_predictor(), PAIRS, "online", "kotone", tmp_path)
