"""The champion's second part: a correction fitted only on people's rows, zero when there are too few."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import LocalHyperParams, Pair, Vector
from kotone_pipeline.domain.model.correction import PeopleCorrection, split_people_rows
from kotone_pipeline.domain.model.local_model import META_FILE, LocalTextModel
from kotone_pipeline.domain.model.predictor import PredictInput

# Teacher rows state each dim with a cue word; people also write "zorbly", a word neither the lexicon nor
# the teacher knows, and to them it means energy +4 and nostalgia -4 (as a lexicon entry would): a rule
# only their labels carry.
_CUES = {"energy": ("still", "driving"), "warmth": ("cold", "cosy"), "brightness": ("dark", "sparkling"),
         "acousticness": ("synthetic", "wooden"), "complexity": ("bare", "layered"),
         "nostalgia": ("futuristic", "retro")}  # fmt: skip
_LEVELS = (2, 5, 8)
PEOPLE_WORD = "zorbly"


def _rows(n: int, seed: int, origin: str = "teacher", writers: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        values = [rng.choice(_LEVELS) for _ in DIMS]
        words = [_CUES[d][0 if v == 2 else 1] for d, v in zip(DIMS, values, strict=True) if v != 5]
        if origin != "teacher" and i % 2 == 0:
            words.insert(rng.randrange(len(words) + 1), PEOPLE_WORD)
            energy, nostalgia = DIMS.index("energy"), DIMS.index("nostalgia")
            values[energy], values[nostalgia] = min(10, values[energy] + 4), max(0, values[nostalgia] - 4)
        group = f"w{seed}-{i % writers}" if writers else f"g{seed}-{i}"
        text = f"track {seed}-{i}: " + " ".join(words)
        rows.append(Pair(group_id=group, source_type="request_text", text=text, vector=Vector.from_values(values),
                         origin=origin))  # fmt: skip
    return rows


def _predict(model: LocalTextModel, pairs: list[Pair]) -> np.ndarray:
    return model.predict_values([PredictInput(p.text, p.source_type) for p in pairs])


def _mae(model: LocalTextModel, pairs: list[Pair]) -> float:
    return float(np.abs(_predict(model, pairs) - np.array([p.vector.values() for p in pairs])).mean())


@pytest.fixture(scope="module")
def teacher() -> list[Pair]:
    return _rows(300, seed=1)


@pytest.fixture(scope="module")
def people() -> list[Pair]:
    # 60 labelled requests from 12 writers (5 each): grouped CV never splits a writer across folds.
    return _rows(60, seed=2, origin="human", writers=12)


@pytest.fixture(scope="module")
def two_part(teacher: list[Pair], people: list[Pair]) -> LocalTextModel:
    return LocalTextModel(model_id="two-part").fit(teacher + people)


def test_too_few_people_rows_leave_todays_model(teacher: list[Pair], people: list[Pair]) -> None:
    few = people[:12]  # below the default minimum of 20
    model = LocalTextModel().fit(teacher + few)
    # Today's learner ignores origin: the same rows labelled "teacher" are what it trained on.
    today = LocalTextModel().fit(teacher + [p.model_copy(update={"origin": "teacher"}) for p in few])
    probe = _rows(40, seed=3, origin="human")
    assert model._corrections == {}
    assert np.array_equal(_predict(model, probe), _predict(today, probe))
    parts = model.meta["parts"]
    assert parts["people_rows"]["rows"] == 12 and parts["base"]["rows"] == 312  # they trained the first part
    assert parts["correction"] == {}


def test_min_people_rows_switches_the_correction_off(teacher: list[Pair], people: list[Pair]) -> None:
    model = LocalTextModel().fit(teacher + people, LocalHyperParams(min_people_rows=61))
    today = LocalTextModel().fit(teacher + [p.model_copy(update={"origin": "teacher"}) for p in people])
    probe = _rows(40, seed=3, origin="human")
    assert model._corrections == {}
    assert np.array_equal(_predict(model, probe), _predict(today, probe))


def test_below_the_minimum_the_correction_is_zero() -> None:
    rows = _rows(19, seed=4, origin="human", writers=5)
    base_raw = np.full((19, len(DIMS)), 5.0)
    correction = PeopleCorrection(min_people_rows=20).fit(rows, base_raw, None)
    assert not correction.active
    assert "at least 20" in correction.meta["reason"]
    assert correction.apply([p.text for p in rows], base_raw, None) is base_raw


def test_people_rows_train_only_the_correction(teacher: list[Pair], people: list[Pair]) -> None:
    chosen, base_rows = split_people_rows(teacher + people, min_people_rows=20)
    assert chosen == people
    assert base_rows == teacher
    # A source type with people rows only has no first part to correct: they stay ordinary rows.
    prompts = [p.model_copy(update={"source_type": "rule_prompt"}) for p in people]
    chosen, base_rows = split_people_rows(teacher + prompts, min_people_rows=20)
    assert chosen == [] and len(base_rows) == len(teacher) + len(prompts)


def test_correction_learns_a_rule_the_lexicon_lacks(
    teacher: list[Pair], two_part: LocalTextModel, people: list[Pair]
) -> None:
    fitted = two_part.meta["parts"]["correction"]["request_text"]
    assert fitted["reason"] == "fitted"
    assert fitted["groups"] == 12 and fitted["folds"] == 5
    # Grouped CV over the people rows: the corrected model errs less than the first part alone.
    assert fitted["cv_mae"] < fitted["cv_base_mae"] - 0.1
    assert fitted["per_dim"]["energy"]["blend"] > 0 and fitted["per_dim"]["nostalgia"]["blend"] > 0
    # On new requests by new writers, the first part alone (the teacher's reading) misses the rule.
    fresh = _rows(60, seed=5, origin="human", writers=12)
    assert _mae(two_part, fresh) < 0.6 * _mae(LocalTextModel().fit(teacher), fresh)


def test_model_json_says_which_rows_trained_which_part_and_round_trips(
    two_part: LocalTextModel, people: list[Pair], tmp_path
) -> None:
    two_part.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    parts = meta["parts"]
    assert parts["base"]["rows_by_origin"] == {"teacher": 300}
    assert parts["correction"]["request_text"]["rows_by_origin"] == {"human": 60}
    assert parts["correction"]["request_text"]["data_hash"].startswith("sha256:")
    assert meta["train_rows"] == 360 and meta["hparams"]["min_people_rows"] == 20
    loaded = LocalTextModel.load(tmp_path / "model")
    probe = _rows(30, seed=6, origin="human")
    assert np.array_equal(_predict(loaded, probe), _predict(two_part, probe))
