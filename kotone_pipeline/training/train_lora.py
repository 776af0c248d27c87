# /// script
# requires-python = ">=3.10"
# dependencies = [
#   "torch==2.13.0",
#   "transformers==5.24.0",
#   "trl==1.16.0",
#   "peft==0.21.2",
#   "accelerate==1.15.0",
#   "datasets>=5,<6",
#   "huggingface_hub>=2,<3",
#   "wandb==0.29.0",
# ]
# ///
"""LoRA SFT of a small instruct LLM on Kotone pairs; then predicts the validation and holdout splits.

Run as a uv script on Hugging Face Jobs (``uv run <pinned resolve URL> ...``) or locally:

    uv run train_lora.py --dataset-repo ORG/NAME --dataset-revision SHA \\
        --output-repo ORG/MODEL --output-revision cycle-ID-RUN --output-dir out

Outputs in ``--output-dir``: ``model/`` (the LoRA adapter and tokenizer), ``metrics.json`` (training
metrics), ``predictions_<split>.jsonl`` for validation, holdout, probe and human (``{"pair_id", "raw",
"prediction", "latency_ms"}`` per pair) and ``run.json``; with ``--output-repo`` they are uploaded to that
model repo on the branch ``--output-revision``. Secrets (HF_TOKEN, WANDB_API_KEY) are read from the
environment only.

Surviving a timeout or a preemption (a paid hour is not lost): every ``--checkpoint-steps`` optimizer steps
the trainer checkpoint is pushed to the branch (``checkpoint/``); the adapter and ``metrics.json`` are pushed
as soon as training ends, each prediction file as soon as it is written. Run again for the same branch,
the script resumes from the last pushed checkpoint, and skips training and every split already uploaded.
Before training, the tokenizer's chat template is checked (it exists, and the answer follows the rendered
prompt): a wrong base model fails in seconds.

The module's top level imports the standard library only: the pipeline imports ``build_prompt``,
``format_completion`` and ``parse_completion`` from here, so training and prediction share one prompt.
Exit codes: 0 done, 2 bad input (one ``error:`` line, no traceback), 1 training or upload failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# --- the one prompt ----------------------------------------------------------------------------------

DIMS: tuple[str, ...] = ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia")
DIM_SCALE: dict[str, tuple[str, str]] = {
    "energy": ("silent, still", "intense, driving"),
    "warmth": ("mechanical, cold", "warm, cosy"),
    "brightness": ("dark", "bright, sparkling"),
    "acousticness": ("electronic", "acoustic"),
    "complexity": ("simple, bare", "complex, layered"),
    "nostalgia": ("futuristic", "nostalgic"),
}
SOURCE_DESCRIPTIONS: dict[str, str] = {
    "request_text": "a customer's free-text request",
    "rule_prompt": "the four catalog parts a player picked, one per slot (style, instrument, mood, gimmick)",
}
_SOURCE_LIST = ", ".join(SOURCE_DESCRIPTIONS)
# Bump whenever build_prompt/build_messages change: run.json records it, so results stay comparable.
PROMPT_VERSION = "kotone-prompt-v1"
# An explicit system message keeps chat templates from inserting their own default one (some carry
# today's date), which would make the prompt differ between training and prediction.
SYSTEM_PROMPT = "You rate music commissions. You answer with one compact JSON object and nothing else."


def build_prompt(text: str, source_type: str) -> str:
    """The user prompt: instruction, the six dims with their 0..10 meaning, then the commission."""
    if source_type not in SOURCE_DESCRIPTIONS:
        raise ValueError(f"source_type: expected one of {_SOURCE_LIST}, got {source_type!r}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text: expected a non-empty string")
    scale = "\n".join(f"- {dim}: 0 = {low}; 10 = {high}" for dim, (low, high) in DIM_SCALE.items())
    keys = ", ".join(DIMS)
    return (
        "Rate this music commission on six hidden music parameters, each an integer from 0 to 10.\n"
        f"{scale}\n"
        f"Reply with only a compact JSON object with the keys {keys}, in this order, and integer values.\n\n"
        f"Commission ({SOURCE_DESCRIPTIONS[source_type]}):\n"
        f"{text.strip()}"
    )


def build_messages(text: str, source_type: str) -> list[dict[str, str]]:
    """The chat form of the prompt, used when the tokenizer has a chat template."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_prompt(text, source_type)},
    ]


