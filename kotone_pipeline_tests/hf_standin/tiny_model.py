"""A tiny random model repo of the default base model's family (Mistral3ForConditionalGeneration: a
Mistral text decoder with a Pixtral vision tower), for the stand-in Hub.

Built from a config in a few seconds (a few MB): a byte-level BPE tokenizer trained on the prompts it
will see, the chat template in Mistral's format (``[SYSTEM_PROMPT]..[/SYSTEM_PROMPT][INST]..[/INST]``),
and random weights. It cannot learn the task in a few steps; it exercises every phase of the real
training script (download, load, LoRA on the language model only, generation, upload).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kotone_pipeline_tests.hf_standin.server import HubStandIn

# Mistral's instruct format (the v7 "tekken" templates of Mistral Small 3 / Ministral 3, reduced to text).
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ m['content'] }}[/SYSTEM_PROMPT]"
    "{% elif m['role'] == 'user' %}[INST]{{ m['content'] }}[/INST]"
    "{% elif m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% endif %}{% endfor %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]"]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 600, chat_template: str | None = MISTRAL_CHAT_TEMPLATE):
    """A fast byte-level BPE tokenizer trained on ``corpus`` (every text it will have to encode)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(list(corpus), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_model_dir(dest: Path, corpus: Iterable[str], *, with_tokenizer: bool = True, seed: int = 0) -> Path:
    """Write config, weights (safetensors) and, unless told not to, the tokenizer to ``dest``."""
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    tokenizer = build_tokenizer(corpus)
    torch.manual_seed(seed)
    text = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sliding_window=None,
    )
    vision = PixtralVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        head_dim=8,
        image_size=56,
        patch_size=14,
    )
    config = Mistral3Config(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        tie_word_embeddings=False,
    )
    model = Mistral3ForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(dest)
    if with_tokenizer:
        tokenizer.save_pretrained(dest)
    return dest


def model_repo_files(corpus: Iterable[str], *, with_tokenizer: bool = True) -> dict[str, bytes]:
    """The repo's files (path -> bytes), to publish on the stand-in Hub."""
    with tempfile.TemporaryDirectory(prefix="kotone-tiny-model-") as tmp:
        root = build_model_dir(Path(tmp), corpus, with_tokenizer=with_tokenizer)
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def prompt_corpus(rows: Iterable[object]) -> list[str]:
    """Every text the script will encode for these Pairs (prompts and answers): the tokenizer's training data."""
    from kotone_pipeline.training import train_lora as script

    corpus = [script.SYSTEM_PROMPT]
    for pair in rows:
        corpus += [script.build_prompt(pair.text, pair.source_type), script.format_completion(pair.vector)]  # type: ignore[attr-defined]
    return corpus


def publish_base_model(hub: HubStandIn, corpus: Iterable[str], repo_id: str | None = None, **kwargs: bool) -> str:
    """Publish the tiny model as a public model repo (default: the script's default base model id)."""
    from kotone_pipeline.training import train_lora as script

    repo_id = repo_id or script.DEFAULT_BASE_MODEL
    hub.put_files("model", repo_id, model_repo_files(corpus, **kwargs), title="tiny random Mistral3 model")
    return repo_id
