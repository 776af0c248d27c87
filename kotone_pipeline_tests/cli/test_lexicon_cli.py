"""``kotone lexicon propose|show|accept``: propose saves without applying; accept applies named entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kotone_pipeline.cli import app
from kotone_pipeline.domain.data.jsonl import write_jsonl
from kotone_pipeline.services.lexicon_store import LexiconStore
from kotone_pipeline_tests.domain.requests.test_lexicon_patch import _people_rows

runner = CliRunner()


def test_propose_then_accept_named_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOTONE_HOME", str(tmp_path / "home"))
    people = tmp_path / "people.jsonl"
    write_jsonl(people, _people_rows())
    proposed = runner.invoke(app, ["lexicon", "propose", "c1", "--people", str(people)])
    assert proposed.exit_code == 0, proposed.output
    store = LexiconStore(tmp_path / "home")
    version_before = store.current()[1]
    assert store.accepted() == [] and store.load_patch("c1").entries

    refused = runner.invoke(app, ["lexicon", "accept", "c1", "--entries", "add:nope"])
    assert refused.exit_code != 0 and "unknown patch entr" in refused.output

    (zorbly,) = [e.id for e in store.load_patch("c1").entries if e.phrase == "zorbly"]
    accepted = runner.invoke(app, ["lexicon", "accept", "c1", "--entries", zorbly, "--json"])
    assert accepted.exit_code == 0, accepted.output
    doc = json.loads(accepted.output)
    assert doc["accepted"] == [zorbly] and doc["lexicon_version"] != version_before
    assert [a.entry.id for a in store.accepted()] == [zorbly]
