"""Champion registry (docs/design.md § Promotion gate): which model is the current champion, and how it got there.

``champion.json`` holds the current champion and ``champion_history.jsonl`` every change of
champion, oldest first: each promotion, and each rollback to an earlier champion. ``promote`` (called only
by the ``promotion_decision`` asset) and ``rollback`` (called only by ``kotone champion rollback``) are
the only ways to change either, so every change of champion is a recorded decision. Both files are written
atomically; a decision id that was already applied is a no-op, so re-applying a decision changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kotone_pipeline.domain.data.jsonl import (
    DataFileError,
    describe_validation_error,
    json_bytes,
    jsonl_bytes,
    read_models,
)
from kotone_pipeline.services.state_store import LocalStateStore, StateStore, Writes

CHAMPION_FILE = "champion.json"
HISTORY_FILE = "champion_history.jsonl"
LOCK_FILE = ".champion.lock"
REGISTRY_FILES = (CHAMPION_FILE, HISTORY_FILE)
ROLLBACK_PREFIX = "rollback/"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Champion(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str
    model_uri: str
    cycle_id: str
    run_id: str
    holdout_mae: float
    human_mae: float | None = None  # on the hand-written human set, when the run predicted it
    per_dim_mae: dict[str, float] = Field(default_factory=dict)
    promoted_at: str = Field(default_factory=_now)
    decision_reason: str
    forced: bool = False
    decision_id: str | None = None  # set by promote(): the decision that made this model champion
    # Set by rollback(): this entry made an earlier champion current again (decision_reason is the person's
    # reason; the scores are those the model was promoted with), replacing the champion ``replaced``.
    rollback: bool = False
    replaced: str | None = None


def replaced_ids(history: Sequence[Champion]) -> list[str | None]:
    """For each history entry, the champion it replaced: a rollback names it, a promotion replaced the entry
    before it (every change of champion is in the history, in order)."""
    return [
        entry.replaced if entry.rollback else (history[i - 1].model_id if i else None)
        for i, entry in enumerate(history)
    ]


class _Any:
    """Sentinel type: promote without checking which champion is current."""


ANY_CHAMPION = _Any()


class ChampionChangedError(RuntimeError):
    pass


class RollbackRefusedError(ValueError):
    """A rollback that cannot be made (no history, an unknown model, the current champion, no reason)."""


@dataclass(frozen=True)
class Rollback:
    entry: Champion  # the rollback's history entry (and, when applied, the champion)
    applied: bool  # False: this decision id was already in the history, nothing changed


def rollback_reason(reason: str) -> str:
    """The reason, stripped; an empty one is refused: every rollback says why it was made."""
    cleaned = " ".join(reason.split())
    if not cleaned:
        raise RollbackRefusedError("a rollback needs a reason (--reason TEXT): it is recorded with the decision")
    return cleaned


def rollback_target(history: Sequence[Champion], current: Champion | None, to: str | None = None) -> Champion:
    """The history entry a rollback to ``to`` restores: the model's own promotion, with its scores.

    ``to`` None: the champion the current one replaced when it was promoted, so repeated rollbacks walk
    back one promotion at a time (after a rollback to B, the next goes to what B had replaced)."""
    if current is None or not history:
        raise RollbackRefusedError("no champion to roll back from: the registry has no promotion yet")
    if to is not None and to == current.model_id:
        raise RollbackRefusedError(f"{to} is already the current champion; nothing to roll back")
    if to is None:
        promoted = _promotion_index(history, current.model_id)
        if promoted is None or promoted == 0:
            raise RollbackRefusedError(
                f"{current.model_id} was the first champion: there is no earlier one to roll back to"
            )
        to = history[promoted - 1].model_id
    index = _promotion_index(history, to)
    if index is None:
        known = list(dict.fromkeys(entry.model_id for entry in reversed(history)))
        shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
        raise RollbackRefusedError(
            f"{to} was never champion; the champions in the history: {shown} (see `kotone champion history`)"
        )
    return history[index]


def _promotion_index(history: Sequence[Champion], model_id: str) -> int | None:
    """Where ``model_id`` was promoted (its first non-rollback entry), or None."""
    return next((i for i, e in enumerate(history) if e.model_id == model_id and not e.rollback), None)


def _next_rollback_id(history: Sequence[Champion]) -> str:
    # A counter, not a timestamp: re-running an interrupted rollback computes the same id (see rollback()).
    return f"{ROLLBACK_PREFIX}{1 + sum(1 for entry in history if entry.rollback)}"


class ChampionRegistry:
    """The champion and its history in a ``StateStore``: files under ``root`` by default (a path), or any store
    (the files of an HF repo in a deployment without a shared volume)."""

    def __init__(self, root: Path | StateStore) -> None:
        self.store = root if isinstance(root, StateStore) else LocalStateStore(Path(root), lock_name=LOCK_FILE)

    @property
    def root(self) -> Path:
        """The registry's directory (a local registry only)."""
        if not isinstance(self.store, LocalStateStore):
            raise TypeError(f"the champion registry in {self.store.describe()} has no local directory")
        return self.store.root

    @property
    def champion_path(self) -> Path:
        return self.root / CHAMPION_FILE

    @property
    def history_path(self) -> Path:
        return self.root / HISTORY_FILE

    def where(self) -> str:
        """The registry's place, for messages: a directory or a repo."""
        return self.store.describe()

    def version(self) -> object:
        """Changes whenever the champion may have changed; cheap (a ``stat``, or one request to the Hub)."""
        return self.store.version(CHAMPION_FILE)

    def current(self) -> Champion | None:
        """The champion, or None before the first promotion."""
        return self._current_from(self.store.read(CHAMPION_FILE))

    def history(self) -> list[Champion]:
        """Every promotion, oldest first."""
        return self._history_from(self.store.read(HISTORY_FILE))

    def _current_from(self, raw: bytes | None) -> Champion | None:
        if raw is None:
            return None
        try:
            return Champion.model_validate_json(raw)
        except ValidationError as exc:
            where, history = self.store.location(CHAMPION_FILE), self.store.location(HISTORY_FILE)
            raise DataFileError(
                where,
                [
                    f"{where}: corrupt champion registry ({describe_validation_error(exc)}); "
                    f"to recover, restore it from the last line of {history} (every promotion is "
                    "recorded there), or delete it to start again from the baselines"
                ],
            ) from exc

    def _history_from(self, raw: bytes | None) -> list[Champion]:
        if raw is None:
            return []
        return read_models(self.store.location(HISTORY_FILE), Champion, strict=True, data=raw).rows

    def promote(self, champion: Champion, decision_id: str, expected_current: str | None | _Any = ANY_CHAMPION) -> bool:
        """Make ``champion`` the champion for ``decision_id``; False (nothing changed) when already applied.

        ``expected_current``: the model id the gate compared against (None = no champion). When the
        registry holds another champion by now (a parallel cycle promoted first), nothing changes and
        ``ChampionChangedError`` is raised, so a stale comparison can never promote a regression.
        Only the ``promotion_decision`` asset may call this.
        """
        if not decision_id:
            raise ValueError("promote needs the id of the promotion decision that justifies it")
        applied = False

        def change(files: Mapping[str, bytes | None]) -> Writes:
            nonlocal applied
            applied = False  # the store may ask again, on what another writer left
            history = self._history_from(files[HISTORY_FILE])
            if any(entry.decision_id == decision_id for entry in history):
                return []
            if not isinstance(expected_current, _Any):
                current = self._current_from(files[CHAMPION_FILE])
                current_id = current.model_id if current else None
                if current_id != expected_current:
                    raise ChampionChangedError(
                        f"the champion changed from {expected_current or 'none'} to {current_id} since this "
                        "decision's comparison; re-run the cycle against the new champion"
                    )
            entry = champion.model_copy(update={"decision_id": decision_id})
            applied = True
            # champion.json first: after a crash between the two writes the decision is not yet in the
            # history, so re-running it completes the history instead of being skipped. (A store that
            # commits both at once, the Hub, has no such crash.)
            return [(CHAMPION_FILE, json_bytes(entry)), (HISTORY_FILE, jsonl_bytes([*history, entry]))]

        self.store.update(REGISTRY_FILES, change)
        return applied

    def rollback(
        self,
        reason: str,
        to: str | None = None,
        decision_id: str | None = None,
        expected_current: str | None | _Any = ANY_CHAMPION,
        check: Callable[[Champion], None] | None = None,
    ) -> Rollback:
        """Make an earlier champion current again: ``to`` (a model id), default the one the current champion
        replaced. Recorded like a promotion: a history entry with ``rollback=True``, ``reason``, the model it
        replaced and ``decision_id`` (default ``rollback/<n>``, n counting rollbacks); the entry keeps the
        model's own uri, cycle and scores, so the next gate compares against it as against any champion.

        The same discipline as ``promote``: in one ``update`` of the store, compare-and-swap on
        ``expected_current`` (``ChampionChangedError``), an already applied decision id is a no-op
        (``applied=False``), champion.json first and the history second. A champion.json whose decision is not
        in the history (a crash between the two writes, of a promotion or a rollback) is added to the history
        first, even when the rollback is then refused; when it is this very rollback, that completes it.
        Refusals raise ``RollbackRefusedError``; ``check`` may refuse the target too (the CLI checks that its
        model files are still there)."""
        reason = rollback_reason(reason)
        if decision_id is not None and not decision_id.strip():
            raise ValueError("a rollback's decision id cannot be empty")
        if isinstance(self.store, LocalStateStore) and not self.root.is_dir():
            raise RollbackRefusedError(f"no champion to roll back from: no champion registry at {self.root}")
        outcome: list[Rollback] = []
        refusal: list[Exception] = []

        def change(files: Mapping[str, bytes | None]) -> Writes:
            outcome.clear()
            refusal.clear()
            history = self._history_from(files[HISTORY_FILE])
            current = self._current_from(files[CHAMPION_FILE])
            pending: list[tuple[str, bytes]] = []
            try:
                result = self._rollback_change(
                    history, current, pending, reason, to, decision_id, expected_current, check
                )
            except Exception as exc:  # a refusal: the completed history (if any) is still written
                refusal.append(exc)
                return pending
            outcome.append(result)
            return pending

        self.store.update(REGISTRY_FILES, change)
        if refusal:
            raise refusal[0]
        return outcome[0]

    def _rollback_change(
        self,
        history: list[Champion],
        current: Champion | None,
        pending: list[tuple[str, bytes]],
        reason: str,
        to: str | None,
        decision_id: str | None,
        expected_current: str | None | _Any,
        check: Callable[[Champion], None] | None,
    ) -> Rollback:
        """``rollback``'s decision on what the store holds; appends what to write to ``pending``."""
        explicit = decision_id is not None
        # Before any completion below, so a re-run of an interrupted rollback computes its id again.
        decision_id = decision_id or _next_rollback_id(history)
        done = next((entry for entry in history if entry.decision_id == decision_id), None)
        if done is not None:
            return Rollback(done, applied=False)
        recorded = {entry.decision_id for entry in history}
        if current is not None and current.decision_id is not None and current.decision_id not in recorded:
            # champion.json holds a decision the history lacks: a crash between the two writes.
            history = [*history, current]
            pending.append((HISTORY_FILE, jsonl_bytes(history)))
            if current.decision_id == decision_id:
                if current.rollback and to in (None, current.model_id):
                    return Rollback(current, applied=True)  # this rollback, interrupted: now complete
                if explicit:
                    return Rollback(current, applied=False)  # the id belongs to another decision
                decision_id = _next_rollback_id(history)
        if not isinstance(expected_current, _Any):
            current_id = current.model_id if current else None
            if current_id != expected_current:
                raise ChampionChangedError(
                    f"the champion changed from {expected_current or 'none'} to {current_id} since the "
                    "rollback was asked for; look at `kotone champion history` and decide again"
                )
        target = rollback_target(history, current, to)
        if check is not None:
            check(target)
        assert current is not None  # rollback_target refuses an empty registry
        entry = target.model_copy(
            update={
                "decision_id": decision_id,
                "promoted_at": _now(),
                "decision_reason": reason,
                "forced": False,
                "rollback": True,
                "replaced": current.model_id,
            }
        )
        # champion.json first, as in promote(): after a crash between the two writes, the next rollback
        # (or a re-run of this one) finds the decision missing from the history and records it.
        pending.extend([(CHAMPION_FILE, json_bytes(entry)), (HISTORY_FILE, jsonl_bytes([*history, entry]))])
        return Rollback(entry, applied=True)