def _dim_int(value: Any) -> int | None:
    """An int 0..10 (integral floats accepted, bools rejected), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 0 <= value <= 10 else None


def check_vector(vector: Any) -> dict[str, int]:
    """The six dims as ints in DIMS order; ValueError naming the field otherwise."""
    if hasattr(vector, "as_dict"):  # a kotone Vector
        vector = vector.as_dict()
    if not isinstance(vector, Mapping):
        raise ValueError(f"vector: expected an object with the six dims, got {type(vector).__name__}")
    missing = [d for d in DIMS if d not in vector]
    if missing:
        raise ValueError(f"vector: missing dim(s) {', '.join(missing)}")
    extra = sorted(set(vector) - set(DIMS))
    if extra:
        raise ValueError(f"vector: unknown field(s) {', '.join(map(str, extra))}")
    out = {}
    for dim in DIMS:
        value = _dim_int(vector[dim])
        if value is None:
            raise ValueError(f"vector.{dim}: expected an integer 0..10, got {vector[dim]!r}")
        out[dim] = value
    return out


def format_completion(vector: Any) -> str:
    """The compact JSON completion, dims in DIMS order: ``{"energy":7,...}``."""
    return json.dumps(check_vector(vector), separators=(",", ":"))


def parse_completion(raw: str | None) -> dict[str, int] | None:
    """The six dims from model output, or None unless it holds exactly the six dims as ints 0..10."""
    if not raw:
        return None
    text = raw.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start : end + 1])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or set(obj) != set(DIMS):
        return None
    values = {dim: _dim_int(obj[dim]) for dim in DIMS}
    if any(v is None for v in values.values()):
        return None
    return values  # type: ignore[return-value]


# --- inputs --------------------------------------------------------------------------------------------

DEFAULT_BASE_MODEL = "mistralai/Ministral-3-3B-Instruct-2512"
DEFAULT_HPARAMS: dict[str, float | int] = {
    "learning_rate": 2e-5,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "epochs": 2,
    "batch_size": 2,
    "grad_accum": 8,
    "max_length": 768,
}
SPLIT_FILES = {
    "train": "train.jsonl",
    "validation": "validation.jsonl",
    "test": "test.jsonl",
    "holdout": "holdout.jsonl",
    "probe": "probe.jsonl",
    "human": "human.jsonl",
    "field": "field.jsonl",  # reviewed requests people sent (optional, may be empty)
}
REQUIRED_SPLITS = ("train", "validation", "holdout")
# probe: mined for hard dims; human: the guard; field: people's reviewed requests, the primary score once large
PREDICTED_SPLITS = ("validation", "holdout", "probe", "human", "field")
MODEL_SUBDIR = "model"
DATASET_ARTIFACT_ENV = "KOTONE_DATASET_ARTIFACT"  # the W&B dataset artifact this run declares as its input
TRAINER_SUBDIR = "_trainer"  # checkpoints and trainer logs: never uploaded
DEFAULT_PREDICT_BATCH = 1  # LoraPredictor's default: the latency a single request sees (serving)
# Jobs predict in left-padded batches: ~940 rows one at a time cost more than training on a GPU.
JOB_PREDICT_BATCH = 16
DEFAULT_CHECKPOINT_STEPS = 50  # a preempted job loses at most this many optimizer steps
CHECKPOINT_SUBDIR = "checkpoint"  # on the run branch: the last trainer checkpoint (resume)
METRICS_FILE = "metrics.json"
MAX_NEW_TOKENS = 48  # the completion is ~40 tokens; a longer answer is invalid anyway
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
BRANCH_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REPO_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
MAX_REPORTED_PROBLEMS = 20


class BadInput(ValueError):
    """Input the script cannot use: reported as one message, exit code 2."""


def log(message: str) -> None:
    print(f"[train_lora] {message}", file=sys.stderr, flush=True)


def parse_hparams(raw: str | None) -> dict[str, float | int]:
    """The defaults of docs/design.md § Next hyper-parameters patched by a JSON object; unknown keys and bad
    values are rejected."""
    hparams = dict(DEFAULT_HPARAMS)
    if raw is None or not raw.strip():
        return hparams
    try:
        patch = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(f"--hparams: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(patch, dict):
        raise BadInput(f"--hparams: expected a JSON object, got {type(patch).__name__}")
    unknown = sorted(set(patch) - set(DEFAULT_HPARAMS))
    if unknown:
        raise BadInput(f"--hparams: unknown key(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_HPARAMS)}")
    for key, value in patch.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadInput(f"--hparams.{key}: expected a number, got {value!r}")
        if key in ("learning_rate", "lora_dropout"):
            value = float(value)
        elif float(value).is_integer():
            value = int(value)
        else:
            raise BadInput(f"--hparams.{key}: expected an integer, got {value!r}")
        hparams[key] = value
    if not 0 < hparams["learning_rate"] < 1:
        raise BadInput(f"--hparams.learning_rate: expected 0 < lr < 1, got {hparams['learning_rate']!r}")
    if not 0 <= hparams["lora_dropout"] < 1:
        raise BadInput(f"--hparams.lora_dropout: expected 0 <= dropout < 1, got {hparams['lora_dropout']!r}")
    for key in ("lora_r", "lora_alpha", "epochs", "batch_size", "grad_accum", "max_length"):
        if hparams[key] < 1:
            raise BadInput(f"--hparams.{key}: expected an integer >= 1, got {hparams[key]!r}")
    return hparams


def _row_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        return "id: expected a non-empty string"
    if obj.get("source_type") not in SOURCE_DESCRIPTIONS:
        return f"source_type: expected one of {_SOURCE_LIST}, got {obj.get('source_type')!r}"
    if not isinstance(obj.get("text"), str) or not obj["text"].strip():
        return "text: expected a non-empty string"
    try:
        obj["vector"] = check_vector(obj.get("vector"))
    except ValueError as exc:
        return str(exc)
    return None


def validate_rows(numbered_rows: Iterable[tuple[int, Any]], where: str) -> list[dict[str, Any]]:
    """Keep the Pair fields training needs; every bad row is reported as ``where:line: reason``."""
    good, problems = [], []
    for lineno, obj in numbered_rows:
        problem = _row_problem(obj)
        if problem:
            problems.append(f"{where}:{lineno}: {problem}")
        else:
            good.append({k: obj[k] for k in ("id", "source_type", "text", "vector")})
    if problems:
        raise BadInput(_problem_report(where, problems))
    return good


def _problem_report(where: str, problems: list[str]) -> str:
    shown = "\n".join(problems[:MAX_REPORTED_PROBLEMS])
    more = len(problems) - MAX_REPORTED_PROBLEMS
    return f"{where}: {len(problems)} bad line(s)\n{shown}" + (f"\n... and {more} more" if more > 0 else "")


def read_split_file(path: Path) -> list[dict[str, Any]]:
    """Pair rows of one JSONL file; blank lines are skipped, every bad line is reported."""
    numbered: list[tuple[int, Any]] = []
    problems = []
    try:
        with path.open("r", encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    numbered.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    problems.append(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if problems:
        raise BadInput(_problem_report(str(path), problems))
    return validate_rows(numbered, str(path))


def load_dataset_dir(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Split name -> rows for every split file present; train, validation and holdout are required."""
    if not directory.is_dir():
        raise BadInput(f"{directory}: dataset directory not found")
    found = {split: _find_split_file(directory, name) for split, name in SPLIT_FILES.items()}
    missing = [SPLIT_FILES[s] for s in REQUIRED_SPLITS if found[s] is None]
    if missing:
        raise BadInput(f"{directory}: missing split file(s) {', '.join(missing)}")
    splits = {split: read_split_file(path) for split, path in found.items() if path is not None}
    if not splits["train"]:
        raise BadInput(f"{found['train']}: no training pairs")
    return splits


