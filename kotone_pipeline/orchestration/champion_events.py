"""Changes of champion made outside a run (``kotone champion rollback``), shown to the Dagster UI.

A rollback is a person's decision, not a materialization: no run computes it. It is reported as a runless
``AssetObservation`` of ``promotion_decision`` (the asset whose decisions change the champion), with the
reason and the models in its metadata, so the asset's page lists it beside the gate's decisions.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from kotone_pipeline.orchestration.metadata import readable
from kotone_pipeline.services.champion import Champion
from kotone_pipeline.settings import load_settings

DECISION_ASSET = dg.AssetKey("promotion_decision")


def instance_dir(home: Path) -> Path:
    """Where ``open_instance(home)`` looks, without creating anything (``kotone report`` reads it the same way)."""
    return Path(load_settings().dagster_home or (Path(home) / "dagster")).resolve()


def rollback_observation(entry: Champion) -> dg.AssetObservation:
    """The observation of a rollback's history entry: reason, from, to, its decision id and the scores."""
    metadata = {
        "decision": dg.MetadataValue.text("rollback"),
        "decision_id": dg.MetadataValue.text(entry.decision_id or "-"),
        "reason": dg.MetadataValue.text(entry.decision_reason),
        "from": dg.MetadataValue.text(entry.replaced or "-"),
        "to": dg.MetadataValue.text(entry.model_id),
        "to_model_uri": dg.MetadataValue.text(entry.model_uri),
        "to_holdout_mae": dg.MetadataValue.float(entry.holdout_mae),
        "to_human_mae": dg.MetadataValue.float(entry.human_mae)
        if entry.human_mae is not None
        else dg.MetadataValue.text("n/a"),
        "at": dg.MetadataValue.text(entry.promoted_at),
    }
    return dg.AssetObservation(
        asset_key=DECISION_ASSET,
        description=f"rollback {entry.replaced or '-'} -> {entry.model_id}: {entry.decision_reason}",
        metadata=readable(metadata),
    )


def report_rollback(instance: dg.DagsterInstance, entry: Champion) -> None:
    """Record the rollback in the instance's event log (no run: a runless asset event)."""
    if not entry.rollback:
        raise ValueError(f"{entry.decision_id}: not a rollback entry")
    instance.report_runless_asset_event(rollback_observation(entry))
