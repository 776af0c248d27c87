"""A fine-tuned LLM (base model + LoRA adapter) as a Predictor, using the training script's own prompt path.

The adapter is a local directory (a run's ``model/`` folder, or the run folder holding it) or a Hub
model repo pinned to a revision (``ORG/NAME@cycle-ID-RUN``, adapter under ``model/``). The heavy
packages (torch, transformers, peft) are imported on first use; without them a clear error names the
``train`` extra. Latency is per prediction: with the default batch of one, what a single request sees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor
from kotone_pipeline.domain.requests.prompting import parse_vector
from kotone_pipeline.training import train_lora as script

ADAPTER_CONFIG = "adapter_config.json"


class TrainExtraMissingError(ImportError):
    """torch / transformers / peft are not installed."""


class LoraPredictor(Predictor):
    def __init__(
        self,
        adapter: str | Path,
        *,
        revision: str | None = None,
        subfolder: str | None = None,
        base_model: str | None = None,
        base_revision: str | None = None,
        batch_size: int = script.DEFAULT_PREDICT_BATCH,
        max_new_tokens: int = script.MAX_NEW_TOKENS,
        model_id: str | None = None,
    ) -> None:
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"batch_size, max_new_tokens: expected >= 1, got {batch_size}, {max_new_tokens}")
        local = Path(adapter)
        if local.exists():
            self.adapter, self.revision, self.subfolder = str(_local_adapter_dir(local)), None, None
        else:
            repo = str(adapter)
            if not script.REPO_PATTERN.match(repo):
                raise ValueError(f"adapter {repo!r}: not an existing directory nor a Hub repo id ORG/NAME")
            if not revision:
                raise ValueError(f"adapter {repo!r}: pin a revision (the run's branch or commit)")
            self.adapter, self.revision = repo, revision
            self.subfolder = script.MODEL_SUBDIR if subfolder is None else (subfolder or None)
        self.base_model = base_model
        self.base_revision = base_revision
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.model_id = model_id or f"lora:{self.adapter}" + (f"@{self.revision}" if self.revision else "")
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> LoraPredictor:
        """``ORG/NAME@REVISION`` (a run's model repo branch) or a local path."""
        if not Path(uri).exists() and "@" in uri:
            repo, revision = uri.rsplit("@", 1)
            return cls(repo, revision=revision, **kwargs)
        return cls(uri, **kwargs)

    def load(self) -> LoraPredictor:
        """Load base model, adapter and tokenizer (done on first predict when not called)."""
        if self._model is not None:
            return self
        try:
            script.require_heavy_packages()
        except script.BadInput as exc:
            raise TrainExtraMissingError(
                f"LoraPredictor needs the train extra (pip install 'kotone-pipeline[train]'): {exc}"
            ) from exc
        from peft import PeftConfig, PeftModel

        where = {"revision": self.revision, **({"subfolder": self.subfolder} if self.subfolder else {})}
        config = PeftConfig.from_pretrained(self.adapter, **where)
        base_name = self.base_model or config.base_model_name_or_path
        if not base_name:
            raise ValueError(f"{self.adapter}: the adapter names no base model; pass base_model")
        base = script.load_base_model(base_name, self.base_revision)
        self._model = PeftModel.from_pretrained(base, self.adapter, **where)
        self._model.eval()
        try:  # the run saves its tokenizer (and chat template) next to the adapter
            self._tokenizer = script.load_tokenizer(self.adapter, self.revision, self.subfolder)
        except (OSError, ValueError):
            self._tokenizer = script.load_tokenizer(base_name, self.base_revision)
        return self

    def _generate(self, items: Sequence[tuple[str, str]]) -> list[str]:
        self.load()
        return script.generate_completions(self._model, self._tokenizer, items, self.max_new_tokens)

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        predictions: list[Prediction] = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            clock = time.perf_counter()
            raws = self._generate([(i.text, i.source_type) for i in batch])
            latency_ms = (time.perf_counter() - clock) * 1000 / len(batch)
            if len(raws) != len(batch):
                raise RuntimeError(f"{self.model_id}: {len(raws)} answers for {len(batch)} inputs")
            predictions += [Prediction(vector=parse_vector(r), raw=r, latency_ms=latency_ms) for r in raws]
        return predictions


def _local_adapter_dir(path: Path) -> Path:
    """``path`` itself or its ``model/`` folder, whichever holds the adapter config."""
    for candidate in (path, path / script.MODEL_SUBDIR):
        if (candidate / ADAPTER_CONFIG).is_file():
            return candidate
    raise ValueError(f"{path}: no {ADAPTER_CONFIG} here or in {script.MODEL_SUBDIR}/")
