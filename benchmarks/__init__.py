"""Benchmarks (``make bench`` = ``python -m benchmarks.run``).

A benchmark module exposes either ``run(repeats) -> {key: float}`` (plus, optionally,
``rows(results, repeats) -> list[Row]`` for the printed table), or ``BENCHMARKS``: a list of
``Benchmark`` when it holds several. List the module in ``benchmarks.run.MODULES`` to have it run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    """One line of the table. ``ratio`` = value / a baseline measured in the same process."""

    label: str
    value: float
    unit: str
    runs: int
    ratio: float | None = None
    versus: str = ""


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[int], dict[str, float]]
    rows: Callable[[dict[str, float], int], list[Row]]


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(max(1, repeats)))
