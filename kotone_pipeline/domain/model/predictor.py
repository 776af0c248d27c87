"""Predictor interface shared by the local model, the baselines and fine-tuned LLMs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from kotone_pipeline.domain.data.schemas import Vector
from kotone_pipeline.domain.requests import prompting


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
    """The compact JSON completion an LLM is trained to emit (defined once, in the training script)."""
    return prompting.format_completion(vector.as_dict())


def parse_completion(raw: str | None) -> Vector | None:
    """Parse model output into a Vector; None when it is not exactly the six dims on 0..10."""
    return prompting.parse_vector(raw)


class Predictor(ABC):
    """Predicts six dims for a batch of inputs."""

    model_id: str = "predictor"

    @abstractmethod
    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        """One Prediction per input, in order; latency_ms is per prediction."""
