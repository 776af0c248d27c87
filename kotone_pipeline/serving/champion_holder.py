"""The served champion (``ChampionHolder``): one immutable ``Served`` reference, swapped only after the new
champion's predictor has loaded and warmed up (see ``serving/app.py``'s docstring for how requests use it)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kotone_pipeline.domain.data.dims import SOURCE_TYPES
from kotone_pipeline.domain.model.predictor import PredictInput, Predictor
from kotone_pipeline.services.champion import Champion, ChampionRegistry

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 1.0
# A champion whose load failed is not retried on every check (a load can take seconds), only after this.
RETRY_FAILED_LOAD_S = 30.0
WARM_UP_TEXT = "a quiet warm piano piece for a rainy evening"

Loader = Callable[[Champion], Predictor]
_Signature = object  # the registry's version of the champion file (a stat locally, a commit on the Hub)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def warm_up(predictor: Predictor) -> None:
    """One prediction per source type, so lazy parts (the sentence encoder, LoRA weights, both sub-models)
    load now and not on the first request, and a model that cannot run fails its load, not a request."""
    predictor.predict([PredictInput(text=WARM_UP_TEXT, source_type=source_type) for source_type in SOURCE_TYPES])


def load_champion(champion: Champion) -> Predictor:
    """The default loader: the champion's predictor, warmed up."""
    from kotone_pipeline.cycle.champion_eval import load_predictor

    predictor = load_predictor(champion.model_uri)
    warm_up(predictor)
    return predictor


@dataclass(frozen=True)
class Served:
    """What one request uses, read once: the champion and its loaded predictor never disagree."""

    champion: Champion
    predictor: Predictor
    loaded_at: str


def _same_champion(a: Champion, b: Champion) -> bool:
    return (a.decision_id, a.model_id, a.model_uri) == (b.decision_id, b.model_id, b.model_uri)


class ChampionHolder:
    """The served champion, reloaded when the registry's champion changes (see the module docstring)."""

    def __init__(
        self,
        registry: ChampionRegistry,
        *,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        loader: Loader = load_champion,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.check_interval_s = check_interval_s
        self._loader = loader
        self._clock = clock
        self._served: Served | None = None
        self._signature: _Signature = None
        self._seen_once = False  # the first check always loads, whatever the signature
        self._next_check = 0.0
        self._retry_at = 0.0
        self._loading = False
        self._error: str | None = None
        self._state_lock = threading.Lock()  # guards the bookkeeping above, never held during a load
        self._start_lock = threading.Lock()
        self._started = False
        self.loads = 0  # successful loads, for tests and /healthz

    @property
    def served(self) -> Served | None:
        return self._served

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        """The first load, synchronously (server startup): serving begins with the champion warm."""
        with self._start_lock:
            if self._started:
                return
            self.refresh(wait=True, force=True)
            self._started = True

    def _stat(self) -> _Signature:
        try:
            return self.registry.version()
        except Exception as exc:  # the Hub unreachable for a moment: keep serving, look again next time
            log.warning("cannot tell whether the champion changed: %s", exc)
            return self._signature

    def refresh(self, *, wait: bool = False, force: bool = False) -> None:
        """Cheap enough for every request: at most once per interval one ``stat``; when the champion file
        changed, load the champion in a background thread (or in this one with ``wait``)."""
        now = self._clock()
        if not force and now < self._next_check:
            return
        with self._state_lock:
            if self._loading or (not force and now < self._next_check):
                return
            self._next_check = now + self.check_interval_s
            signature = self._stat()
            unchanged = self._seen_once and signature == self._signature
            if unchanged and not (self._error is not None and now >= self._retry_at):
                return
            self._loading = True
        if wait:
            self._load(signature)
        else:
            threading.Thread(target=self._load, args=(signature,), name="kotone-champion-load", daemon=True).start()

    def _load(self, signature: _Signature) -> None:
        error: str | None = None
        try:
            champion = self.registry.current()
            served = self._served
            if champion is None:
                if served is not None:
                    error = f"the registry has no champion any more; still serving {served.champion.model_id}"
                    log.warning(error)
            elif served is None or not _same_champion(served.champion, champion):
                error = self._swap_in(champion, served)
        except Exception as exc:  # a corrupt registry file: keep serving what we have
            error = f"cannot read the champion registry: {exc}"
            log.warning(error)
        finally:
            with self._state_lock:
                self._signature = signature
                self._seen_once = True
                self._error = error
                if error is not None:
                    self._retry_at = self._clock() + max(RETRY_FAILED_LOAD_S, self.check_interval_s)
                self._loading = False

    def _swap_in(self, champion: Champion, old: Served | None) -> str | None:
        started = time.perf_counter()
        try:
            predictor = self._loader(champion)
        except Exception as exc:
            still = f"; still serving {old.champion.model_id}" if old is not None else ""
            message = f"cannot load the champion {champion.model_id} ({champion.model_uri}): {exc}{still}"
            log.warning(message, exc_info=True)
            return message
        # One reference assignment: a request sees either the old pair or the new one, never a mix.
        self._served = Served(champion=champion, predictor=predictor, loaded_at=_now_iso())
        self.loads += 1
        was = f" (was {old.champion.model_id})" if old is not None else ""
        log.info("serving champion %s%s, loaded in %.2f s", champion.model_id, was, time.perf_counter() - started)
        return None

    def health(self) -> dict[str, Any]:
        served, error = self._served, self._error
        status = "no_champion" if served is None else ("degraded" if error is not None else "ok")
        return {
            "status": status,
            "model_id": served.champion.model_id if served else None,
            "promoted_at": served.champion.promoted_at if served else None,
            "loaded_at": served.loaded_at if served else None,
            "reloading": self._loading,
            "error": error,
        }
