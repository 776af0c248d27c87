"""The ``lexicon_patch`` step without Dagster: propose lexicon changes from the people rows a cycle trains on.

People's rows reach a cycle's training split through the flywheel (origin ``reviewed``) or an import;
the patch is proposed against the lexicon in effect and saved under ``$KOTONE_HOME/lexicon/patches``.
It changes nothing until a person accepts it (``kotone lexicon accept``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kotone_pipeline.cycle.documents import SplitDatasetDoc
from kotone_pipeline.domain.model.correction import is_people_row
from kotone_pipeline.domain.requests.lexicon_patch import LexiconPatch, propose_lexicon_patch
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.datasets import DatasetStore
from kotone_pipeline.services.lexicon_store import LexiconStore


@dataclass(frozen=True)
class LexiconPatchStep:
    patch: LexiconPatch
    path: str  # where the patch is: a path, or a URL in the state repo
    lexicon_version: str  # the lexicon in effect, which the patch was proposed against
    accepted: list[str] = field(default_factory=list)  # entry ids accepted by this step (auto-accept, the UI)
    accepted_by: str = ""
    lexicon_version_after: str = ""  # the lexicon in effect afterwards (the next cycle's)
    why: str = ""  # why nothing was accepted automatically, or what was


def step_lexicon_patch(
    artifacts: CycleArtifacts,
    store: DatasetStore,
    lexicons: LexiconStore,
    cycle_id: str,
    *,
    auto_accept: bool = False,
    accept: Sequence[str] | None = None,
) -> LexiconPatchStep:
    """Propose the cycle's patch; accept entries only when a person names them (``accept``: entry ids, or
    ``["all"]``, from the UI's launchpad) or when ``auto_accept`` is on and the whole patch lowers the grouped-CV
    error of the label rule on people's rows. Accepted entries reach the next cycle's composer and label rule."""
    ref = artifacts.read(cycle_id, SplitDatasetDoc).dataset
    people = [p for p in store.load(ref)["train"] if is_people_row(p)]
    lexicon, version = lexicons.current()
    patch = propose_lexicon_patch(people, lexicon)
    path = lexicons.save_patch(cycle_id, patch)
    chosen: list[str] | None = None
    by, why = "", "not accepted: accept it with `kotone lexicon accept` or the asset's `accept` config"
    if accept:
        chosen, by, why = (None if list(accept) == ["all"] else list(accept)), "ui", "accepted from the UI"
    elif auto_accept:
        base, patched = patch.cv_base_mae, patch.cv_patched_mae
        if patch.entries and base is not None and patched is not None and patched < base:
            by, why = "auto-accept", f"auto-accepted: grouped-CV MAE {base:.4f} -> {patched:.4f} on people's rows"
        else:
            why = "auto-accept on, but the patch does not lower grouped-CV MAE on people's rows (or is empty)"
    if not by:
        return LexiconPatchStep(patch, path, version, why=why, lexicon_version_after=version)
    new, after = lexicons.accept(cycle_id, chosen, accepted_by=by)
    return LexiconPatchStep(patch, path, version, [e.id for e in new], by, after, why)
