"""Predictor interface shared by the local model, the baselines and fine-tuned LLMs."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kotone_pipeline.domain.dims import DIMS
from kotone_pipeline.domain.schemas import Vector


@dataclass(frozen=True)
class PredictInput:
    text: str
    source_type: str


@dataclass(frozen=True)
class Prediction:
    """``vector`` is None when the model's output was not a valid vector (scored as neutral)."""

    vector: Vector | None
    raw: str | None = None
    latency_ms: float = 0.0

    @property
    def valid(self) -> bool:
        return self.vector is not None


def format_completion(vector: Vector) -> str:
    """The compact JSON completion an LLM is trained to emit (one format for training and parsing)."""
    return json.dumps(vector.as_dict(), separators=(",", ":"))


def parse_completion(raw: str | None) -> Vector | None:
    """Parse model output into a Vector; None when it is not exactly the six dims on 0..10."""
    if not raw:
        return None
    text = raw.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj: Any = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or set(obj) != set(DIMS):
        return None
    try:
        return Vector.parse(obj)
    except (ValidationError, ValueError):
        return None


class Predictor(ABC):
    """Predicts six dims for a batch of inputs."""

    model_id: str = "predictor"

    @abstractmethod
    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        """One Prediction per input, in order; latency_ms is per prediction."""
