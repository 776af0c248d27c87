"""train_lora.py against a real instruct model's tokenizer and chat template: SmolLM2-135M-Instruct (ChatML).

The format check (issue 12 item 4) runs in ``make test``; the learning run (a few LoRA steps on the real
weights, ~1-2 min on 2 CPU cores) only with ``pytest -m learning``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kotone_pipeline.training import TRAIN_SCRIPT
from kotone_pipeline.training import train_lora as script
from kotone_pipeline_tests.training import smollm2
from kotone_pipeline_tests.training.test_train_lora_smoke import _write_dataset

pytestmark = [pytest.mark.train, smollm2.requires_smollm2()]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    dest = tmp_path_factory.mktemp("smollm2-tokenizer")
    smollm2.save_tokenizer(dest)
    return dest


def test_the_scripts_format_check_passes_on_smollm2_and_finds_the_completion_boundary(tokenizer_dir) -> None:
    tokenizer = script.load_base_tokenizer(str(tokenizer_dir))  # the script's own loading path
    script.check_chat_template(tokenizer, "SmolLM2-135M-Instruct")  # raises BadInput when it fails

    text, vector = "Calm acoustic strumming to read by on a rainy evening.", dict.fromkeys(script.DIMS, 4)
    messages = script.build_messages(text, "request_text")
    completion = script.format_completion(vector)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": completion}], tokenize=True, return_dict=True
    )["input_ids"]
    prompt = script.encode_prompt(tokenizer, text, "request_text")
    # The boundary in tokens: the prompt the model sees at prediction time is a prefix of the training
    # example, and what follows it is the answer, then ChatML's end of turn.
    assert list(full[: len(prompt)]) == prompt
    rest = tokenizer.decode(full[len(prompt) :])
    assert rest.startswith(completion) and rest[len(completion) :].strip().startswith("<|im_end|>")
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert script.parse_completion(tokenizer.decode(full[len(prompt) :], skip_special_tokens=True)) == vector


def test_the_format_check_fails_fast_on_smollm2_with_a_template_that_appends_after_the_prompt(tokenizer_dir) -> None:
    tokenizer = script.load_base_tokenizer(str(tokenizer_dir))
    # A template whose generation prompt is not what precedes an assistant turn: no boundary to find.
    tokenizer.chat_template = tokenizer.chat_template.replace(
        "{{ '<|im_start|>assistant\n' }}", "{{ '<|im_start|>assistant\nAnswer: ' }}"
    )
    with pytest.raises(script.BadInput, match="completion boundary cannot be found"):
        script.check_chat_template(tokenizer, "SmolLM2 (edited)")


@pytest.mark.learning
def test_the_script_learns_on_smollm2(tmp_path) -> None:
    splits = _write_dataset(tmp_path / "dataset")
    smollm2.save_tokenizer(tmp_path / "tokenizer")
    smollm2.save_model(tmp_path / "model")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "HF_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        f"--dataset-dir={tmp_path / 'dataset'}",
        f"--model-dir={tmp_path / 'model'}",
        f"--tokenizer-dir={tmp_path / 'tokenizer'}",
        "--base-model=HuggingFaceTB/SmolLM2-135M-Instruct",
        '--hparams={"batch_size": 4, "grad_accum": 1, "learning_rate": 0.001}',
        "--max-steps=10",
        f"--output-dir={out}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [e["loss"] for e in json.loads((out / "metrics.json").read_text())["loss_history"]]
    assert len(losses) == 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, losses  # the answer format and these vectors are learned, not just seen
    for split in ("validation", "holdout"):
        records = [json.loads(line) for line in (out / f"predictions_{split}.jsonl").read_text().splitlines()]
        assert len(records) == len(splits[split])
        assert all(r["prediction"] is not None for r in records), [r["raw"] for r in records]
