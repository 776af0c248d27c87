"""Synthetic teacher (DESIGN §4): base pairs from catalog combinations, deterministic for a seed.

One group per combination of parts (one per slot): a rule prompt naming the parts and a request text
written from the group's vector. Combinations are unique within a run while the pool lasts: the pool
is shuffled in blocks, so a run is linear in its size, and the first k groups of a run do not depend
on how many groups were asked for.

The combination space is split for good by a stable hash into three pools (base / probe / holdout),
so the frozen eval sets can never share a rule prompt with training data, whatever the base size.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from typing import Any, Literal

from kotone_pipeline.domain.catalog import Catalog, Part, mean_vector_100
from kotone_pipeline.domain.dims import DIMS, SLOTS
from kotone_pipeline.domain.schemas import Pair, Vector, pair_id
from kotone_pipeline.domain.writer import write_request_text, write_rule_prompt

NOISE_100 = 6.0
PoolName = Literal["base", "probe", "holdout"]
POOLS: tuple[str, ...] = ("base", "probe", "holdout")
# 1/16 of the combinations each for probe and holdout (910 of 14,560 with the shipped catalog).
_POOL_MODULUS = 16
_EVAL_POOLS = {0: "probe", 1: "holdout"}

Combination = tuple[Part, ...]  # one part per slot, SLOTS order


def combination_pool(part_ids: tuple[str, ...]) -> str:
    """The pool a combination (part ids in SLOTS order) belongs to; stable across runs and machines."""
    digest = hashlib.sha1("|".join(part_ids).encode()).digest()
    return _EVAL_POOLS.get(int.from_bytes(digest[:4], "big") % _POOL_MODULUS, "base")


def combinations(catalog: Catalog, pool: str | None = None) -> list[Combination]:
    """Every combination of one part per slot, in catalog order; only ``pool``'s when given."""
    if pool is not None and pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r} (expected one of {', '.join(POOLS)})")
    combos: list[Combination] = [()]
    for slot in SLOTS:
        combos = [c + (p,) for c in combos for p in catalog.by_slot[slot]]
    if pool is None:
        return combos
    return [c for c in combos if combination_pool(tuple(p.part_id for p in c)) == pool]


def _request_pair_id(text: str) -> str:
    """``pair_id("request_text", text)`` for writer output, which is already whitespace-normalised.

    Skips normalize_text's regex (a third of the per-row cost); tests hold it equal to pair_id.
    """
    return "p_" + hashlib.sha1(f"request_text\x1f{text.casefold()}".encode()).hexdigest()[:16]


def group_id(prefix: str, index: int) -> str:
    return f"{prefix}-{index:07d}"


def generate_rows(
    catalog: Catalog,
    n_groups: int,
    seed: int,
    group_prefix: str,
    *,
    pool: str | None = None,
    noise_100: float = NOISE_100,
) -> Iterator[dict[str, Any]]:
    """Yield plain Pair-shaped dicts, rule prompt then request text for each group (fast path).

    The vector on 0..100 (mean of the parts' defined values + uniform noise, clamped, 2 decimals) is
    kept in ``meta["vector_100"]``; the label is that value converted half-up to 0..10.
    """
    if n_groups < 0:
        raise ValueError(f"n_groups must be >= 0, got {n_groups}")
    if not group_prefix:
        raise ValueError("group_prefix must not be empty")
    combos = combinations(catalog, pool)
    if not combos and n_groups:
        raise ValueError(f"pool {pool!r} has no combinations")
    n_combos = len(combos)
    # String seeds are hashed with SHA-512 by ``random``: stable across processes and PYTHONHASHSEED.
    order_rng = random.Random(f"teacher:{seed}:combinations")
    rng = random.Random(f"teacher:{seed}:rows")
    unit = rng.random
    span = 2 * noise_100
    floor = math.floor
    means: dict[int, list[float]] = {}
    rule_cache: dict[int, tuple[str, str, dict[str, str]]] = {}
    order: list[int] = []

    for index in range(n_groups):
        position = index % n_combos
        if position == 0:
            order = list(range(n_combos))
            order_rng.shuffle(order)
        combo_index = order[position]
        cached = rule_cache.get(combo_index)
        if cached is None:
            combo = combos[combo_index]
            text = write_rule_prompt(dict(zip(SLOTS, combo, strict=True)))
            parts = {slot: part.part_id for slot, part in zip(SLOTS, combo, strict=True)}
            cached = rule_cache[combo_index] = (text, pair_id("rule_prompt", text), parts)
            means[combo_index] = mean_vector_100(combo)
        rule_text, rule_id, parts = cached

        vector_100 = []
        for mean in means[combo_index]:
            value = mean + unit() * span - noise_100
            # Two decimals (half-up on the positive range) so meta reproduces the label exactly.
            value = int((0.0 if value < 0.0 else 100.0 if value > 100.0 else value) * 100 + 0.5) / 100
            vector_100.append(value)
        values = [floor(v / 10 + 0.5) for v in vector_100]  # to_scale10, inlined for the hot path
        vector = dict(zip(DIMS, values, strict=True))
        gid = f"{group_prefix}-{index:07d}"  # group_id(), inlined
        request_text = write_request_text(values, rng)
        yield {
            "id": rule_id,
            "group_id": gid,
            "source_type": "rule_prompt",
            "text": rule_text,
            "vector": vector,
            "parts": dict(parts),
            "origin": "teacher",
            "meta": {"vector_100": vector_100},
        }
        yield {
            "id": _request_pair_id(request_text),
            "group_id": gid,
            "source_type": "request_text",
            "text": request_text,
            "vector": dict(vector),
            "parts": dict(parts),
            "origin": "teacher",
            "meta": {"vector_100": list(vector_100)},
        }


def row_to_pair(row: dict[str, Any]) -> Pair:
    """A trusted teacher row as a Pair without re-validation (validation happens at I/O boundaries)."""
    vector = row["vector"]
    if isinstance(vector, dict):
        vector = Vector.from_values([vector[d] for d in DIMS])
    return Pair.model_construct(**{**row, "vector": vector})


def generate_pairs(
    catalog: Catalog,
    n_groups: int,
    seed: int,
    group_prefix: str,
    *,
    pool: str | None = None,
    noise_100: float = NOISE_100,
) -> list[Pair]:
    rows = generate_rows(catalog, n_groups, seed, group_prefix, pool=pool, noise_100=noise_100)
    return [row_to_pair(row) for row in rows]
