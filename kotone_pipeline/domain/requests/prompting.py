"""The one prompt and completion format for LLM training and prediction.

Defined once in the training script (which must run standalone on Hugging Face Jobs) and re-exported
here, so the pipeline and the trainer can never build different prompts.
"""

from __future__ import annotations

from kotone_pipeline.domain.data.schemas import Vector
from kotone_pipeline.training.train_lora import (
    DIMS as SCRIPT_DIMS,
)
from kotone_pipeline.training.train_lora import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_messages,
    build_prompt,
    format_completion,
    parse_completion,
)

__all__ = [
    "PROMPT_VERSION",
    "SCRIPT_DIMS",
    "SYSTEM_PROMPT",
    "build_messages",
    "build_prompt",
    "format_completion",
    "parse_completion",
    "parse_vector",
]


def parse_vector(raw: str | None) -> Vector | None:
    """``parse_completion`` as a Vector (None for invalid output, which is scored as neutral)."""
    values = parse_completion(raw)
    return Vector.parse(values) if values is not None else None
