"""Snapshot of the asset graph: keys, deps, partitions, groups, kinds, descriptions, checks (and which block),
each job's asset selection, and the sensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.definitions import defs
from kotone_pipeline.orchestration.resources import LoopSettings, resources_from_env
from kotone_pipeline.settings import Settings, default

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot(definitions: dg.Definitions) -> dict:
    graph = definitions.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": node.partitions_def.name
            if isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
            else None,
            "group": node.group_name,
            "materializable": node.is_materializable,
            "kinds": sorted(node.kinds),
            "description": node.description,
        }
    checks = sorted(
        f"{ck.asset_key.to_user_string()}:{ck.name}" + (" (blocking)" if graph.get(ck).blocking else "")
        for ck in graph.asset_check_keys
    )
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.selection.resolve(graph))  # type: ignore[union-attr]
        for job in definitions.jobs or []
    }
    sensors = sorted(s.name for s in definitions.sensors or [])
    return {"assets": assets, "checks": checks, "jobs": jobs, "sensors": sensors}


def test_asset_graph_matches_snapshot() -> None:
    current = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), "no committed snapshot; create it with UPDATE_SNAPSHOTS=1 and review it"
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "asset graph changed; review and rerun with UPDATE_SNAPSHOTS=1"


def test_lineage_runs_from_eval_to_promotion() -> None:
    assets = graph_snapshot(defs)["assets"]
    chain = [
        "eval_summary",
        "hard_dims",
        "augmented_pairs",
        "split_dataset",
        "training_submission",
        "trained_models",
        "validation_snapshot",
        "promotion_decision",
    ]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert upstream in assets[downstream]["deps"], f"{downstream} should depend on {upstream}"
    for name in chain:
        assert assets[name]["partitions"] == "cycles"
    assert assets["trained_models"]["materializable"] is False  # reported by the sensor


def test_definitions_validate_and_every_loop_knob_is_one_setting() -> None:
    dg.Definitions.validate_loadable(defs)
    # Each LoopConfig field is a Settings field (its variable, default and checks are declared there once).
    assert set(LoopConfig.model_fields) <= set(Settings.model_fields)
    for name, field in LoopConfig.model_fields.items():
        if name != "trainer":  # Settings leaves it unset: the job backend picks (resolved_trainer)
            assert field.get_default(call_default_factory=True) == default(name), name
    changed = {"KOTONE_HARD_DIM_K": "3", "KOTONE_FORCED_HARD_DIMS": "energy,warmth", "KOTONE_ALLOW_STALE": "on"}
    config = resources_from_env(changed)["loop_settings"].config()
    assert (config.hard_dim_k, config.forced_hard_dims, config.allow_stale) == (3, ["energy", "warmth"], True)
    assert LoopSettings.of(config).config() == config


def test_resources_from_env_switch_backends_and_keep_tokens_out_of_config() -> None:
    resources = resources_from_env(
        {
            "KOTONE_JOB_BACKEND": "hf",
            "KOTONE_DATASET_STORE": "hf",
            "HF_TOKEN": "hf_secret_value",
            "KOTONE_CAMPAIGN_SIZE": "3",
        }
    )
    assert resources["job_backend"].kind == "hf"
    assert resources["dataset_store"].kind == "hf"
    assert resources["loop_settings"].config().campaign_size == 3
    # The token is an EnvVar reference, resolved at run time, never a literal in the config.
    assert "hf_secret_value" not in repr(resources["job_backend"].hf_token)


def test_bad_settings_name_the_variable() -> None:
    import pytest

    with pytest.raises(ValueError, match="KOTONE_CAMPAIGN_SIZE"):
        resources_from_env({"KOTONE_CAMPAIGN_SIZE": "lots"})
    with pytest.raises(ValueError, match="KOTONE_HF_BUDGET_USD"):
        resources_from_env({"KOTONE_HF_BUDGET_USD": "ten dollars"})
    with pytest.raises(ValueError, match="KOTONE_NIGHTLY_CRON"):
        resources_from_env({"KOTONE_NIGHTLY_CRON": "every night"})
    with pytest.raises(ValueError, match="more than the local trainer's 9 variants"):
        resources_from_env({"KOTONE_CAMPAIGN_SIZE": "12"})


def launchpad_yaml(definitions: dg.Definitions, job_name: str) -> str:
    """What the UI's launchpad pre-fills for a job: the same function its GraphQL ``rootDefaultYaml`` calls."""
    from dagster._core.snap.snap_to_yaml import default_values_yaml_from_type_snap

    snapshot = definitions.get_repository_def().get_job(job_name).get_job_snapshot()
    schema = snapshot.config_schema_snapshot
    root = schema.get_config_snap(snapshot.mode_def_snaps[0].root_config_key)
    return default_values_yaml_from_type_snap(schema, root)


def test_the_launchpad_shows_only_the_config_a_person_edits(tmp_path: Path) -> None:
    from kotone_pipeline.definitions import build_definitions

    env = {"KOTONE_HOME": str(tmp_path / "a machine path"), "KOTONE_MIN_IMPROVEMENT": "0.25", "HF_TOKEN": "hf_x"}
    definitions = build_definitions(env)
    for job in ("base_job", "report_job"):
        assert launchpad_yaml(definitions, job).strip() == "{}", job
    # cycle_job: only the lexicon patch entries a person accepts from the UI (empty: propose only).
    cycle = launchpad_yaml(definitions, "cycle_job")
    assert cycle.split() == ["ops:", "lexicon_patch:", "config:", "accept:", "''"]
    validation = launchpad_yaml(definitions, "validation_job")
    assert validation.split() == ["ops:", "promotion_decision:", "config:", "force_reason:", "''"]
    assert "machine path" not in validation and "0.25" not in validation and "min_improvement" not in validation


def test_resources_bound_from_the_environment_keep_their_settings_and_read_secrets_when_used(
    tmp_path: Path, monkeypatch
) -> None:
    from kotone_pipeline.definitions import build_definitions
    from kotone_pipeline.orchestration.resources import configured_resource

    monkeypatch.setenv("HF_TOKEN", "hf_read_at_use")
    env = {"KOTONE_HOME": str(tmp_path), "KOTONE_MIN_IMPROVEMENT": "0.25", "HF_TOKEN": "hf_read_at_use"}
    env |= {"KOTONE_JOB_BACKEND": "hf", "KOTONE_DATASET_STORE": "hf", "KOTONE_HF_DATASET_REPO": "org/data"}
    env |= {"KOTONE_HF_NAMESPACE": "org"}
    resources = {key: configured_resource(r) for key, r in (build_definitions(env).resources or {}).items()}
    assert resources["loop_settings"].config().min_improvement == 0.25
    assert resources["kotone_home"].artifacts().home == tmp_path.resolve()
    backend = resources["job_backend"].get_backend()
    assert backend._token == "hf_read_at_use"  # type: ignore[attr-defined] - not the variable's name
