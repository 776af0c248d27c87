"""Cycle partitions: one dynamic partition per improvement cycle (DESIGN §5)."""

from __future__ import annotations

import dagster as dg

cycles = dg.DynamicPartitionsDefinition(name="cycles")
