"""Cycle partitions: one dynamic partition per improvement cycle (docs/design.md § Cycles in Dagster)."""

from __future__ import annotations

import dagster as dg

cycles = dg.DynamicPartitionsDefinition(name="cycles")