def _find_split_file(directory: Path, name: str) -> Path | None:
    """The split file at the top of the directory or, for a Hub snapshot, in exactly one sub-folder."""
    if (directory / name).is_file():
        return directory / name
    matches = sorted(p for p in directory.rglob(name) if p.is_file())
    if len(matches) > 1:
        raise BadInput(f"{directory}: {name} found more than once ({', '.join(str(m) for m in matches)})")
    return matches[0] if matches else None


def hub_endpoint() -> str | None:
    """HF_ENDPOINT read at call time (huggingface_hub reads it once, at import): a stand-in Hub in tests."""
    return os.environ.get("HF_ENDPOINT") or None


def download_dataset(repo: str, revision: str, dest: Path) -> Path:
    """The pinned dataset commit's JSONL split files, downloaded to ``dest``."""
    from huggingface_hub import snapshot_download

    log(f"downloading dataset {repo}@{revision}")
    return Path(
        snapshot_download(
            repo_id=repo,
            repo_type="dataset",
            revision=revision,
            allow_patterns=["*.jsonl"],
            local_dir=str(dest),
            token=os.environ.get("HF_TOKEN") or None,
            endpoint=hub_endpoint(),
        )
    )


# --- the model -------------------------------------------------------------------------------------------

# Attention and MLP projections of the language model; the vision tower and projector of a multimodal
# base (Ministral 3 is Mistral3ForConditionalGeneration) are left frozen: this is a text-only task.
LORA_TARGET_REGEX = (
    r"^(?!.*(?:vision|multi_modal_projector)).*\.(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
)
HEAVY_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate")


def require_heavy_packages() -> dict[str, str]:
    """Versions of the training packages; BadInput naming the missing ones."""
    import importlib

    versions, missing = {}, []
    for name in HEAVY_PACKAGES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            missing.append(name)
    if missing:
        raise BadInput(
            f"missing package(s) {', '.join(missing)}: run this file with `uv run` (its dependencies are "
            "declared inline) or install requirements-train.txt"
        )
    return versions


def uses_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def load_tokenizer(name_or_path: str, revision: str | None = None, subfolder: str | None = None) -> Any:
    from transformers import AutoTokenizer

    token = os.environ.get("HF_TOKEN") or None
    extra = {"subfolder": subfolder} if subfolder else {}
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, token=token, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_tokenizer(name_or_path: str, revision: str | None = None) -> Any:
    """The base model's tokenizer; BadInput naming the repo when it has none (fails before any download of
    weights). Tokenizer path for Mistral models: transformers' own fast tokenizer from ``tokenizer.json`` (an
    explicit choice: ``mistral-common`` is not a dependency; the chat template check below covers what it
    would)."""
    try:
        return load_tokenizer(name_or_path, revision)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise BadInput(
            f"base model {name_or_path}: no usable tokenizer ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
            "the repo needs tokenizer.json and tokenizer_config.json (or pass --tokenizer-dir)"
        ) from exc


def prefetch_base_model(repo: str, revision: str | None) -> None:
    """Download the base model's files into the Hub cache (``from_pretrained`` then loads from there)."""
    from huggingface_hub import snapshot_download

    log(f"downloading base model {repo}" + (f"@{revision}" if revision else ""))
    snapshot_download(
        repo_id=repo,
        revision=revision,
        allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"],
        # Mistral repos also ship their native-format weights (consolidated.safetensors): not used here,
        # and as large as the transformers shards.
        ignore_patterns=["consolidated*", "original/*"],
        token=os.environ.get("HF_TOKEN") or None,
        endpoint=hub_endpoint(),
    )


