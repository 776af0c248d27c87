"""`kotone dev` becomes `dagster dev` on a free port, says when it is ready, and warns of nothing a user cannot fix."""

from pathlib import Path

import pytest

from kotone_pipeline_tests.dev_server import READY_LINE, graphql, kotone_dev

QUERY = "{ assetNodes { assetKey { path } } }"


@pytest.mark.timeout(240)
def test_kotone_dev_serves_the_asset_graph(tmp_path: Path) -> None:
    home = tmp_path / "kotone"
    with kotone_dev(home, tmp_path / "dagster_dev.log") as server:
        answer = graphql(server.port, QUERY)
        keys = {"/".join(node["assetKey"]["path"]) for node in answer["data"]["assetNodes"]}
        assert {"eval_summary", "split_dataset", "promotion_decision", "trained_models", "failure_playbook"} <= keys
        assert (home / "dagster" / "dagster.yaml").is_file()
        # exec, not a waiting wrapper: the process we started is `dagster dev` itself.
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert any(part.endswith(b"dagster") for part in cmdline) and b"dev" in cmdline, cmdline
        log = server.log()
    assert f"{READY_LINE}{server.url}" in log
    for unactionable in ("SupersessionWarning", "will not be used to configure Dagster"):
        assert unactionable not in log, log[-3000:]
