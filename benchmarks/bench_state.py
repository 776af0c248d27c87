"""The state store: a cycle whose documents and registry live in an HF repo (``KOTONE_STATE_STORE=hf``, the
local Hub stand-in) against the same cycle on local files, in the same process.

- ``state_hf_cycle_s`` / ``state_local_cycle_s``: ``CycleRunner.run_cycle`` (campaign 1, W&B off, base
  prebuilt and not counted), a first cycle in a fresh home each time; runs alternate local / hf;
- ``state_hf_requests_per_cycle``, ``state_hf_commits_per_cycle``: what one cycle asks of the Hub, the
  figure that decides the cost on the real Hub (each request there is a round trip of ~0.1-0.3 s, against
  well under a millisecond to the stand-in on this machine);
- ``state_promote_hf_ms`` / ``state_promote_local_ms``: one ``ChampionRegistry.promote`` (read, decide,
  conditional write), median of 20.

Target: the hf cycle within 1.3x of the local one here.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in lives in the test package, importable from the repo root
    sys.path.insert(0, str(ROOT))

from benchmarks import Row  # noqa: E402
from benchmarks.bench_cycle import ENV, POLL_S, _home_env, _temp_home  # noqa: E402

TOKEN, USER = "hf_bench_token_0123456789", "kotone-bot"
TARGET_RATIO = 1.3
PROMOTIONS = 20


def _cycle(extra: dict[str, str]) -> float:
    import dagster as dg

    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.runner import CycleRunner

    with _temp_home("kotone-bench-state-") as home, _home_env(home), dg.instance_for_test() as instance:
        runner = CycleRunner(
            build_definitions({"KOTONE_HOME": str(home), **ENV, **extra}), instance, poll_interval_s=POLL_S
        )
        runner.ensure_base()  # not counted
        started = time.perf_counter()
        report = runner.run_cycle("c1")
        elapsed = time.perf_counter() - started
        if report.candidate_holdout_mae is None:
            raise RuntimeError("the cycle produced no candidate: the training job failed")
        return elapsed


def _promotions(registry_factory: object) -> float:
    from kotone_pipeline.services.champion import Champion

    registry = registry_factory()  # type: ignore[operator]
    timings = []
    for i in range(PROMOTIONS):
        champion = Champion(
            model_id=f"c{i}/r0", model_uri="/m", cycle_id=f"c{i}", run_id="r0", holdout_mae=1.0, decision_reason="b"
        )
        started = time.perf_counter()
        registry.promote(champion, f"d{i}")
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def run(repeats: int = 3) -> dict[str, float]:
    import os
    import tempfile
    from unittest.mock import patch

    import huggingface_hub.constants
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http as hf_http

    from kotone_pipeline.services.champion import ChampionRegistry
    from kotone_pipeline.services.hf_state_store import HfRepoStateStore
    from kotone_pipeline_tests.hf_standin.server import HubStandIn

    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    local, hf, requests, commits = [], [], [], []
    try:
        with HubStandIn({TOKEN: USER}) as hub, patch.dict(os.environ, {"HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url}):
            for i in range(max(1, repeats)):
                local.append(_cycle({}))
                hub.clear_requests()
                repo = f"{USER}/kotone-state-{i}"
                hf.append(_cycle({"KOTONE_STATE_STORE": "hf", "KOTONE_HF_STATE_REPO": repo}))
                requests.append(len(hub.requests))
                commits.append(hub.count("repo.commit"))
            promote_hf = _promotions(
                lambda: ChampionRegistry(
                    HfRepoStateStore(f"{USER}/kotone-bench-registry", token=TOKEN, endpoint=hub.url)
                )
            )
            with tempfile.TemporaryDirectory() as folder:
                promote_local = _promotions(lambda: ChampionRegistry(Path(folder)))
    finally:
        set_client_factory(hf_http.default_client_factory)
    hf_s, local_s = statistics.median(hf), statistics.median(local)
    return {
        "state_hf_cycle_s": hf_s,
        "state_local_cycle_s": local_s,
        "state_hf_ratio": hf_s / local_s,
        "state_hf_requests_per_cycle": statistics.median(requests),
        "state_hf_commits_per_cycle": statistics.median(commits),
        "state_promote_hf_ms": promote_hf,
        "state_promote_local_ms": promote_local,
        "state_within_target": float(hf_s / local_s <= TARGET_RATIO),
    }


def rows(results: dict[str, float], repeats: int) -> list[Row]:
    return [
        Row("cycle, state in an HF repo (stand-in)", results["state_hf_cycle_s"], "s", repeats,
            results["state_hf_ratio"], f"local files; <= {TARGET_RATIO:g}x"),
        Row("cycle, state in local files", results["state_local_cycle_s"], "s", repeats),
        Row("  Hub requests per cycle", results["state_hf_requests_per_cycle"], "", repeats),
        Row("  of which commits", results["state_hf_commits_per_cycle"], "", repeats),
        Row(f"promote, HF repo (median of {PROMOTIONS})", results["state_promote_hf_ms"], "ms", 1,
            results["state_promote_hf_ms"] / results["state_promote_local_ms"], "local"),
        Row(f"promote, local files (median of {PROMOTIONS})", results["state_promote_local_ms"], "ms", 1),
    ]  # fmt: skip


if __name__ == "__main__":
    for key, value in run(1).items():
        print(f"{key}: {value:.4f}")
