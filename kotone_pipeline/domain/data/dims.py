"""The six hidden music parameters and the one rounding rule used everywhere."""

from __future__ import annotations

import math

DIMS: tuple[str, ...] = ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia")
SLOTS: tuple[str, ...] = ("style", "instrument", "mood", "gimmick")
SOURCE_TYPES: tuple[str, ...] = ("request_text", "rule_prompt")
ORIGINS: tuple[str, ...] = ("teacher", "augmented", "replay", "imported", "human", "reviewed")
MIN_VALUE = 0
MAX_VALUE = 10
NEUTRAL_VALUE = 5


def round_half_up(x: float) -> int:
    """JS ``Math.round`` semantics; Python's ``round`` is banker's rounding and disagrees on .5 cases."""
    return math.floor(x + 0.5)


def to_scale10(value_0_100: float) -> int:
    """Convert one 0..100 value to 0..10 with half-up rounding: ``floor(v/10 + 0.5)``."""
    return round_half_up(value_0_100 / 10)


def clamp(value: int, low: int = MIN_VALUE, high: int = MAX_VALUE) -> int:
    return low if value < low else high if value > high else value
