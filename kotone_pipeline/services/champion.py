"""Champion registry (DESIGN §4 promotion gate): which model is the current champion, and how it got there.

``root/champion.json`` holds the current champion and ``root/champion_history.jsonl`` every promotion,
oldest first. ``promote`` is the only way to change either, and only the ``promotion_decision`` asset
calls it, so every change of champion is a recorded decision. Both files are written atomically;
a decision id that was already applied is a no-op, so re-materializing a decision changes nothing.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kotone_pipeline.domain.jsonl import (
    DataFileError,
    describe_validation_error,
    read_models,
    write_json,
    write_jsonl,
)

CHAMPION_FILE = "champion.json"
HISTORY_FILE = "champion_history.jsonl"
LOCK_FILE = ".champion.lock"


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


class _Any:
    """Sentinel type: promote without checking which champion is current."""


ANY_CHAMPION = _Any()


class ChampionChangedError(RuntimeError):
    pass


class ChampionRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    @property
    def champion_path(self) -> Path:
        return self.root / CHAMPION_FILE

    @property
    def history_path(self) -> Path:
        return self.root / HISTORY_FILE

    def current(self) -> Champion | None:
        """The champion, or None before the first promotion."""
        try:
            raw = self.champion_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Champion.model_validate_json(raw)
        except ValidationError as exc:
            raise DataFileError(
                self.champion_path,
                [
                    f"{self.champion_path}: corrupt champion registry ({describe_validation_error(exc)}); "
                    f"to recover, restore it from the last line of {self.history_path} (every promotion is "
                    "recorded there), or delete it to start again from the baselines"
                ],
            ) from exc

    def history(self) -> list[Champion]:
        """Every promotion, oldest first."""
        if not self.history_path.exists():
            return []
        return read_models(self.history_path, Champion, strict=True).rows

    def promote(self, champion: Champion, decision_id: str, expected_current: str | None | _Any = ANY_CHAMPION) -> bool:
        """Make ``champion`` the champion for ``decision_id``; False (nothing changed) when already applied.

        ``expected_current``: the model id the gate compared against (None = no champion). When the
        registry holds another champion by now (a parallel cycle promoted first), nothing changes and
        ``ChampionChangedError`` is raised, so a stale comparison can never promote a regression.
        Only the ``promotion_decision`` asset may call this.
        """
        if not decision_id:
            raise ValueError("promote needs the id of the promotion decision that justifies it")
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            history = self.history()
            if any(entry.decision_id == decision_id for entry in history):
                return False
            if not isinstance(expected_current, _Any):
                current = self.current()
                current_id = current.model_id if current else None
                if current_id != expected_current:
                    raise ChampionChangedError(
                        f"the champion changed from {expected_current or 'none'} to {current_id} since this "
                        "decision's comparison; re-run the cycle against the new champion"
                    )
            entry = champion.model_copy(update={"decision_id": decision_id})
            # champion.json first: after a crash between the two writes the decision is not yet in the
            # history, so re-running it completes the history instead of being skipped.
            write_json(self.champion_path, entry)
            write_jsonl(self.history_path, [*history, entry])
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
