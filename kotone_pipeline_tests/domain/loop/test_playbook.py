"""The playbook for a hand-written six-row evaluation; every expected number is worked out below.

Signed errors (prediction - target) per row, dims in DIMS order
(energy, warmth, brightness, acousticness, complexity, nostalgia):

    p_0001 request_text          -3  0  0  0  0  0   row MAE 3/6
    p_0002 request_text          +2  0  0  0  0 -3   row MAE 5/6
    p_0003 rule_prompt st_a in_a mo_a gi_a   -2  0  0  0  0 -3   row MAE 5/6
    p_0004 rule_prompt st_a in_b mo_a gi_b    0  0  0 +2  0  0   row MAE 2/6
    p_0005 rule_prompt st_b in_b mo_b gi_b    0  0  0  0  0  0   row MAE 0
    p_0006 request_text (invalid -> neutral) -4 +3  0  0  0  0   row MAE 7/6
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.jsonl import read_models
from kotone_pipeline.domain.data.schemas import EvalRow, HardDimReport
from kotone_pipeline.domain.loop.playbook import Playbook, build_playbook, playbook_files

FIXTURE = Path(__file__).parents[2] / "fixtures" / "playbook_eval_rows.jsonl"

NEXT_STEPS = {
    "focus_dims": ["energy", "nostalgia"],
    "rows_to_add": 12,
    "replay_rows": 2,
    "hparam_patch": {"epochs": 3},
    "hparam_reasons": ["R3: hard dims present -> epochs >= 2"],
}


@pytest.fixture(scope="module")
def rows() -> list[EvalRow]:
    return read_models(FIXTURE, EvalRow).rows


@pytest.fixture(scope="module")
def hard_dims() -> HardDimReport:
    return HardDimReport(
        focus=["energy", "nostalgia"],
        k=2,
        by_dim={"energy": 11 / 6, "nostalgia": 1.0},
        source="eval_rows",
        top_failures=[],
        eval_model_id="local-ridge-c0",
    )


@pytest.fixture(scope="module")
def playbook(rows: list[EvalRow], hard_dims: HardDimReport) -> Playbook:
    return build_playbook("cycle-3", rows, hard_dims, NEXT_STEPS)


def test_worst_dims_rank_per_dim_mae(playbook: Playbook) -> None:
    # energy |−3|+2+2+4 = 11 -> 11/6; nostalgia 3+3 -> 1.0; warmth 3/6; acousticness 2/6; ties in DIMS order
    got = [(d.rank, d.dim, round(d.mae, 4), d.focus) for d in playbook.worst_dims]
    assert got == [
        (1, "energy", 1.8333, True),
        (2, "nostalgia", 1.0, True),
        (3, "warmth", 0.5, False),
        (4, "acousticness", 0.3333, False),
        (5, "brightness", 0.0, False),
        (6, "complexity", 0.0, False),
    ]
    assert playbook.vector_mae == pytest.approx(22 / 36)
    assert playbook.rows == 6 and playbook.model_id == "local-ridge-c0"


def test_clusters_by_source_type(playbook: Playbook) -> None:
    by_key = {c.key: c for c in playbook.by_source_type}
    request = by_key["request_text"]
    # rows 1, 2, 6: row MAEs 3/6, 5/6, 7/6 -> mean 15/18; all >= 0.5; one invalid; energy (3+2+4)/3 = 3
    assert (request.rows, request.failing, request.invalid) == (3, 3, 1)
    assert request.mean_row_mae == pytest.approx(15 / 18)
    assert (request.worst_dim, request.worst_dim_mae) == ("energy", pytest.approx(3.0))
    rule = by_key["rule_prompt"]
    # rows 3, 4, 5: 5/6, 2/6, 0 -> mean 7/18; only row 3 >= 0.5; nostalgia 3/3 beats energy 2/3
    assert (rule.rows, rule.failing, rule.invalid) == (3, 1, 0)
    assert rule.mean_row_mae == pytest.approx(7 / 18)
    assert (rule.worst_dim, rule.worst_dim_mae) == ("nostalgia", pytest.approx(1.0))


def test_clusters_by_catalog_part_keep_parts_seen_twice(playbook: Playbook) -> None:
    # st_a and mo_a: rows 3+4 -> (5/6 + 2/6)/2 = 7/12; in_b and gi_b: rows 4+5 -> (2/6 + 0)/2 = 1/6.
    # Equal means are ordered by slot (style, instrument, mood, gimmick).
    got = [(c.key, c.rows, c.failing, round(c.mean_row_mae, 4), c.worst_dim) for c in playbook.by_part]
    assert got == [
        ("style:st_a", 2, 1, 0.5833, "nostalgia"),
        ("mood:mo_a", 2, 1, 0.5833, "nostalgia"),
        ("instrument:in_b", 2, 0, 0.1667, "acousticness"),
        ("gimmick:gi_b", 2, 0, 0.1667, "acousticness"),
    ]


def test_min_part_rows_one_shows_single_row_parts(rows: list[EvalRow], hard_dims: HardDimReport) -> None:
    playbook = build_playbook("cycle-3", rows, hard_dims, NEXT_STEPS, min_part_rows=1)
    # in_a and gi_a hold only row 3 (5/6); st_b and mo_b only row 5 (0)
    assert [(c.key, round(c.mean_row_mae, 4)) for c in playbook.by_part] == [
        ("instrument:in_a", 0.8333),
        ("gimmick:gi_a", 0.8333),
        ("style:st_a", 0.5833),
        ("mood:mo_a", 0.5833),
        ("instrument:in_b", 0.1667),
        ("gimmick:gi_b", 0.1667),
        ("style:st_b", 0.0),
        ("mood:mo_b", 0.0),
    ]


def test_direction_of_errors(playbook: Playbook) -> None:
    got = {d.dim: (d.over, d.under, d.exact, round(d.mean_signed_error, 4)) for d in playbook.by_direction}
    assert got == {
        "energy": (1, 3, 2, round(-7 / 6, 4)),  # -3 +2 -2 0 0 -4
        "warmth": (1, 0, 5, 0.5),  # +3 from the invalid (neutral) row
        "brightness": (0, 0, 6, 0.0),
        "acousticness": (1, 0, 5, round(2 / 6, 4)),
        "complexity": (0, 0, 6, 0.0),
        "nostalgia": (0, 2, 4, -1.0),
    }


def test_examples_are_the_failing_rows_worst_first(playbook: Playbook) -> None:
    # p_0005 has no error and is no example; p_0002 and p_0003 tie on row MAE and on focus error (5),
    # so the id decides.
    assert [e.pair_id for e in playbook.examples] == ["p_0006", "p_0002", "p_0003", "p_0001", "p_0004"]
    first = playbook.examples[0]
    assert first.valid is False
    assert first.target["energy"] == 9 and first.prediction["energy"] == 5
    assert first.text == "Frantic, icy music for a server room"


def test_markdown_holds_tables_examples_and_next_steps(playbook: Playbook) -> None:
    md = playbook.markdown
    assert md.startswith("# Failure playbook: cycle `cycle-3`\n")
    assert "6 rows, vector MAE 0.611" in md
    assert "| 1 | energy | 1.833 | yes |" in md
    assert "| request_text | 3 | 3 | 1 | 0.833 | energy (3.000) |" in md
    assert "| style:st_a | 2 | 1 | 0 | 0.583 | nostalgia (1.500) |" in md
    assert "| energy | 1 | 3 | 2 | -1.167 |" in md
    assert "### 1. `p_0006` (request_text), row MAE 1.167 (invalid output, scored as neutral)" in md
    assert "| target | 9 | 2 | 5 | 5 | 5 | 5 |" in md
    assert "> A hushed | old-time lullaby" in md  # quoted text keeps its pipe outside tables
    assert "> instrument: Harp (in_a)" in md  # a multi-line rule prompt stays one quoted block
    assert "- Focus dims: energy, nostalgia" in md
    assert "- Rows to add: 12 generated + 2 replay" in md
    assert "- Hyper-parameter patch: `epochs` = 3" in md
    assert "  - R3: hard dims present -> epochs >= 2" in md


def test_unknown_next_step_key_is_rejected(rows: list[EvalRow], hard_dims: HardDimReport) -> None:
    with pytest.raises(ValueError, match="focus_dim"):
        build_playbook("cycle-3", rows, hard_dims, {"focus_dim": ["energy"]})


def test_empty_evaluation_gives_an_empty_playbook(hard_dims: HardDimReport) -> None:
    playbook = build_playbook("cycle-3", [], hard_dims, {})
    assert playbook.rows == 0 and playbook.examples == [] and playbook.by_part == []
    assert "_none_" in playbook.markdown


def test_playbook_files_are_the_markdown_and_the_fields_as_json(playbook: Playbook) -> None:
    files = playbook_files(playbook, "playbook.md")
    assert sorted(files) == ["playbook.json", "playbook.md"]
    assert files["playbook.md"] == playbook.markdown
    data = json.loads(files["playbook.json"])
    assert "markdown" not in data
    assert data["worst_dims"][0]["dim"] == "energy"
    assert data["next_steps"]["rows_to_add"] == 12
