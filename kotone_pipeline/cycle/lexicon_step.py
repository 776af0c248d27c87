"""The ``lexicon_patch`` step without Dagster: propose lexicon changes from the people rows a cycle trains on.

People's rows reach a cycle's training split through the flywheel (origin ``reviewed``) or an import;
the patch is proposed against the lexicon in effect and saved under ``$KOTONE_HOME/lexicon/patches``.
It changes nothing until a person accepts it (``kotone lexicon accept``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kotone_pipeline.cycle.documents import SplitDatasetDoc
from kotone_pipeline.domain.correction import is_people_row
from kotone_pipeline.domain.lexicon_patch import LexiconPatch, propose_lexicon_patch
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.lexicon_store import LexiconStore


@dataclass(frozen=True)
class LexiconPatchStep:
    patch: LexiconPatch
    path: Path
    lexicon_version: str  # the lexicon in effect, which the patch was proposed against


def step_lexicon_patch(
    artifacts: CycleArtifacts, store: DatasetStore, lexicons: LexiconStore, cycle_id: str
) -> LexiconPatchStep:
    ref = artifacts.read(cycle_id, SplitDatasetDoc).dataset
    people = [p for p in store.load(ref)["train"] if is_people_row(p)]
    lexicon, version = lexicons.current()
    patch = propose_lexicon_patch(people, lexicon)
    return LexiconPatchStep(patch, lexicons.save_patch(cycle_id, patch), version)