def check_chat_template(tokenizer: Any, where: str) -> None:
    """The answer must follow the rendered prompt exactly, or completion-only training learns nothing.

    Checked on one rendered example before the model is loaded: seconds, not a paid hour."""
    if not uses_chat_template(tokenizer):
        raise BadInput(
            f"{where}: the tokenizer has no chat template (tokenizer_config.json 'chat_template' or "
            "chat_template.jinja); an instruct model's tokenizer is needed"
        )
    messages = build_messages("A calm, warm tune for a rainy evening.", "request_text")
    completion = format_completion(dict.fromkeys(DIMS, 5))
    try:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": completion}], tokenize=False)
    except Exception as exc:  # jinja errors: a template that cannot render these roles
        raise BadInput(f"{where}: the chat template cannot render a system/user/assistant example: {exc}") from exc
    if messages[1]["content"] not in prompt:
        raise BadInput(f"{where}: the chat template drops the user message")
    if not full.startswith(prompt):
        raise BadInput(
            f"{where}: the chat template renders the prompt differently once an answer follows "
            f"(prompt ends {prompt[-60:]!r}, full example has {full[len(prompt) - 60 : len(prompt)]!r} there); "
            "the completion boundary cannot be found"
        )
    if not full[len(prompt) :].lstrip().startswith(completion):
        raise BadInput(
            f"{where}: the answer does not directly follow the generation prompt "
            f"(found {full[len(prompt) : len(prompt) + 60]!r}); the completion boundary cannot be found"
        )


def dequantizing_config(quantization: Any) -> Any:
    """The checkpoint's own quantization config set to dequantize on load (FP8 -> bf16), or None.

    Built from the checkpoint's config rather than a fresh one: transformers copies the loading
    attributes over the checkpoint's, and a fresh config would wipe its ``modules_to_not_convert``.
    """
    if not quantization:
        return None
    from transformers.quantizers.auto import AutoQuantizationConfig

    config = quantization
    if isinstance(quantization, dict):
        config = AutoQuantizationConfig.from_dict(dict(quantization))
    if not hasattr(config, "dequantize"):
        return None  # e.g. bitsandbytes 4-bit: LoRA trains on top of it as it is (QLoRA)
    config.dequantize = True  # LoRA needs base weights in a compute dtype
    return config


def load_base_model(name_or_path: str, revision: str | None = None, for_training: bool = False) -> Any:
    """Causal LM, or an image-text-to-text model used on text; FP8 checkpoints are dequantized to bf16."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    token = os.environ.get("HF_TOKEN") or None
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    kwargs: dict[str, Any] = {"revision": revision, "token": token, "dtype": dtype}
    config = AutoConfig.from_pretrained(name_or_path, revision=revision, token=token)
    quantization = dequantizing_config(getattr(config, "quantization_config", None))
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    # Ministral 3 (mistral3) is registered for image-text-to-text only; used on text here.
    causal = type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
    auto = AutoModelForCausalLM if causal else AutoModelForImageTextToText
    model = auto.from_pretrained(name_or_path, **kwargs)
    if torch.cuda.is_available():
        model = model.to("cuda")
    if not for_training:
        model.eval()
    return model


def encode_prompt(tokenizer: Any, text: str, source_type: str) -> list[int]:
    """Token ids the model sees before its answer: the same ids TRL builds for the prompt in training."""
    if uses_chat_template(tokenizer):
        encoded = tokenizer.apply_chat_template(
            build_messages(text, source_type), add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])
    return list(tokenizer(text=build_prompt(text, source_type))["input_ids"])


def training_example(row: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """A TRL prompt-completion row (conversational when the tokenizer has a chat template)."""
    completion = format_completion(row["vector"])
    if chat:
        return {
            "prompt": build_messages(row["text"], row["source_type"]),
            "completion": [{"role": "assistant", "content": completion}],
        }
    return {"prompt": build_prompt(row["text"], row["source_type"]), "completion": completion}


def fits_max_length(tokenizer: Any, row: Mapping[str, Any], max_length: int) -> bool:
    """TRL truncates from the right: an over-long row would lose its completion and teach nothing."""
    completion_ids = tokenizer(text=format_completion(row["vector"]), add_special_tokens=False)["input_ids"]
    margin = 8  # end-of-turn and eos tokens the template adds around the completion
    prompt_ids = encode_prompt(tokenizer, row["text"], row["source_type"])
    return len(prompt_ids) + len(completion_ids) + margin <= max_length


def build_trainer(
    model: Any,
    tokenizer: Any,
    train_rows: Sequence[Mapping[str, Any]],
    hparams: Mapping[str, Any],
    trainer_dir: Path,
    max_steps: int | None = None,
    run_name: str | None = None,
    checkpoint_steps: int = 0,
    callbacks: Sequence[Any] = (),
) -> Any:
    """TRL SFTTrainer + peft LoRA, loss on the completion tokens only, docs/design.md § Next hyper-parameters.

    With ``checkpoint_steps`` a resumable checkpoint (adapter, optimizer, scheduler, RNG) is saved every
    that many steps; only the last one is kept on disk."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    chat = uses_chat_template(tokenizer)
    dataset = Dataset.from_list([training_example(row, chat) for row in train_rows])
    cuda = torch.cuda.is_available()
    report_to = ["wandb"] if os.environ.get("WANDB_API_KEY") else "none"
    if report_to != "none":
        os.environ.setdefault("WANDB_PROJECT", "kotone")
    config = SFTConfig(
        output_dir=str(trainer_dir),
        learning_rate=float(hparams["learning_rate"]),
        num_train_epochs=float(hparams["epochs"]),
        max_steps=max_steps if max_steps else -1,
        per_device_train_batch_size=int(hparams["batch_size"]),
        gradient_accumulation_steps=int(hparams["grad_accum"]),
        max_length=int(hparams["max_length"]),
        completion_only_loss=True,
        packing=False,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,  # a float < 1 is a ratio of the total steps
        logging_steps=1,
        save_strategy="steps" if checkpoint_steps else "no",
        save_steps=checkpoint_steps or 500,
        save_total_limit=1,
        eval_strategy="no",
        report_to=report_to,
        run_name=run_name,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=cuda,  # memory on the GPU; on CPU (smoke tests) it only costs time
        use_cpu=not cuda,
        seed=42,
        data_seed=42,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = LoraConfig(
        r=int(hparams["lora_r"]),
        lora_alpha=int(hparams["lora_alpha"]),
        lora_dropout=float(hparams["lora_dropout"]),
        target_modules=LORA_TARGET_REGEX,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=list(callbacks),
    )


class RunBranch:
    """The run's output branch on the Hub: what is already there, and pushing each piece when it is ready."""

    def __init__(self, repo: str, revision: str) -> None:
        from huggingface_hub import HfApi

        self.repo, self.revision = repo, revision
        self.api = HfApi(token=os.environ.get("HF_TOKEN") or None, endpoint=hub_endpoint())

    def prepare(self) -> set[str]:
        """Create repo and branch when missing; the files already on the branch (a resumed run)."""
        self.api.create_repo(self.repo, repo_type="model", private=True, exist_ok=True)
        self.api.create_branch(self.repo, branch=self.revision, repo_type="model", exist_ok=True)
        return set(self.api.list_repo_files(self.repo, revision=self.revision, repo_type="model"))

    def push(
        self, folder: Path, patterns: list[str], message: str, path_in_repo: str | None = None, delete: Any = None
    ) -> str:
        commit = self.api.upload_folder(
            repo_id=self.repo,
            repo_type="model",
            folder_path=str(folder),
            path_in_repo=path_in_repo,
            revision=self.revision,
            allow_patterns=patterns,
            delete_patterns=delete,
            commit_message=message,
        )
        return str(getattr(commit, "oid", commit))

    def download(self, patterns: list[str], dest: Path) -> Path:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                repo_id=self.repo,
                repo_type="model",
                revision=self.revision,
                allow_patterns=patterns,
                local_dir=str(dest),
                token=os.environ.get("HF_TOKEN") or None,
                endpoint=hub_endpoint(),
            )
        )


