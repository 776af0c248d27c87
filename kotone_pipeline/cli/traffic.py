"""``kotone demo --traffic FILE --reviewer-from FILE``: a simulation of an app and a person, for the demo.

Between cycles, a slice of the traffic file is sent to a real ``kotone serve`` (started for the
purpose on a free port, then stopped), which answers and logs each request as it does for an app;
then a simulated reviewer works through a real ``kotone review`` queue and labels the requests whose
text it finds in the reviewer file (the labels people gave them), skipping the others. Nothing here
is used outside the demo: in production an app calls ``kotone serve`` and people use the review page.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.domain.data.jsonl import iter_json_lines
from kotone_pipeline.domain.data.schemas import normalize_text

REVIEWER = "demo-reviewer (simulated)"
KOTONE = str(Path(sys.executable).parent / "kotone")


class TrafficError(ValueError):
    """A traffic or reviewer file that cannot be used; the message names the file and line."""


def read_traffic(path: Path) -> list[str]:
    """Request texts: one JSON object per line with a ``text`` (other fields are ignored)."""
    texts, problems = [], []
    for lineno, _, obj, error in iter_json_lines(path):
        if error or not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not obj["text"].strip():
            problems.append(f"{path}:{lineno}: {error or 'expected an object with a non-empty text'}")
        else:
            texts.append(obj["text"])
    if problems:
        raise TrafficError("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    if not texts:
        raise TrafficError(f"{path}: no requests in the traffic file")
    return texts


def read_labels(path: Path) -> dict[str, dict[str, int]]:
    """Normalised text -> the six labels, from rows with ``text`` and ``vector`` (or the dims at top level)."""
    labels, problems = {}, []
    for lineno, _, obj, error in iter_json_lines(path):
        vector = obj.get("vector", obj) if isinstance(obj, dict) else None
        ok = isinstance(vector, dict) and all(isinstance(vector.get(d), int) and 0 <= vector[d] <= 10 for d in DIMS)
        if error or not ok or not isinstance(obj.get("text"), str):  # type: ignore[union-attr]
            problems.append(f"{path}:{lineno}: {error or 'expected text and six integer dims 0..10'}")
            continue
        labels[normalize_text(obj["text"])] = {d: vector[d] for d in DIMS}  # type: ignore[index]
    if problems:
        raise TrafficError("; ".join(problems[:5]))
    return labels


@contextmanager
def kotone_server(args: Sequence[str], home: Path, drop_env: Sequence[str] = ()) -> Iterator[str]:
    """``kotone ARGS --port 0`` (``serve`` or ``review``) in its own process, as a user starts it: yields its
    base URL once it prints that it is listening, and stops it gracefully (SIGTERM) afterwards."""
    env = {**os.environ, "KOTONE_HOME": str(home)}
    for name in drop_env:
        env.pop(name, None)
    proc = subprocess.Popen(
        [KOTONE, *args, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()  # blocks until the server is up (or exits)
        url = next((w for w in line.split() if w.startswith("http://")), None)
        if url is None:
            proc.kill()
            raise TrafficError(f"`kotone {' '.join(args)}` did not start: {line.strip() or proc.stderr.read()[-500:]}")
        yield url.rstrip("/")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _call(url: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - a local server we started
        return json.loads(response.read())


@dataclass
class TrafficReplay:
    """The traffic, cut into one slice per cycle after the first champion, and the reviewer's labels.

    ``first_slice``: requests in the first slice (the rest is shared evenly): the demo sizes it so that the
    field set can decide from the first cycle that learns from people (see ``first_slice_size``)."""

    traffic: list[str]
    labels: dict[str, dict[str, int]]
    slices: int
    first_slice: int | None = None
    served: int = 0
    taken: int = 0
    history: list[dict[str, int]] = field(default_factory=list)

    def next_slice(self) -> list[str]:
        if self.taken == 0 and self.first_slice:
            size = min(len(self.traffic), self.first_slice)
        else:
            left = max(1, self.slices - self.taken)
            size = math.ceil((len(self.traffic) - self.served) / left)
        chunk = self.traffic[self.served : self.served + size]
        self.served += len(chunk)
        self.taken += 1
        return chunk

    def run(self, home: Path) -> dict[str, int]:
        """Serve the next slice through ``kotone serve``, then review the queue through ``kotone review``."""
        chunk = self.next_slice()
        result = {"served": 0, "reviewed": 0, "skipped": 0}
        if not chunk:
            return result
        with kotone_server(["serve"], home) as url:
            for start in range(0, len(chunk), 64):
                items = [{"text": text} for text in chunk[start : start + 64]]
                result["served"] += len(_call(f"{url}/predict/batch", {"items": items})["predictions"])
        with kotone_server(["review"], home) as url:
            queue = _call(f"{url}/review/queue?limit={len(chunk) + 50}")["items"]
            for item in queue:
                labels = self.labels.get(normalize_text(item["text"]))
                body = {"labels": labels, "reviewer": REVIEWER} if labels else {"skip": True, "reviewer": REVIEWER}
                _call(f"{url}/review/{item['id']}", body)
                result["reviewed" if labels else "skipped"] += 1
        self.history.append(result)
        return result


def first_slice_size(traffic: int, slices: int, field_min_rows: int, field_share: float) -> int | None:
    """Enough reviewed requests for the field set to reach its minimum (with a 20% margin for the hash's
    luck), at most two thirds of the traffic; None (even slices) when one slice is enough or no slice is."""
    if slices <= 1:
        return None
    wanted = math.ceil(1.2 * field_min_rows / field_share)
    even = math.ceil(traffic / slices)
    return min(max(wanted, even), math.ceil(traffic * 2 / 3))
