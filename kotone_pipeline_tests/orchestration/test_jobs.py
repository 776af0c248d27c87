"""Every job runs in one process and its description names every asset it materializes."""

from __future__ import annotations

import dagster as dg
import pytest

from kotone_pipeline.definitions import build_definitions


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    return build_definitions({"KOTONE_HOME": str(tmp_path_factory.mktemp("kotone"))})


@pytest.mark.parametrize("name", ["base_job", "cycle_job", "validation_job"])
def test_jobs_run_in_process_whoever_launches_them(defs: dg.Definitions, name: str) -> None:
    job = defs.resolve_job_def(name)
    assert job.executor_def.name == dg.in_process_executor.name


@pytest.mark.parametrize("name", ["base_job", "cycle_job", "validation_job"])
def test_job_descriptions_list_every_asset(defs: dg.Definitions, name: str) -> None:
    job = defs.resolve_job_def(name)
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert keys, name
    missing = [key for key in keys if key not in (job.description or "")]
    assert not missing, f"{name}'s description omits {missing}"


def test_every_job_of_the_code_location_runs_in_process_even_the_asset_pages(defs: dg.Definitions) -> None:
    # "Materialize" on an asset page and `dagster asset materialize` launch the implicit __ASSET_JOB.
    jobs = defs.get_repository_def().get_all_jobs()
    assert "__ASSET_JOB" in {job.name for job in jobs}
    executors = {job.name: job.executor_def.name for job in jobs}
    assert set(executors.values()) == {dg.in_process_executor.name}, executors