def checkpoint_pusher(branch: RunBranch, record: dict[str, Any]) -> Any:
    """A TrainerCallback that pushes each saved checkpoint to ``checkpoint/`` on the run branch (replacing
    the previous one). A failed push is logged and training goes on: the run can still finish."""
    from transformers import TrainerCallback

    class PushCheckpoint(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not folder.is_dir():
                return
            clock = time.perf_counter()
            try:
                branch.push(
                    folder,
                    ["*"],
                    f"checkpoint at step {state.global_step}",
                    path_in_repo=CHECKPOINT_SUBDIR,
                    delete=["*"],
                )
            except Exception as exc:
                log(f"warning: checkpoint push at step {state.global_step} failed: {type(exc).__name__}: {exc}")
                record.setdefault("checkpoint_push_errors", []).append(f"step {state.global_step}: {exc}")
                return
            record["last_checkpoint_step"] = int(state.global_step)
            log(f"pushed checkpoint at step {state.global_step} in {time.perf_counter() - clock:.1f} s")

    return PushCheckpoint()


def generate_completions(
    model: Any, tokenizer: Any, items: Sequence[tuple[str, str]], max_new_tokens: int = MAX_NEW_TOKENS
) -> list[str]:
    """Greedy answers for (text, source_type) items, decoded without special tokens, one batch."""
    import torch

    prompts = [encode_prompt(tokenizer, text, source_type) for text, source_type in items]
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Left padding: every answer then starts at the same position.
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    device = next(model.parameters()).device
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad,
            use_cache=True,
        )
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in output]


