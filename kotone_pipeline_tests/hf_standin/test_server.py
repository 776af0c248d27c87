"""The stand-in itself: it answers the real huggingface_hub client the way the Hub does (hf_api_notes.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub._jobs_api import JobHardwareInfo, JobInfo
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from kotone_pipeline_tests.hf_standin.fixtures import TOKEN, USER, hf_standin_fixture, wait_for  # noqa: F401
from kotone_pipeline_tests.hf_standin.model import recorded
from kotone_pipeline_tests.hf_standin.server import REPO_ROOT, HubStandIn, iter_secret_hits

REPO = f"{USER}/things"


@pytest.fixture
def api(hf_standin: HubStandIn) -> HfApi:
    return HfApi(endpoint=hf_standin.url, token=TOKEN)


def commit(api: HfApi, files: dict[str, bytes], message: str = "m", **kw: object) -> str:
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(REPO, ops, commit_message=message, repo_type="dataset", **kw).oid  # type: ignore[arg-type]


def test_commits_get_stable_content_shas_and_old_revisions_stay_readable(api, hf_standin, tmp_path):
    api.create_repo(REPO, repo_type="dataset", private=True)
    first = commit(api, {"a.txt": b"one"})
    second = commit(api, {"a.txt": b"two"})
    assert first != second and len(first) == 40
    assert api.dataset_info(REPO).sha == second

    def read(rev: str) -> bytes:
        path = hf_hub_download(
            REPO,
            "a.txt",
            repo_type="dataset",
            revision=rev,
            endpoint=hf_standin.url,
            token=TOKEN,
            cache_dir=tmp_path,
        )
        return open(path, "rb").read()

    assert (read(first), read(second), read("main")) == (b"one", b"two", b"two")

    with HubStandIn({TOKEN: USER}) as other:  # the same history elsewhere gives the same shas
        other_api = HfApi(endpoint=other.url, token=TOKEN)
        other_api.create_repo(REPO, repo_type="dataset", private=True)
        assert commit(other_api, {"a.txt": b"one"}) == first


def test_large_and_parquet_files_go_through_lfs(api, hf_standin, tmp_path):
    api.create_repo(REPO, repo_type="dataset")
    blob = bytes(range(256)) * 200
    commit(api, {"data/x.parquet": b"PAR1", "big.bin": blob, "small.txt": b"hi"})
    infos = {
        i.path: i for i in api.get_paths_info(REPO, ["data/x.parquet", "big.bin", "small.txt"], repo_type="dataset")
    }
    assert infos["big.bin"].lfs is not None and infos["data/x.parquet"].lfs is not None
    assert infos["small.txt"].lfs is None
    assert hf_standin.count("lfs.put") == 2
    path = hf_hub_download(
        REPO, "big.bin", repo_type="dataset", endpoint=hf_standin.url, token=TOKEN, cache_dir=tmp_path
    )
    with open(path, "rb") as handle:
        assert handle.read() == blob


def test_paths_info_expand_names_the_commit_that_last_changed_a_file(api):
    api.create_repo(REPO, repo_type="dataset")
    added = commit(api, {"marker.json": b"{}"})
    commit(api, {"other.txt": b"x"})
    (info,) = api.get_paths_info(REPO, ["marker.json"], expand=True, repo_type="dataset")
    assert info.last_commit.oid == added


def test_errors_carry_the_hub_error_codes(api, hf_standin, tmp_path):
    api.create_repo(REPO, repo_type="dataset", private=True)
    anonymous = HfApi(endpoint=hf_standin.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.dataset_info(REPO)
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="f" * 40)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "nope.txt", repo_type="dataset", endpoint=hf_standin.url, token=TOKEN, cache_dir=tmp_path)


def test_a_stale_parent_commit_is_refused(api):
    api.create_repo(REPO, repo_type="dataset")
    base = commit(api, {"a": b"1"})
    commit(api, {"a": b"2"})
    with pytest.raises(HfHubHTTPError) as err:
        commit(api, {"a": b"3"}, parent_commit=base)
    assert err.value.response.status_code == 412


def test_create_repo_twice_with_exist_ok_and_branches(api, hf_standin):
    api.create_repo("kotone-bot/runs", private=True, exist_ok=True)
    api.create_repo("kotone-bot/runs", private=True, exist_ok=True)
    api.create_branch("kotone-bot/runs", branch="cycle-c1-r1", exist_ok=True)
    api.create_branch("kotone-bot/runs", branch="cycle-c1-r1", exist_ok=True)
    refs = api.list_repo_refs("kotone-bot/runs")
    assert {b.name for b in refs.branches} == {"main", "cycle-c1-r1"}


def test_jobs_list_filters_by_labels_and_stage_and_paginates(api, hf_standin):
    hf_standin.jobs_page_size = 2
    for i in range(5):
        hf_standin.add_job(USER, {"p": "k", "i": str(i)}, stage="RUNNING" if i % 2 else "COMPLETED")
    hf_standin.add_job(USER, {"p": "other"})
    listed = list(api.list_jobs(namespace=USER, labels={"p": "k"}))
    assert sorted(j.labels["i"] for j in listed) == ["0", "1", "2", "3", "4"]
    assert hf_standin.count("jobs.list", first_page_only=True) == 1 and hf_standin.count("jobs.list") == 3
    running = list(api.list_jobs(namespace=USER, labels={"p": "k"}, status="RUNNING"))
    assert sorted(j.labels["i"] for j in running) == ["1", "3"]


def test_a_job_runs_with_its_env_and_secrets_and_its_logs_can_be_tailed(api, hf_standin):
    code = "import os; print('x', os.environ['A']); print('s', os.environ['S'] == 'secret-1'); print('end')"
    job = api.run_job(
        image="python:3.12",
        command=["python", "-c", code],
        env={"A": "1"},
        secrets={"S": "secret-1"},
        namespace=USER,
        timeout=60,
    )
    assert job.secrets in (None, {}) or all(v is None for v in job.secrets.values())
    hf_standin.wait_jobs()
    assert api.inspect_job(job_id=job.id, namespace=USER).status.stage == "COMPLETED"
    assert list(api.fetch_job_logs(job_id=job.id, namespace=USER)) == ["x 1", "s True", "end"]
    assert list(api.fetch_job_logs(job_id=job.id, namespace=USER, tail=2)) == ["s True", "end"]


def test_uv_run_of_a_private_script_url_needs_the_jobs_hf_token(api, hf_standin):
    api.create_repo(REPO, repo_type="dataset", private=True)
    sha = commit(api, {"run.py": b"print('ran from the hub')\n"})
    url = f"{hf_standin.url}/datasets/{REPO}/resolve/{sha}/run.py"
    with_token = api.run_job(image="uv", command=["uv", "run", url], secrets={"HF_TOKEN": TOKEN}, namespace=USER)
    without = api.run_job(image="uv", command=["uv", "run", url], namespace=USER)
    hf_standin.wait_jobs()
    assert list(api.fetch_job_logs(job_id=with_token.id, namespace=USER)) == ["ran from the hub"]
    failed = api.inspect_job(job_id=without.id, namespace=USER)
    assert failed.status.stage == "ERROR"
    assert any("HTTP 401" in line for line in api.fetch_job_logs(job_id=without.id, namespace=USER))


def test_a_job_is_killed_at_its_timeout_by_the_server_clock(api, hf_standin):
    job = api.run_job(
        image="python:3.12",
        command=["python", "-c", "import time; time.sleep(60)"],
        namespace=USER,
        timeout=600,
    )
    wait_for(lambda: api.inspect_job(job_id=job.id, namespace=USER).status.stage == "RUNNING")
    hf_standin.advance(601)
    info = wait_for(lambda: (i := api.inspect_job(job_id=job.id, namespace=USER)).status.stage == "ERROR" and i)
    assert "timeout" in info.status.message.lower()
    assert info.durations.running_secs >= 600


def test_cancel_kills_the_process(api, hf_standin):
    job = api.run_job(image="python:3.12", command=["python", "-c", "import time; time.sleep(60)"], namespace=USER)
    wait_for(lambda: api.inspect_job(job_id=job.id, namespace=USER).status.stage == "RUNNING")
    api.cancel_job(job_id=job.id, namespace=USER)
    assert api.inspect_job(job_id=job.id, namespace=USER).status.stage == "CANCELED"
    record = hf_standin.jobs[job.id]
    wait_for(lambda: record.process is not None and record.process.poll() is not None, timeout_s=10)


def test_faults_are_consumed_in_order_and_after_faults_still_do_the_work(api, hf_standin):
    hf_standin.hold_scheduling = True
    hf_standin.faults.fail_after("jobs.create", 500)
    with pytest.raises(HfHubHTTPError) as err:
        api.run_job(image="python:3.12", command=["true"], namespace=USER)
    assert err.value.response.status_code == 500
    (job_id,) = hf_standin.jobs  # created all the same
    hf_standin.faults.fail("jobs.inspect", 503, skip=1)
    api.inspect_job(job_id=job_id, namespace=USER)  # let through
    with pytest.raises(HfHubHTTPError):
        api.inspect_job(job_id=job_id, namespace=USER)
    api.inspect_job(job_id=job_id, namespace=USER)  # the fault is used up
    assert [r.status for r in hf_standin.requests if r.route == "jobs.inspect"] == [200, 503, 200]


def test_durations_follow_the_server_clock(api, hf_standin):
    hf_standin.hold_scheduling = True
    job = api.run_job(image="python:3.12", command=["true"], namespace=USER)
    hf_standin.advance(7200)
    info = api.inspect_job(job_id=job.id, namespace=USER)
    assert info.status.stage == "SCHEDULING"
    assert info.durations.scheduling_secs >= 7200 and info.durations.running_secs is None


def test_every_request_is_recorded_and_the_secret_scan_finds_leaks(api, hf_standin):
    hf_standin.hold_scheduling = True
    api.run_job(image="python:3.12", command=["true"], secrets={"HF_TOKEN": TOKEN}, namespace=USER)
    assert list(iter_secret_hits(hf_standin, TOKEN)) == []  # header and secrets field are allowed
    api.run_job(image="python:3.12", command=["true"], env={"LEAK": TOKEN}, namespace=USER)
    hits = list(iter_secret_hits(hf_standin, TOKEN))
    assert any("body" in hit for hit in hits) and any("job record" in hit for hit in hits)


def test_control_api_over_http(hf_standin):
    request = urllib.request.Request(
        f"{hf_standin.url}/_standin/faults",
        data=json.dumps({"route": "whoami", "status": 503}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()
    anon = HfApi(endpoint=hf_standin.url, token=TOKEN)
    with pytest.raises(HfHubHTTPError):
        anon.whoami()
    assert anon.whoami()["name"] == USER


def test_runs_as_a_module_for_manual_use():
    process = subprocess.Popen(
        [sys.executable, "-m", "kotone_pipeline_tests.hf_standin.server", "--port", "0", "--token", TOKEN],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        url = line.split(" on ")[1].split(" ")[0]
        deadline = time.monotonic() + 10
        while True:
            try:
                assert HfApi(endpoint=url, token=TOKEN).whoami()["name"] == USER
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- answers shaped by recorded real ones (recorded/README.md) ------------------------------------------------


# Fields newer than the documented answers: the pinned client's repr shows them, its docstrings do not.
_UNDOCUMENTED = (
    "volumes=None, ",
    ", expose_urls=None, ssh_url=None",
    "network=None, retry=None, expose=None, expose_public=None, ",
)


def _documented_repr(cls: type) -> str:
    return next(
        line.strip() for line in (cls.__doc__ or "").splitlines() if line.strip().startswith(f"{cls.__name__}(")
    )


def test_the_recorded_files_parse_back_to_the_answers_documented_by_the_pinned_client():
    (cpu_basic,) = recorded("jobs_hardware.json")
    assert repr(JobHardwareInfo(**cpu_basic)) == _documented_repr(JobHardwareInfo)
    parsed = repr(JobInfo(**recorded("job_info.json"), endpoint="https://huggingface.co"))
    for newer in _UNDOCUMENTED:
        parsed = parsed.replace(newer, "")
    assert parsed == _documented_repr(JobInfo)


def test_the_hardware_list_serves_the_recorded_entry_as_it_is(api):
    (cpu_basic,) = recorded("jobs_hardware.json")
    listed = api.list_jobs_hardware()
    assert listed[0].name == "cpu-basic" and repr(listed[0]) == repr(JobHardwareInfo(**cpu_basic))
    # Every other flavor has the recorded entry's keys, and its price in the recorded units.
    raw = json.loads(urllib.request.urlopen(f"{api.endpoint}/api/jobs/hardware").read())
    assert all(set(entry) == set(cpu_basic) for entry in raw)
    a10g = next(entry for entry in raw if entry["name"] == "a10g-small")
    assert a10g["unitLabel"] == "minute" and a10g["unitCostMicroUSD"] == round(a10g["unitCostUSD"] * 1e6)
    assert {entry["name"] for entry in raw} >= {"cpu-basic", "a10g-small", "a100-large"}


def test_a_job_answer_has_every_field_of_the_recorded_one_with_the_same_types(api, hf_standin):
    recorded_job = recorded("job_info.json")
    job = api.run_job(image="python:3.12", command=["python", "-c", "print('Hello from the cloud!')"])
    request = urllib.request.Request(
        f"{api.endpoint}/api/jobs/{USER}/{job.id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    raw = json.loads(urllib.request.urlopen(request).read())
    for key, value in recorded_job.items():
        assert key in raw, key
        if value is not None:
            assert type(raw[key]) is type(value), key
    # (labels differ: this client adds a "name" label to every run_job)
    same = ("dockerImage", "spaceId", "command", "arguments", "environment", "secrets", "flavor")
    assert {k: raw[k] for k in same} == {k: recorded_job[k] for k in same}
    for part in ("owner", "initiator", "status", "durations"):
        assert set(raw[part]) == set(recorded_job[part]), part
    assert len(raw["owner"]["id"]) == len(recorded_job["owner"]["id"]) and len(raw["id"]) == len(recorded_job["id"])
    assert raw["createdAt"].endswith("Z") and len(raw["createdAt"]) == len(recorded_job["createdAt"])
