"""Two cycles whose documents and champion registry live in an HF repo (``KOTONE_STATE_STORE=hf``) on the
stand-in, with the machine's own copy of the first cycle wiped before the second, as on a fresh pod."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import huggingface_hub.constants
import pytest
from huggingface_hub import HfApi, set_client_factory
from huggingface_hub.utils import _http as hf_http

from kotone_pipeline.cycle.documents import EvalSummaryDoc, PromotionDecisionDoc
from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.runner import CycleRunner
from kotone_pipeline.services.state_places import StatePlace, champion_registry, cycle_artifacts
from kotone_pipeline.settings import load_settings
from kotone_pipeline_tests.hf_standin.fixtures import TOKEN, USER
from kotone_pipeline_tests.hf_standin.server import HubStandIn

pytestmark = pytest.mark.slow
STATE_REPO = f"{USER}/kotone-state"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    home = tmp_path_factory.mktemp("kotone")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        mp.delenv("DAGSTER_HOME", raising=False)
        mp.delenv("WANDB_API_KEY", raising=False)
        hub = HubStandIn({TOKEN: USER}).start()
        env = {
            "KOTONE_HOME": str(home),
            "KOTONE_STATE_STORE": "hf",
            "KOTONE_HF_STATE_REPO": STATE_REPO,
            "KOTONE_WANDB_MODE": "disabled",
            "KOTONE_CAMPAIGN_SIZE": "1",  # one training job per cycle: what is tested here is where state lives
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": TOKEN,
        }
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            with dg.instance_for_test() as instance:
                runner = CycleRunner(build_definitions(env), instance, poll_interval_s=0.2)
                first = runner.run_cycle("c1", timeout_s=240)
                local_after_c1 = sorted(str(p.relative_to(home)) for p in (home / "cycles").rglob("*") if p.is_file())
                shutil.rmtree(home / "cycles")  # a fresh pod: nothing of c1 on this machine but the job folders
                second = runner.run_cycle("c2", timeout_s=240)
                place = StatePlace.of(load_settings(env))
                yield SimpleNamespace(
                    hub=hub,
                    home=home,
                    first=first,
                    second=second,
                    local_after_c1=local_after_c1,
                    arts=cycle_artifacts(home, place),
                    registry=champion_registry(home, place),
                    files=HfApi(endpoint=hub.url, token=TOKEN).list_repo_files(STATE_REPO, repo_type="dataset"),
                )
        finally:
            hub.stop()
            set_client_factory(hf_http.default_client_factory)


def test_the_documents_and_the_registry_are_files_of_the_state_repo(world: SimpleNamespace) -> None:
    files = set(world.files)
    for cycle in ("c1", "c2"):
        for name in ("eval_summary.json", "split_dataset.json", "training_submission.json", "promotion_decision.json"):
            assert f"cycles/{cycle}/{name}" in files
        assert f"cycles/{cycle}/augmented_pairs.jsonl" in files
    assert {"registry/champion.json", "registry/champion_history.jsonl"} <= files
    # What this machine kept of c1 was only the runs' downloaded outputs (model, predictions), no document.
    assert world.local_after_c1 and all(p.startswith("cycles/c1/runs/") for p in world.local_after_c1)
    assert not (world.home / "registry").exists()


def test_the_first_cycle_promotes_into_the_repo_registry(world: SimpleNamespace) -> None:
    decision = world.arts.read("c1", PromotionDecisionDoc)
    assert decision.decision.promote and world.first.champion_after is not None
    current = world.registry.current()
    assert current is not None and current.cycle_id == "c1" and current.model_id == world.first.champion_after


def test_a_fresh_machine_scores_the_champion_from_what_the_repo_kept(world: SimpleNamespace) -> None:
    """c2 starts from c1's champion though c1's files are gone from this machine: its recorded predictions and
    scored validation rows come back from the repo, and the holdout score is the one c1's gate saw."""
    doc = world.arts.read("c2", EvalSummaryDoc)
    assert doc.current_model == "champion" and world.second.champion_before == world.first.champion_after
    how = doc.champion_eval
    assert how["mode"] == "recorded"
    assert how["holdout"] == "predictions_holdout.jsonl"
    assert doc.summaries["champion"]["holdout"].vector_mae == pytest.approx(world.first.candidate_holdout_mae)
    restored = world.home / "cycles" / "c1" / "runs"
    assert any(restored.rglob("predictions_holdout.jsonl"))
    assert world.second.decision in ("promote", "keep") and world.second.reasons
    history = [json.loads(line) for line in world.registry.store.read("champion_history.jsonl").decode().splitlines()]
    assert history[0]["cycle_id"] == "c1"


def test_a_cycle_document_names_its_place_in_the_repo(world: SimpleNamespace) -> None:
    where = world.arts.location("c1", "split_dataset.json")
    assert where == f"{world.hub.url}/datasets/{STATE_REPO}/blob/main/cycles/c1/split_dataset.json"
    assert world.arts.cycles_on_disk() == ["c1", "c2"]


def test_no_token_in_any_repo_file(world: SimpleNamespace) -> None:
    api = HfApi(endpoint=world.hub.url, token=TOKEN)
    for name in world.files:
        path = Path(api.hf_hub_download(STATE_REPO, name, repo_type="dataset", cache_dir=str(world.home / "dl")))
        assert TOKEN not in path.read_text(encoding="utf-8", errors="replace"), name
