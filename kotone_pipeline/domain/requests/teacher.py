"""Synthetic teacher (docs/design.md § Teacher): base pairs from catalog combinations, deterministic for a seed.

One group per combination of parts (one per slot): a rule prompt naming the parts, labelled from the
parts' catalog values, and ``requests_per_group`` customer requests composed from the concept lexicon
(``composer``), each labelled by the lexicon rule from what it mentions. Combinations are unique
within a run while the pool lasts: the pool is shuffled in blocks, so a run is linear in its size,
and the first k groups of a run do not depend on how many groups were asked for.

The combination space is split for good by a stable hash into three pools (base / probe / holdout),
so the frozen eval sets can never share a rule prompt with training data, whatever the base size.
Requests are split the same way by the set of concepts they mention (``concept_pool``): an eval
request never repeats a training request's combination of concepts.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from typing import Any, Literal

from kotone_pipeline.domain.data.dims import DIMS, SLOTS
from kotone_pipeline.domain.data.schemas import Pair, Vector, pair_id
from kotone_pipeline.domain.requests.catalog import Catalog, Part, mean_vector_100
from kotone_pipeline.domain.requests.composer import DEFAULT_JA_SHARE, Composer, Plan
from kotone_pipeline.domain.requests.lexicon import Lexicon, default_lexicon
from kotone_pipeline.domain.requests.writer import write_rule_prompt

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


def concept_pool(concept_ids: tuple[str, ...] | list[str]) -> str:
    """The pool a request's set of concepts belongs to (order-free); stable across runs and machines."""
    digest = hashlib.sha1(("concepts|" + "|".join(sorted(concept_ids))).encode()).digest()
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
    requests_per_group: int = 1,
    ja_share: float = DEFAULT_JA_SHARE,
    lexicon: Lexicon | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield plain Pair-shaped dicts, the rule prompt then the group's requests (fast path).

    The rule prompt's vector on 0..100 (mean of the parts' defined values + uniform noise, clamped,
    2 decimals) is kept in ``meta["vector_100"]``; the label is that value converted half-up to 0..10.
    A request keeps its language, register, mentions and 0..100 values in ``meta``.
    """
    if requests_per_group < 0:
        raise ValueError(f"requests_per_group must be >= 0, got {requests_per_group}")
    composer = Composer(lexicon if lexicon is not None else default_lexicon(), ja_share=ja_share, noise_100=noise_100)
    request_rng = random.Random(f"teacher:{seed}:requests")
    wanted_pool = pool or "base"

    def in_pool(plan: Plan) -> bool:
        return concept_pool([m.concept.id for m in plan.mentions]) == wanted_pool

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
        for _ in range(requests_per_group):
            request = composer.compose(request_rng, accept=in_pool)
            yield {
                "id": pair_id("request_text", request.text),
                "group_id": gid,
                "source_type": "request_text",
                "text": request.text,
                "vector": dict(zip(DIMS, request.vector, strict=True)),
                "parts": None,
                "origin": "teacher",
                "meta": request.meta(),
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
    requests_per_group: int = 1,
    ja_share: float = DEFAULT_JA_SHARE,
) -> list[Pair]:
    rows = generate_rows(
        catalog,
        n_groups,
        seed,
        group_prefix,
        pool=pool,
        noise_100=noise_100,
        requests_per_group=requests_per_group,
        ja_share=ja_share,
    )
    return [row_to_pair(row) for row in rows]