def predict_rows(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    batch_size: int = DEFAULT_PREDICT_BATCH,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list[dict[str, Any]]:
    """One prediction record per row: ``{"pair_id", "raw", "prediction", "latency_ms"}``.

    ``latency_ms`` is the batch's wall time over its size: with the default batch of one it is the
    latency a single request sees (what the p95 latency rule is about); larger batches amortize it.
    """
    records = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        clock = time.perf_counter()
        items = [(r["text"], r["source_type"]) for r in batch]
        raws = generate_completions(model, tokenizer, items, max_new_tokens)
        latency_ms = (time.perf_counter() - clock) * 1000 / len(batch)
        for row, raw in zip(batch, raws, strict=True):
            vector = parse_completion(raw)
            records.append({"pair_id": row["id"], "raw": raw, "prediction": vector, "latency_ms": latency_ms})
    return records


# --- outputs -----------------------------------------------------------------------------------------------


def _umask() -> int:
    """The umask, from /proc where Linux shows it (setting it to read it back races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file next to ``path`` and rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp's 0o600 would follow the file when renamed; give it what open() would (0o666 less the umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def upload_outputs(output_dir: Path, repo: str, revision: str, drop_checkpoint: bool = False) -> str:
    """Upload the run directory to ``repo`` on branch ``revision`` (created from main); the commit URL.

    ``drop_checkpoint``: a completed run removes its resumable checkpoint from the branch (no longer needed)."""
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN") or None, endpoint=hub_endpoint())
    api.create_repo(repo, repo_type="model", private=True, exist_ok=True)
    api.create_branch(repo, branch=revision, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo,
        repo_type="model",
        folder_path=str(output_dir),
        revision=revision,
        commit_message=f"kotone LoRA run {revision}",
        ignore_patterns=[f"{TRAINER_SUBDIR}/**", ".*"],
        delete_patterns=[f"{CHECKPOINT_SUBDIR}/*"] if drop_checkpoint else None,
    )
    return str(getattr(commit, "commit_url", commit))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 (script supports 3.10)


def _script_sha256() -> str | None:
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    except OSError:
        return None


# --- CLI -------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train_lora.py", description=__doc__.split("\n")[0])
    source = parser.add_argument_group("dataset (either a pinned Hub commit or a local directory)")
    source.add_argument("--dataset-repo", help="Hub dataset repo id (ORG/NAME)")
    source.add_argument("--dataset-revision", help="the dataset commit sha (40 hex digits)")
    source.add_argument("--dataset-dir", type=Path, help="directory with train/validation/test/holdout.jsonl")
    parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="base model repo id")
    parser.add_argument("--base-revision", default=None, help="base model revision")
    parser.add_argument("--hparams", default=None, help="JSON object patching the LoRA hyper-parameters")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs"), help="local output directory")
    parser.add_argument("--output-repo", default=None, help="Hub model repo to upload the run directory to")
    parser.add_argument("--output-revision", default=None, help="branch for this run, e.g. cycle-ID-RUN")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument(
        "--max-train-rows", type=int, default=None, help="train on the first N training pairs only (smoke runs)"
    )
    parser.add_argument(
        "--max-predict-rows",
        type=int,
        default=None,
        help="predict the first N pairs of each split only (smoke runs; the rest score as invalid)",
    )
    parser.add_argument(
        "--predict-batch-size",
        type=int,
        default=JOB_PREDICT_BATCH,
        help=f"rows generated together (left padding; default {JOB_PREDICT_BATCH}); 1 measures per-request latency",
    )
    parser.add_argument(
        "--checkpoint-steps",
        type=int,
        default=DEFAULT_CHECKPOINT_STEPS,
        help="push a resumable checkpoint to the run branch every N optimizer steps (0: never)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="answer length limit")
    parser.add_argument("--model-dir", default=None, help="load the base model from here instead (tests)")
    parser.add_argument("--tokenizer-dir", default=None, help="load the tokenizer from here instead (tests)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.dataset_dir is not None and (args.dataset_repo or args.dataset_revision):
        raise BadInput("give either --dataset-dir or --dataset-repo with --dataset-revision, not both")
    if args.dataset_dir is None:
        if not args.dataset_repo or not args.dataset_revision:
            raise BadInput("give --dataset-dir, or --dataset-repo together with --dataset-revision")
        if not REPO_PATTERN.fullmatch(args.dataset_repo):
            raise BadInput(f"--dataset-repo: expected ORG/NAME, got {args.dataset_repo!r}")
        if not SHA_PATTERN.fullmatch(args.dataset_revision):
            raise BadInput(
                "--dataset-revision: expected a pinned commit sha (40 lowercase hex digits), "
                f"got {args.dataset_revision!r}"
            )
    if args.output_repo is not None:
        if not REPO_PATTERN.fullmatch(args.output_repo):
            raise BadInput(f"--output-repo: expected ORG/NAME, got {args.output_repo!r}")
        if not args.output_revision:
            raise BadInput("--output-repo needs --output-revision (a branch unique to this cycle and run)")
    if args.output_revision is not None and (
        not BRANCH_PATTERN.fullmatch(args.output_revision) or args.output_revision == "main"
    ):
        raise BadInput(
            f"--output-revision: expected a branch name unique to the run (not main), got {args.output_revision!r}"
        )
    for option in ("max_steps", "max_train_rows", "max_predict_rows"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise BadInput(f"--{option.replace('_', '-')}: expected an integer >= 1, got {value}")
    if args.checkpoint_steps < 0:
        raise BadInput(f"--checkpoint-steps: expected an integer >= 0, got {args.checkpoint_steps}")
    for option in ("predict_batch_size", "max_new_tokens"):
        value = getattr(args, option)
        if value < 1:
            raise BadInput(f"--{option.replace('_', '-')}: expected an integer >= 1, got {value}")


def run(args: argparse.Namespace, hparams: dict[str, Any], run_record: dict[str, Any]) -> dict[str, Any]:
    """Load, train, predict, write; fills ``run_record`` as it goes (it is written even on failure).

    With an output branch, each piece is pushed when it is ready, and a re-run for the same branch resumes:
    from the pushed checkpoint, or with the pushed adapter (training skipped), skipping pushed predictions."""
    clock = time.perf_counter()
    timings = run_record["timings_s"]
    if args.dataset_dir is not None:
        splits = load_dataset_dir(args.dataset_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="kotone-dataset-") as tmp:
            splits = load_dataset_dir(download_dataset(args.dataset_repo, args.dataset_revision, Path(tmp)))
    timings["data_s"] = round(time.perf_counter() - clock, 3)
    run_record["rows"] = {split: len(rows) for split, rows in splits.items()}
    log("rows: " + ", ".join(f"{s}={n}" for s, n in run_record["rows"].items()))
    run_record["library_versions"] = require_heavy_packages()

    import torch

    run_record["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    clock = time.perf_counter()
    tokenizer_source = args.tokenizer_dir or args.model_dir or args.base_model
    tokenizer = load_base_tokenizer(tokenizer_source, args.base_revision)
    check_chat_template(tokenizer, f"base model {tokenizer_source}")
    run_record["prompt_format"] = "chat"
    run_record["tokenizer"] = {"class": type(tokenizer).__name__, "source": str(tokenizer_source)}

    if not args.model_dir:  # its own phase: the 4.7 GB of the default base model take minutes on a job
        clock_download = time.perf_counter()
        prefetch_base_model(args.base_model, args.base_revision)
        timings["download_base_s"] = round(time.perf_counter() - clock_download, 3)
    branch = RunBranch(args.output_repo, args.output_revision) if args.output_repo else None
    on_branch = branch.prepare() if branch is not None else set()
    adapter_pushed = f"{MODEL_SUBDIR}/adapter_config.json" in on_branch and METRICS_FILE in on_branch
    model_dir = args.output_dir / MODEL_SUBDIR
    if adapter_pushed:
        assert branch is not None
        log(f"resuming: the adapter is on {branch.repo}@{branch.revision} already; training skipped")
        branch.download([f"{MODEL_SUBDIR}/*", METRICS_FILE], args.output_dir)
        from peft import PeftModel

        base = load_base_model(args.model_dir or args.base_model, args.base_revision)
        model = PeftModel.from_pretrained(base, str(model_dir))
        run_record.update(json.loads((args.output_dir / METRICS_FILE).read_text(encoding="utf-8")))
        run_record["resumed"] = {"training": "skipped (adapter already pushed)"}
        timings["load_s"] = round(time.perf_counter() - clock - timings.get("download_base_s", 0.0), 3)
    else:
        model = load_base_model(args.model_dir or args.base_model, args.base_revision, for_training=True)
        timings["load_s"] = round(time.perf_counter() - clock - timings.get("download_base_s", 0.0), 3)
        model = train(args, hparams, run_record, splits["train"], model, tokenizer, branch, on_branch)

    model.eval()
    for split in PREDICTED_SPLITS:
        if not splits.get(split):
            continue  # probe and human are optional (datasets published before they travelled with them)
        name = f"predictions_{split}.jsonl"
        if name in on_branch and branch is not None:
            branch.download([name], args.output_dir)
            run_record.setdefault("resumed", {})[split] = "skipped (predictions already pushed)"
            log(f"{split}: predictions already on the branch; skipped")
            continue
        clock = time.perf_counter()
        rows = splits[split][: args.max_predict_rows] if args.max_predict_rows else splits[split]
        records = predict_rows(model, tokenizer, rows, args.predict_batch_size, args.max_new_tokens)
        timings[f"predict_{split}_s"] = round(time.perf_counter() - clock, 3)
        write_jsonl(args.output_dir / name, records)
        valid = sum(r["prediction"] is not None for r in records)
        run_record.setdefault("json_valid", {})[split] = f"{valid}/{len(records)}"
        log(f"{split}: {valid}/{len(records)} valid predictions in {timings[f'predict_{split}_s']:.1f} s")
        if branch is not None:
            _push(branch, args.output_dir, [name], f"{split} predictions", timings, f"push_{split}_s")
    run_record["predict_batch_size"] = args.predict_batch_size
    if torch.cuda.is_available():
        run_record["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return run_record


def train(
    args: argparse.Namespace,
    hparams: dict[str, Any],
    run_record: dict[str, Any],
    rows: list[dict[str, Any]],
    model: Any,
    tokenizer: Any,
    branch: RunBranch | None,
    on_branch: set[str],
) -> Any:
    """LoRA training (resumed from the branch's checkpoint when there is one); pushes adapter and metrics."""
    timings = run_record["timings_s"]
    max_length = int(hparams["max_length"])
    if args.max_train_rows:
        rows = rows[: args.max_train_rows]
    train_rows = [row for row in rows if fits_max_length(tokenizer, row, max_length)]
    dropped = run_record["rows_dropped_too_long"] = len(rows) - len(train_rows)
    if dropped:
        log(f"dropped {dropped} training row(s) longer than max_length {max_length}")
    if not train_rows:
        raise BadInput(f"every training row is longer than max_length {max_length} tokens")
    run_record["rows_trained"] = len(train_rows)

    trainer_dir = args.output_dir / TRAINER_SUBDIR
    resume_from = None
    if branch is not None and f"{CHECKPOINT_SUBDIR}/trainer_state.json" in on_branch:
        branch.download([f"{CHECKPOINT_SUBDIR}/*"], trainer_dir / "pushed")
        resume_from = trainer_dir / "pushed" / CHECKPOINT_SUBDIR
        state = json.loads((resume_from / "trainer_state.json").read_text(encoding="utf-8"))
        run_record["resumed_from_step"] = int(state.get("global_step", 0))
        log(f"resuming training from the pushed checkpoint at step {run_record['resumed_from_step']}")
    checkpoint_steps = args.checkpoint_steps if branch is not None else 0
    callbacks = [checkpoint_pusher(branch, run_record)] if branch is not None and checkpoint_steps else []
    clock = time.perf_counter()
    trainer = build_trainer(
        model,
        tokenizer,
        train_rows,
        hparams,
        trainer_dir,
        args.max_steps,
        args.output_revision,
        checkpoint_steps=checkpoint_steps,
        callbacks=callbacks,
    )
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    timings["train_s"] = round(time.perf_counter() - clock, 3)
    run_record["steps"] = int(trainer.state.global_step)
    run_record["steps_this_run"] = run_record["steps"] - run_record.get("resumed_from_step", 0)
    run_record["epochs_completed"] = float(trainer.state.epoch or 0.0)
    run_record["train_loss"] = float(result.training_loss)
    run_record["trainable_params"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    log(f"trained {run_record['steps']} steps in {timings['train_s']:.1f} s, loss {result.training_loss:.4g}")
    if os.environ.get("WANDB_API_KEY"):
        import wandb

        run_record["wandb_url"] = wandb.run.url if wandb.run is not None else None
        run_record["wandb_dataset_artifact"] = declare_dataset_input(wandb.run, os.environ.get(DATASET_ARTIFACT_ENV))

    model_dir = args.output_dir / MODEL_SUBDIR
    trainer.model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    metrics = {
        key: run_record.get(key)
        for key in ("steps", "epochs_completed", "train_loss", "trainable_params", "rows_trained", "resumed_from_step")
        if key in run_record
    }
    metrics["loss_history"] = [
        {"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e and "step" in e
    ]
    write_json(args.output_dir / METRICS_FILE, metrics)
    if branch is not None:
        # Adapter and metrics first: a timeout during prediction no longer loses the training.
        patterns = [f"{MODEL_SUBDIR}/*", METRICS_FILE]
        _push(branch, args.output_dir, patterns, "adapter and training metrics", timings, "push_adapter_s")
    return trainer.model


class PushRejected(RuntimeError):
    """The Hub refused one of the run's pushes: the run fails with this message (exit code 1)."""


def _push(branch: RunBranch, folder: Path, patterns: list[str], what: str, timings: dict[str, float], key: str) -> None:
    clock = time.perf_counter()
    try:
        branch.push(folder, patterns, f"kotone LoRA run {branch.revision}: {what}")
    except Exception as exc:
        raise PushRejected(
            f"push of {what} to {branch.repo}@{branch.revision} failed: {type(exc).__name__}: {exc}"
        ) from exc
    timings[key] = round(time.perf_counter() - clock, 3)
    log(f"pushed {what} to {branch.repo}@{branch.revision} in {timings[key]:.1f} s")


def declare_dataset_input(run: Any, artifact: str | None) -> str | None:
    """W&B lineage: this training run used the dataset version the cycle logged (KOTONE_DATASET_ARTIFACT).
    Bookkeeping only: a name W&B cannot resolve is recorded in run.json, never a failed (paid) run."""
    if run is None or not artifact:
        return None
    try:
        run.use_artifact(artifact, type="dataset")
    except Exception as exc:  # noqa: BLE001 - the model is trained; lineage must not lose it
        log(f"warning: could not declare the dataset artifact {artifact} as this run's input: {exc}")
        return None
    return artifact


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    record: dict[str, Any] = {"status": "running", "started_at": _now(), "timings_s": {}}
    try:
        check_args(args)
        hparams = parse_hparams(args.hparams)
        record.update(
            {
                "prompt_version": PROMPT_VERSION,
                "base_model": args.base_model,
                "base_revision": args.base_revision,
                "dataset": {
                    "repo": args.dataset_repo,
                    "revision": args.dataset_revision,
                    "dir": str(args.dataset_dir) if args.dataset_dir else None,
                },
                "hparams": hparams,
                "max_steps": args.max_steps,
                "max_train_rows": args.max_train_rows,
                "max_predict_rows": args.max_predict_rows,
                "checkpoint_steps": args.checkpoint_steps,
                "output": {"repo": args.output_repo, "revision": args.output_revision},
                "script_sha256": _script_sha256(),
            }
        )
        try:
            args.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"--output-dir {args.output_dir}: cannot create ({exc.strerror or exc})") from exc
        run(args, hparams, record)
        record["status"] = "completed"
        exit_code = 0
    except BadInput as exc:
        log(f"error: {exc}")
        record.update(status="failed", error=str(exc))
        exit_code = EXIT_BAD_INPUT
    except PushRejected as exc:  # the Hub's answer is the evidence, not our traceback
        log(f"error: {exc}")
        record.update(status="failed", error=str(exc))
        exit_code = EXIT_FAILED
    except Exception as exc:  # a training or I/O failure in a remote job: the traceback is the evidence
        traceback.print_exc()
        log(f"error: training failed: {type(exc).__name__}: {exc}")
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        exit_code = EXIT_FAILED
    record["finished_at"] = _now()
    record["timings_s"]["total_s"] = round(time.perf_counter() - started, 3)
    try:
        write_json(args.output_dir / "run.json", record)
    except OSError as exc:
        log(f"error: cannot write {args.output_dir / 'run.json'}: {exc.strerror or exc}")
        return exit_code or EXIT_FAILED
    if args.output_repo and exit_code != EXIT_BAD_INPUT:
        try:
            url = upload_outputs(
                args.output_dir, args.output_repo, args.output_revision, drop_checkpoint=exit_code == 0
            )
            log(f"uploaded {args.output_dir} to {args.output_repo}@{args.output_revision}: {url}")
        except Exception as exc:
            target = f"{args.output_repo}@{args.output_revision}"
            log(f"error: upload to {target} failed: {type(exc).__name__}: {exc}")
            return EXIT_FAILED
    log(f"run {record['status']} in {record['timings_s']['total_s']:.1f} s; outputs in {args.output_dir}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
