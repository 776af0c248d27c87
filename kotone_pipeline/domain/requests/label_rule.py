"""The request label rule (docs/design.md § Teacher): one function from the concepts a request mentions to its label.

For each dim, the label on 0..100 is the salience-weighted mean of the mentioned concepts that define
the dim, each taken at 50 + multiplier x (value - 50):

* salience by role: descriptor 1.0, scene 0.6, use 0.6, reference (an era, or the X of "like X") 0.8;
* multiplier by modifier: plain 1.0, intensified ("very", "super") 1.4, hedged ("a bit", "slightly")
  0.5, negated ("no X", "less X") -0.5, not-too ("not too X") -0.5;
* "not too X" also caps the dim at 50 + 0.3 x X's offset (a floor when X pushes down): whatever else
  the request says, the client asked for X's side in moderation;
* 50 where no mentioned concept defines the dim.

Then noise (uniform in [-noise, +noise] on 0..100, the teacher's 6 by default), clamped, and 0..10
half-up. Worked examples live in the tests (``test_label_rule.py``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kotone_pipeline.domain.data.dims import DIMS, to_scale10
from kotone_pipeline.domain.requests.lexicon import Concept

Role = Literal["descriptor", "scene", "use", "reference"]
Modifier = Literal["plain", "intensified", "hedged", "negated", "not_too"]

SALIENCE: dict[str, float] = {"descriptor": 1.0, "scene": 0.6, "use": 0.6, "reference": 0.8}
MULTIPLIER: dict[str, float] = {"plain": 1.0, "intensified": 1.4, "hedged": 0.5, "negated": -0.5, "not_too": -0.5}
NOT_TOO_CAP = 0.3
NEUTRAL_100 = 50.0
ROLE_OF_KIND: dict[str, Role] = {"scene": "scene", "use": "use", "era": "reference"}


def default_role(concept: Concept) -> Role:
    return ROLE_OF_KIND.get(concept.kind, "descriptor")


@dataclass(frozen=True)
class Mention:
    """One concept a request mentions, how prominently (role) and how (modifier)."""

    concept: Concept
    role: Role = "descriptor"
    modifier: Modifier = "plain"

    def as_dict(self) -> dict[str, str]:
        return {"concept": self.concept.id, "role": self.role, "modifier": self.modifier}


def label_100(mentions: Sequence[Mention]) -> list[float]:
    """The rule's value per dim on 0..100, before noise (DIMS order)."""
    out = []
    for dim in DIMS:
        # fsum: exactly rounded, so the label cannot depend on the order the mentions come in.
        weighted, weights = [], []
        low, high = 0.0, 100.0
        for m in mentions:
            offset = m.concept.offset(dim)
            if offset is None:
                continue
            weight = SALIENCE[m.role]
            weighted.append(weight * (NEUTRAL_100 + MULTIPLIER[m.modifier] * offset))
            weights.append(weight)
            if m.modifier == "not_too":
                bound = NEUTRAL_100 + NOT_TOO_CAP * offset
                if offset > 0:
                    high = min(high, bound)
                else:
                    low = max(low, bound)
        value = math.fsum(weighted) / math.fsum(weights) if weights else NEUTRAL_100
        value = min(max(value, low), high)
        out.append(min(max(value, 0.0), 100.0))
    return out


def apply_noise(values_100: Sequence[float], rng: random.Random, noise_100: float) -> list[float]:
    """Uniform noise per dim, clamped to 0..100 and kept to two decimals (so meta reproduces the label)."""
    out = []
    for value in values_100:
        noisy = value + rng.random() * 2 * noise_100 - noise_100
        out.append(int(min(max(noisy, 0.0), 100.0) * 100 + 0.5) / 100)
    return out


def to_vector_values(values_100: Sequence[float]) -> tuple[int, ...]:
    return tuple(to_scale10(v) for v in values_100)


def label(mentions: Sequence[Mention], rng: random.Random | None = None, noise_100: float = 0.0) -> tuple[int, ...]:
    """The 0..10 label of a request that mentions ``mentions`` (noise only when an rng is given)."""
    values = label_100(mentions)
    if rng is not None and noise_100 > 0:
        values = apply_noise(values, rng, noise_100)
    return to_vector_values(values)
