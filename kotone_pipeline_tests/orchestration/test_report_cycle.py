"""One cycle's row of the workflow log: the pieces that need no Dagster run."""

from __future__ import annotations

from kotone_pipeline.cycle.tracking import model_aliases
from kotone_pipeline.orchestration.report_cycle import _artifact_links


def test_the_model_artifact_names_its_real_aliases_not_a_placeholder() -> None:
    links = _artifact_links("c7", "kotone-dataset:cycle-c7", {"wandb_model_artifact": "kotone-model:cycle-c7"})
    (model,) = [link for link in links if link.label == "W&B model artifact"]
    assert "<id>" not in (model.detail or "")
    assert "aliases cycle-c7, champion" in (model.detail or "")
    # The same aliases the tracker gives the artifact when it logs it.
    assert model_aliases("c7") == ["cycle-c7", "champion"]
