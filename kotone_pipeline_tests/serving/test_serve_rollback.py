"""``kotone serve`` swaps to a rolled-back champion as it does to a promoted one: its watcher sees champion.json
replaced by ``kotone champion rollback`` and loads the restored model, with no restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kotone_pipeline.cli import app as cli_app
from kotone_pipeline.domain.data.schemas import Vector
from kotone_pipeline.domain.model.predictor import Prediction, Predictor
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.champion import Champion, ChampionRegistry
from kotone_pipeline.serving.app import create_app

# Each model answers with its own constant energy, so a response says which model served it.
ENERGY = {"a": 2, "b": 8}


class _Constant(Predictor):
    def __init__(self, model_id: str, energy: int) -> None:
        self.model_id = model_id
        self.energy = energy

    def predict(self, inputs: Any) -> list[Prediction]:
        return [Prediction(vector=Vector.from_values([self.energy, 5, 5, 5, 5, 5])) for _ in inputs]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        time.sleep(0.02)


def test_serve_swaps_to_the_rolled_back_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("KOTONE_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    registry = ChampionRegistry(CycleArtifacts(home).registry_dir)
    for name in ("a", "b"):
        (home / "models" / name).mkdir(parents=True)
        registry.promote(
            Champion(
                model_id=f"c-{name}/run-0",
                model_uri=str(home / "models" / name),
                cycle_id=f"c-{name}",
                run_id="run-0",
                holdout_mae=0.9,
                decision_reason="gate",
            ),
            f"c-{name}/run-0",
        )
    loads: list[str] = []

    def loader(champion: Champion) -> Predictor:
        name = Path(champion.model_uri).name
        loads.append(champion.model_id)
        return _Constant(champion.model_id, ENERGY[name])

    with TestClient(create_app(registry, check_interval_s=0.05, loader=loader)) as client:

        def served() -> tuple[str, int]:
            body = client.post("/predict", json={"text": "a calm piece"}).json()
            return body["model_id"], body["prediction"]["energy"]

        assert served() == ("c-b/run-0", 8)

        result = CliRunner().invoke(cli_app, ["champion", "rollback", "--reason", "c-b regressed"])
        assert result.exit_code == 0, result.output

        _wait_for(lambda: served() == ("c-a/run-0", 2))
        model = client.get("/model").json()
        assert (model["model_id"], model["decision_id"]) == ("c-a/run-0", "rollback/1")
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["model_id"] == "c-a/run-0"
    assert loads == ["c-b/run-0", "c-a/run-0"]  # one load at startup, one for the rollback
