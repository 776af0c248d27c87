"""Cycle partitions: one dynamic partition per improvement cycle (docs/design.md § Cycles in Dagster), and the
tags of a cycle's runs."""

from __future__ import annotations

import dagster as dg

from kotone_pipeline.services.jobs import InvalidIdError, validate_cycle_id

cycles = dg.DynamicPartitionsDefinition(name="cycles")

# Every run of a cycle carries it (cycle_job, validation, re-executions, a UI materialization): one filter
# on the runs page finds them all.
CYCLE_TAG = "kotone/cycle"
ADD_CYCLE = "add it with `kotone cycle new ID`"


def run_cycle(context: dg.AssetExecutionContext) -> str:
    """The run's cycle partition, checked before a step does any work, and the run tagged with it.

    Dagster accepts a run of a partitioned job with no partition, or one never added (the GraphQL client
    takes both); it would fail later, deep in a step, with its own error. This names the fix instead. A run
    launched without the cycle tag (the UI's Materialize, a launchpad run) gets it here."""
    job = context.job_name
    who = f"materializing {context.asset_key.to_user_string()}" if job.startswith("__") else job
    if not context.has_partition_key:
        raise dg.Failure(f"{who} needs a cycle partition: {ADD_CYCLE}")
    key = context.partition_key
    reason = invalid_reason(key)
    known = context.instance.has_dynamic_partition(cycles.name, key)
    if reason is not None:  # added from the UI's "add partition" box, say: no artifact path can hold it
        fix = f"remove it with `kotone cycle delete {key}` and {ADD_CYCLE}" if known else ADD_CYCLE
        raise dg.Failure(f"{who} was given the partition {key!r}, which cannot be a cycle ({reason}): {fix}")
    if not known:
        raise dg.Failure(
            f"{who} was given the partition {key!r}, which is not a cycle: add it with `kotone cycle new {key}`"
        )
    if context.run.tags.get(CYCLE_TAG) != key:
        context.instance.add_run_tags(context.run.run_id, {CYCLE_TAG: key})
    return key


def invalid_reason(key: str) -> str | None:
    """Why ``key`` cannot be a cycle id (every artifact path and job id is built from it), or None when it can."""
    try:
        validate_cycle_id(key)
    except InvalidIdError as exc:
        return str(exc)
    return None
