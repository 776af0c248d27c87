"""LoraPredictor without the heavy packages: adapter resolution, batching, parsing, the missing-extra error.

The real model path (base model + saved adapter) runs in the training smoke test.
"""

from __future__ import annotations

import sys

import pytest

from kotone_pipeline.domain.data.schemas import Vector
from kotone_pipeline.domain.model.predictor import PredictInput
from kotone_pipeline.services.lora_predictor import LoraPredictor, TrainExtraMissingError
from kotone_pipeline.training import train_lora as script

GOOD = '{"energy":1,"warmth":2,"brightness":3,"acousticness":4,"complexity":5,"nostalgia":6}'


@pytest.fixture
def adapter_dir(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "adapter_config.json").write_text("{}")
    return run_dir


class ScriptedPredictor(LoraPredictor):
    """Answers from a script instead of a model; records the batches it was asked for."""

    def __init__(self, answers, **kwargs):
        super().__init__(**kwargs)
        self.answers = list(answers)
        self.batches = []

    def _generate(self, items):
        self.batches.append(list(items))
        return [self.answers.pop(0) for _ in items]


def test_local_run_dir_resolves_to_its_model_folder(adapter_dir):
    predictor = LoraPredictor(adapter_dir)

    assert predictor.adapter == str(adapter_dir / "model")
    assert predictor.revision is None
    assert predictor.model_id == f"lora:{adapter_dir / 'model'}"


def test_local_dir_without_adapter_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no adapter_config.json"):
        LoraPredictor(tmp_path)


def test_hub_adapter_must_be_pinned():
    with pytest.raises(ValueError, match="pin a revision"):
        LoraPredictor("org/kotone-lora")


def test_from_uri_splits_repo_and_revision():
    predictor = LoraPredictor.from_uri("org/kotone-lora@cycle-n1-r2")

    assert (predictor.adapter, predictor.revision) == ("org/kotone-lora", "cycle-n1-r2")
    assert predictor.subfolder == script.MODEL_SUBDIR  # where train_lora.py puts the adapter
    assert predictor.model_id == "lora:org/kotone-lora@cycle-n1-r2"


def test_neither_directory_nor_repo_id_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not an existing directory"):
        LoraPredictor(str(tmp_path / "missing" / "deep" / "path"))


def test_predictions_parse_answers_in_order_and_invalid_ones_become_none(adapter_dir):
    answers = [GOOD, GOOD[:30], "no idea", GOOD.replace(":6", ":60"), f" {GOOD}</s>"]
    predictor = ScriptedPredictor(answers, adapter=adapter_dir, batch_size=2)
    inputs = [PredictInput(f"commission {i}", "request_text" if i % 2 else "rule_prompt") for i in range(5)]

    predictions = predictor.predict(inputs)

    expected = Vector.from_values([1, 2, 3, 4, 5, 6])
    assert [p.vector for p in predictions] == [expected, None, None, None, expected]
    assert [p.raw for p in predictions] == answers
    assert all(p.latency_ms >= 0 for p in predictions)
    assert [len(b) for b in predictor.batches] == [2, 2, 1]
    asked = [item for batch in predictor.batches for item in batch]
    assert asked == [(i.text, i.source_type) for i in inputs]


def test_answer_count_mismatch_is_an_error(adapter_dir):
    class Short(ScriptedPredictor):
        def _generate(self, items):
            return [GOOD]

    with pytest.raises(RuntimeError, match="1 answers for 2 inputs"):
        Short([], adapter=adapter_dir, batch_size=2).predict([PredictInput("a", "request_text")] * 2)


def test_missing_train_extra_gives_a_clear_error(adapter_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` raise ImportError

    with pytest.raises(TrainExtraMissingError, match=r"train extra.*peft"):
        LoraPredictor(adapter_dir).load()


def test_invalid_settings_are_rejected(adapter_dir):
    with pytest.raises(ValueError, match="expected >= 1"):
        LoraPredictor(adapter_dir, batch_size=0)
