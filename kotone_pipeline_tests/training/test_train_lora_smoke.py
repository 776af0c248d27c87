"""CPU smoke test of the LoRA training script on a tiny random model (no download, no network).

Runs ``train_lora.py`` as a subprocess for two optimizer steps, checks every output, then loads the
saved adapter with LoraPredictor. Needs the train extra; skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.schemas import Pair
from kotone_pipeline.domain.model.predictor import PredictInput
from kotone_pipeline.services.lora_predictor import LoraPredictor
from kotone_pipeline.training import TRAIN_SCRIPT
from kotone_pipeline.training import train_lora as script

# find_spec, not importorskip: collecting (or deselecting) this module must not pay for importing torch.
_NEEDED = ("torch", "transformers", "trl", "peft", "tokenizers")
_MISSING = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.train,
    pytest.mark.slow,
    pytest.mark.skipif(bool(_MISSING), reason=f"train extra not installed (missing {', '.join(_MISSING)})"),
]

# A dozen pairs: six groups, each a request text and a rule prompt sharing one vector.
GROUPS = [
    ("A hushed, warm tune for a lantern-lit alley, as a quiet loop.", "70s Folk", (2, 9, 3, 9, 3, 8)),
    ("Something blazing and neon-bright for a rooftop race cue.", "2010s EDM", (10, 2, 9, 1, 7, 1)),
    ("Gentle sparkling background for a sunny garden cafe.", "2000s Pop", (5, 7, 8, 5, 3, 6)),
    ("A dark, cold and sparse drone for an abandoned station.", "90s Hip-Hop", (1, 1, 1, 2, 1, 3)),
    ("Busy, layered festival parade with brass, full of old charm.", "60s Parade Jazz", (8, 6, 6, 8, 9, 8)),
    ("Calm acoustic strumming to read by on a rainy evening.", "70s Folk", (3, 8, 4, 9, 4, 7)),
]
SPLITS = {"train": range(0, 4), "validation": range(4, 5), "test": range(0, 0), "holdout": range(5, 6)}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYS]{{ m['content'] }}[/SYS]"
    "{% elif m['role'] == 'user' %}[INST]{{ m['content'] }}[/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
MAX_NEW_TOKENS = 12  # a random model never stops early; keep its babble short


def _group_pairs(index: int) -> list[Pair]:
    request, style, values = GROUPS[index]
    vector = dict(zip(DIMS, values, strict=True))
    rule = f"Compose from these parts:\nstyle: {style}\ninstrument: Cello\nmood: Calm\ngimmick: Rain {index}"
    return [
        Pair(group_id=f"g{index}", source_type="request_text", text=request, vector=vector),
        Pair(group_id=f"g{index}", source_type="rule_prompt", text=rule, vector=vector),
    ]


def _write_dataset(root: Path) -> dict[str, list[Pair]]:
    root.mkdir(parents=True)
    splits = {split: [p for i in indices for p in _group_pairs(i)] for split, indices in SPLITS.items()}
    for split, pairs in splits.items():
        (root / f"{split}.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in pairs))
    return splits


def _build_tokenizer(texts: list[str], dest: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(dest)
    return fast


def _build_llama(tokenizer, dest: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(dest)


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-smoke")
    splits = _write_dataset(root / "dataset")
    pairs = [p for rows in splits.values() for p in rows]
    corpus = [script.SYSTEM_PROMPT]
    for pair in pairs:
        corpus += [script.build_prompt(pair.text, pair.source_type), script.format_completion(pair.vector)]
    tokenizer = _build_tokenizer(corpus, root / "tokenizer")
    _build_llama(tokenizer, root / "model")
    return {"root": root, "splits": splits, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def trained(fixture_dirs):
    root = fixture_dirs["root"]
    out = root / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "HF_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        f"--dataset-dir={root / 'dataset'}",
        f"--model-dir={root / 'model'}",
        f"--tokenizer-dir={root / 'tokenizer'}",
        "--base-model=tiny-random-llama",
        '--hparams={"grad_accum": 1, "learning_rate": 0.001}',
        "--max-steps=2",
        f"--max-new-tokens={MAX_NEW_TOKENS}",
        f"--output-dir={out}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("split", ["validation", "holdout"])
def test_predictions_cover_the_split_and_parse(trained, fixture_dirs, split):
    records = _read_jsonl(trained / f"predictions_{split}.jsonl")

    assert [r["pair_id"] for r in records] == [p.id for p in fixture_dirs["splits"][split]]
    for record in records:
        assert set(record) == {"pair_id", "raw", "prediction", "latency_ms"}
        assert isinstance(record["raw"], str) and record["latency_ms"] > 0
        prediction = record["prediction"]
        if prediction is not None:
            assert list(prediction) == list(DIMS)
            assert all(type(v) is int and 0 <= v <= 10 for v in prediction.values())
        assert prediction == script.parse_completion(record["raw"])


def test_run_record_and_adapter(trained):
    run = json.loads((trained / "run.json").read_text())

    assert run["status"] == "completed"
    assert run["steps"] == 2
    assert run["max_steps"] == 2
    assert run["rows"] == {"train": 8, "validation": 2, "test": 0, "holdout": 2}
    assert run["hparams"]["grad_accum"] == 1 and run["hparams"]["lora_r"] == 16
    assert run["prompt_version"] == script.PROMPT_VERSION and run["prompt_format"] == "chat"
    assert run["base_model"] == "tiny-random-llama"
    assert run["train_loss"] > 0 and run["trainable_params"] > 0
    assert {"train_s", "predict_validation_s", "predict_holdout_s", "total_s"} <= set(run["timings_s"])
    adapter = json.loads((trained / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["lora_alpha"] == 32
    assert (trained / "model" / "adapter_model.safetensors").is_file()


def test_lora_predictor_reproduces_the_scripts_predictions(trained, fixture_dirs):
    pairs = fixture_dirs["splits"]["validation"]
    predictor = LoraPredictor(trained, max_new_tokens=MAX_NEW_TOKENS)

    predictions = predictor.predict([PredictInput(p.text, p.source_type) for p in pairs])

    assert len(predictions) == len(pairs)
    assert all(p.latency_ms > 0 for p in predictions)
    # Same adapter, same prompt path, greedy decoding, same batch: the same answers as the job wrote.
    written = _read_jsonl(trained / "predictions_validation.jsonl")
    assert [p.raw for p in predictions] == [r["raw"] for r in written]
    parsed = [p.vector.as_dict() if p.vector else None for p in predictions]
    assert parsed == [r["prediction"] for r in written]


def test_loss_covers_only_the_completion_and_the_prompt_matches_prediction(fixture_dirs, tmp_path):
    """The training prompt tokens are exactly what prediction feeds the model; only the answer is learned."""
    root = fixture_dirs["root"]
    tokenizer = script.load_tokenizer(str(root / "tokenizer"))
    model = script.load_base_model(str(root / "model"), for_training=True)
    rows = [json.loads(p.model_dump_json()) for p in fixture_dirs["splits"]["train"][:2]]

    trainer = script.build_trainer(model, tokenizer, rows, script.DEFAULT_HPARAMS, tmp_path, max_steps=1)

    for row, example in zip(rows, trainer.train_dataset, strict=True):
        prompt_ids = script.encode_prompt(tokenizer, row["text"], row["source_type"])
        ids, labels = example["input_ids"], example["labels"]
        assert ids[: len(prompt_ids)] == prompt_ids
        assert labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
        assert labels[len(prompt_ids) :] == ids[len(prompt_ids) :]
        learned = tokenizer.decode(ids[len(prompt_ids) :])
        assert learned == script.format_completion(row["vector"]) + tokenizer.eos_token


def test_multimodal_base_gets_lora_on_the_language_model_only(tmp_path):
    """Ministral 3 is Mistral3ForConditionalGeneration: loaded through the fallback, vision tower frozen."""
    from peft import LoraConfig, get_peft_model
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralVisionConfig,
    )

    text = MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16,
    )  # fmt: skip
    vision = PixtralVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=16, head_dim=16,
    )  # fmt: skip
    config = Mistral3Config(text_config=text, vision_config=vision, image_token_index=5, spatial_merge_size=1)
    Mistral3ForConditionalGeneration(config).save_pretrained(tmp_path / "m3")

    model = script.load_base_model(str(tmp_path / "m3"), for_training=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=script.LORA_TARGET_REGEX, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)

    adapted = [name for name, _ in peft_model.named_modules() if name.endswith(".lora_A")]
    assert type(model).__name__ == "Mistral3ForConditionalGeneration"
    assert len(adapted) == 2 * 7  # two layers x (q, k, v, o, gate, up, down)
    assert all(".language_model." in name for name in adapted)


def test_fp8_checkpoint_is_dequantized_for_lora(tmp_path):
    """The default base ships FP8 weights; LoRA needs them in a compute dtype (and this must work on CPU)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    fp8 = dict(weights)
    for name, tensor in weights.items():
        if name.endswith("_proj.weight"):  # block-quantized like a FineGrainedFP8 checkpoint, scale 1
            fp8[name] = tensor.to(torch.float8_e4m3fn)
            fp8[name.removesuffix("weight") + "weight_scale_inv"] = torch.ones((1, 1))
    save_file(fp8, tmp_path / "model.safetensors", metadata={"format": "pt"})
    config_path = tmp_path / "config.json"
    quantization = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    saved = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**saved, "quantization_config": quantization}))

    model = script.load_base_model(str(tmp_path), for_training=True)

    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and q_proj.weight.dtype == torch.float32
    expected = weights["model.layers.0.self_attn.q_proj.weight"].to(torch.float8_e4m3fn).float()
    assert torch.equal(q_proj.weight, expected)
