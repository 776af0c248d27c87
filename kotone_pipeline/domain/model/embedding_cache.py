"""The embedding cache: sentence vectors by text, so a cycle never embeds a text twice.

``EmbeddingCache`` keeps vectors by sha256 of the text in one SQLite file per encoder, in the folder it is
handed (``places().embeddings_dir`` by default: ``KOTONE_EMBEDDING_CACHE``, else ``$KOTONE_HOME/cache/embeddings``).
``CachedEncoder`` puts an in-process memo and that file in front of a ``SentenceEncoder`` (``encoder.py``);
``get_encoder`` keeps one per spec and folder in the process; ``prepare_embeddings`` fills the file for the
training jobs of a campaign.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kotone_pipeline.domain.data.paths import places
from kotone_pipeline.domain.model.encoder import ENCODED_SOURCES, EncoderSpec, SentenceEncoder, _as_texts, resolve_spec

log = logging.getLogger(__name__)

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


# The variable's name: a local job is given this process's cache folder under it (services/local_jobs.py).
EMBEDDING_CACHE_ENV = "KOTONE_EMBEDDING_CACHE"


def embeddings_cache_root() -> Path:
    """The folder the settings give (``KOTONE_EMBEDDING_CACHE`` when set: one cache shared by several homes,
    else ``$KOTONE_HOME/cache/embeddings``); one SQLite file per encoder key lives there."""
    return places().embeddings_dir


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

    ``cache_dir`` holds ``<key>.sqlite`` (default ``places().embeddings_dir``, asked now, so a changed
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
    encoder = get_encoder(places().encoder or "default")
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
