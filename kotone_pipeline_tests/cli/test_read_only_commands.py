"""Commands that only read never create state and say what is missing; `cycle new` says when a cycle exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kotone_pipeline.cycle.documents import PromotionDecisionDoc
from kotone_pipeline.domain.data.jsonl import atomic_writer
from kotone_pipeline.domain.data.schemas import GateDecision
from kotone_pipeline.services.artifacts import CycleArtifacts

KOTONE = str(Path(sys.executable).parent / "kotone")


def kotone(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KOTONE_HOME": str(home), "KOTONE_WANDB_MODE": "disabled"}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([KOTONE, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args", [["status"], ["report"], ["predict", "a calm piano piece"], ["champion", "history"]], ids=" ".join
)
def test_a_read_only_command_on_a_mistyped_home_says_so_and_creates_nothing(tmp_path: Path, args) -> None:
    typo = tmp_path / "some" / "typo"
    done = kotone(typo, *args)
    assert done.returncode == 1
    assert f"no Kotone home at {typo} (set by KOTONE_HOME)" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "some").exists()


def test_a_second_cycle_new_says_the_cycle_exists_and_where_it_stands(tmp_path: Path) -> None:
    first = kotone(tmp_path, "cycle", "new", "abc")
    assert first.returncode == 0 and first.stdout.strip() == "abc" and "already exists" not in first.stderr
    second = kotone(tmp_path, "cycle", "new", "abc")
    assert second.returncode == 0 and second.stdout.strip() == "abc"
    assert "cycle abc already exists (last stage created); nothing changed" in second.stderr


def test_cycle_new_run_refuses_a_finished_cycle(tmp_path: Path) -> None:
    assert kotone(tmp_path, "cycle", "new", "abc").returncode == 0
    decision = GateDecision(
        promote=False,
        candidate_run_id=None,
        reference_kind="baseline",
        reference_id="baseline-constant",
        candidate_holdout_mae=None,
        reference_holdout_mae=1.2,
        reasons=["keep"],
    )
    CycleArtifacts(tmp_path).write(
        "abc", PromotionDecisionDoc(cycle_id="abc", decision_id="abc/none", decision=decision)
    )
    done = kotone(tmp_path, "cycle", "new", "abc", "--run")
    assert done.returncode == 1
    assert "cycle abc already exists and is finished (last stage promotion_decision, decision keep)" in done.stderr


def test_an_output_that_cannot_be_written_is_named_as_typed(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised, atomic_writer(Path("/proc/kotone-report.md")) as handle:
        handle.write("never")
    message = str(raised.value)
    assert message.startswith("/proc/kotone-report.md: cannot write there") and ".tmp" not in message
