import json

import pytest

from kotone_pipeline.domain.data.base_data import (
    EVAL_SETS,
    GenerationError,
    build_base_set,
    build_eval_sets,
    eval_set_path,
    load_eval_set,
    load_generation_params,
    write_eval_sets,
)
from kotone_pipeline.domain.data.jsonl import DataFileError
from kotone_pipeline.domain.loop.quality import dedup_key


@pytest.fixture(scope="module")
def params():
    return load_generation_params()


@pytest.fixture(scope="module")
def base(params):
    return build_base_set(params)


def test_committed_eval_sets_regenerate_byte_for_byte(tmp_path, params):
    written = write_eval_sets(tmp_path, params)
    for name in EVAL_SETS:
        assert written[name].read_bytes() == eval_set_path(name).read_bytes(), (
            f"data/eval/{name}.jsonl is stale: regenerate it with base_data.write_eval_sets()"
        )


def test_committed_parameters_are_sane(params):
    assert params.base.prefix == "base" and params.probe.prefix == "probe" and params.holdout.prefix == "holdout"
    assert 500 <= params.base.n_groups <= 700
    assert params.probe.n_groups >= 150 and params.holdout.n_groups >= 150
    assert len({params.base.seed, params.probe.seed, params.holdout.seed}) == 3


def test_eval_sets_load_strictly_and_have_both_texts_per_group(params):
    for name in EVAL_SETS:
        pairs = load_eval_set(name)
        groups = {p.group_id for p in pairs}
        assert len(groups) >= 150
        assert all(p.group_id.startswith(f"{name}-") for p in pairs)
        assert {p.source_type for p in pairs} == {"request_text", "rule_prompt"}


def test_no_group_or_text_is_shared_between_base_probe_and_holdout(base):
    sets = {"base": base[0], **{name: load_eval_set(name) for name in EVAL_SETS}}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ({p.group_id for p in sets[a]} & {p.group_id for p in sets[b]}), (a, b)
            assert not ({dedup_key(p.text) for p in sets[a]} & {dedup_key(p.text) for p in sets[b]}), (a, b)


def test_base_set_is_whole_and_deterministic(params, base):
    pairs, report = base
    assert report.kept == len(pairs) == report.seen - sum(report.rejected.values())
    assert len({p.group_id for p in pairs}) == params.base.n_groups
    again, _ = build_base_set(params)
    assert [p.model_dump() for p in again] == [p.model_dump() for p in pairs]


def test_eval_sets_do_not_depend_on_the_base_size(params):
    bigger = params.model_copy(update={"base": params.base.model_copy(update={"n_groups": 900})})
    assert build_eval_sets(bigger)["holdout"][0] == build_eval_sets(params)["holdout"][0]


def test_bad_generation_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "generation.json"
    path.write_text(json.dumps({"base": {"seed": 1, "n_groups": 0, "prefix": "base", "pool": "base"}}))
    with pytest.raises(GenerationError, match=r"generation\.json.*n_groups"):
        load_generation_params(path)
    path.write_text("{nope")
    with pytest.raises(GenerationError, match=r"generation\.json:1: invalid JSON"):
        load_generation_params(path)


def test_a_corrupt_eval_file_fails_loudly_naming_the_line(tmp_path):
    good = eval_set_path("probe").read_text(encoding="utf-8").splitlines()
    (tmp_path / "probe.jsonl").write_text("\n".join([good[0], '{"id": "x"}', *good[1:3]]) + "\n")
    with pytest.raises(DataFileError, match=r"probe\.jsonl:2:"):
        load_eval_set("probe", tmp_path)
    with pytest.raises(ValueError, match="unknown eval set"):
        load_eval_set("train")
