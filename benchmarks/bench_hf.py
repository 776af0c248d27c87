"""Sensor tick cost on the HF Jobs backend: ``statuses()`` over 300 open jobs against the local Hub stand-in.

The jobs are put straight into the stand-in's store (no processes). A tick must make exactly one list call
(its pages follow the Link header) and no per-job request; that is checked, and a breach raises.
Target: ``sensor_tick_300_jobs_s`` <= 2 s.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the stand-in lives in the test package, importable from the repo root
    sys.path.insert(0, str(ROOT))

N_JOBS = 300
TARGET_S = 2.0


def run(repeats: int = 5) -> dict[str, float]:
    import huggingface_hub.constants
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http as hf_http

    from kotone_pipeline.services.hf_jobs import HfJobsBackend
    from kotone_pipeline_tests.hf_standin.server import HubStandIn

    huggingface_hub.constants.HF_HUB_DISABLE_XET = True
    token, user = "hf_bench_token_0123456789", "kotone-bot"
    with HubStandIn({token: user}) as hub:
        stages = ("SCHEDULING", "RUNNING", "RUNNING", "COMPLETED", "ERROR")
        ids = [
            hub.add_job(
                user,
                {"kotone-project": "kotone", "kotone-cycle": f"c{i % 10}", "kotone-run": f"r{i}"},
                stage=stages[i % len(stages)],
                running_s=600,
            ).id
            for i in range(N_JOBS)
        ]
        backend = HfJobsBackend(namespace=user, token=token, endpoint=hub.url, secret_source={})
        # ERROR jobs fetch their log tail once (then cached): warm that up, as a running sensor would have.
        backend.statuses(ids)
        timings, list_calls, pages, other = [], [], [], []
        for _ in range(max(1, repeats)):
            hub.clear_requests()
            start = time.perf_counter()
            states = backend.statuses(ids)
            timings.append(time.perf_counter() - start)
            if len(states) != N_JOBS:
                raise RuntimeError(f"statuses() returned {len(states)} of {N_JOBS} jobs")
            list_calls.append(hub.count("jobs.list", first_page_only=True))
            pages.append(hub.count("jobs.list"))
            other.append(sum(1 for r in hub.requests if r.route != "jobs.list"))
    set_client_factory(hf_http.default_client_factory)
    if set(list_calls) != {1} or set(other) != {0}:
        raise RuntimeError(f"a tick must make exactly one list call: got {list_calls} list calls, {other} others")
    median = statistics.median(timings)
    return {
        "sensor_tick_300_jobs_s": median,
        "sensor_tick_300_jobs_min_s": min(timings),
        "sensor_tick_list_calls": float(list_calls[0]),
        "sensor_tick_list_pages": float(pages[0]),
        "sensor_tick_other_requests": float(other[0]),
        "sensor_tick_target_s": TARGET_S,
        "sensor_tick_within_target": float(median <= TARGET_S),
    }


if __name__ == "__main__":
    for key, value in run(5).items():
        print(f"{key}: {value:.4f}")
