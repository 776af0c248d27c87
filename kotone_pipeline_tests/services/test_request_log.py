"""The request log: appends from many writers lose nothing, a broken disk never raises, cursors cut cleanly."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.services.request_log import RequestLog, ReviewError, new_request_id, reviewed_labels

PREDICTION = dict.fromkeys(DIMS, 5)


def item(text: str, **extra) -> dict:
    return {
        "request_id": new_request_id(),
        "text": text,
        "source_type": "request_text",
        "model_id": "c1/r0",
        "prediction": PREDICTION,
        "latency_ms": 1.5,
        **extra,
    }


def _writer(home: str, worker: int, n: int) -> None:
    # Waiting as long as it takes: this checks that WAL writers lose nothing, not the server's short wait
    # (a loaded machine can hold the lock past 0.25 s; the server then counts the item as not logged).
    log = RequestLog(Path(home), busy_timeout_s=30)
    for i in range(n):
        assert log.append([item(f"worker {worker} request {i}")])


def test_concurrent_writers_in_threads_and_processes_lose_no_request(tmp_path: Path) -> None:
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 10 + w, 40)) for w in range(4)]
    for worker in (*threads, *procs):
        worker.start()
    for worker in (*threads, *procs):
        worker.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    log = RequestLog(tmp_path)
    rows = log.requests_between(0, log.last_seq())
    assert len(rows) == 8 * 40
    assert len({r.text for r in rows}) == 8 * 40
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from kotone_pipeline_tests.services.test_request_log import item
from kotone_pipeline.services.request_log import RequestLog

log = RequestLog(Path(sys.argv[1]))
assert log.append([item("before the disk filled")])
size = sum(f.stat().st_size for f in log.path.parent.iterdir())
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
ok = log.append([item("x" * 200_000)])
print(ok, log.stats.not_logged, log.stats.last_error)
"""


def test_a_full_disk_counts_not_logged_and_never_raises(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ok, not_logged, error = done.stdout.split(" ", 2)
    assert (ok, not_logged) == ("False", "1") and "Error" in error
    assert [r.text for r in RequestLog(tmp_path).requests_between(0, 10)] == ["before the disk filled"]


def test_a_log_whose_folder_cannot_exist_counts_not_logged(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    log.path = Path("/dev/null") / "requests" / "requests.sqlite"  # a folder under a device file
    assert log.append([item("lost")]) is False
    assert log.stats.not_logged == 1 and log.stats.logged == 0


def test_cuts_between_sequence_numbers_count_each_request_once(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    log.append([item(f"r{i}") for i in range(5)])
    first_cut = log.last_seq()
    log.append([item(f"s{i}") for i in range(3)])
    second_cut = log.last_seq()
    first = log.requests_between(0, first_cut)
    second = log.requests_between(first_cut, second_cut)
    assert [r.text for r in first] == [f"r{i}" for i in range(5)]
    assert [r.text for r in second] == [f"s{i}" for i in range(3)]
    assert log.requests_between(second_cut, log.last_seq()) == []


def test_reviews_are_checked_one_per_reviewer_and_kept_per_reviewer(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    logged = item("a calm piano piece")
    log.append([logged])
    labels = {**PREDICTION, "energy": 2}
    review = log.add_review(logged["request_id"], "aiko", "label", labels, reason="unsure")
    assert review.prediction_shown == PREDICTION and review.model_id == "c1/r0"
    with pytest.raises(ReviewError, match="already reviewed") as second:
        log.add_review(logged["request_id"], "aiko", "label", labels)
    assert second.value.status == 409
    log.add_review(logged["request_id"], "ben", "label", {**PREDICTION, "energy": 3})
    with pytest.raises(ReviewError, match="unknown request") as unknown:
        log.add_review("req_nope", "aiko", "skip")
    assert unknown.value.status == 404
    with pytest.raises(ReviewError, match="missing warmth"):
        log.add_review(logged["request_id"], "cai", "label", {"energy": 1})
    with pytest.raises(ReviewError, match=r"labels.energy: expected an integer 0..10"):
        log.add_review(logged["request_id"], "cai", "label", {**PREDICTION, "energy": 11})
    reviews = log.reviews_between(0, log.last_seq("reviews"))
    assert [r.reviewer for r in reviews] == ["aiko", "ben"]
    assert reviewed_labels(reviews)[logged["request_id"]]["energy"] == 2  # round(2.5) to even


def test_unreviewed_requests_leave_out_what_was_reviewed(tmp_path: Path) -> None:
    log = RequestLog(tmp_path)
    items = [item(f"t{i}") for i in range(4)]
    log.append(items)
    log.add_review(items[0]["request_id"], "aiko", "skip")
    assert [r.text for r in log.unreviewed()] == ["t3", "t2", "t1"]
    assert [r.text for r in log.unreviewed(reviewer="ben")] == ["t3", "t2", "t1", "t0"]


def test_the_size_cap_drops_the_oldest_requests(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_rows=3)
    log.append([item(f"t{i}") for i in range(5)])
    assert log.trim() == 2
    assert [r.text for r in log.requests_between(0, log.last_seq())] == ["t2", "t3", "t4"]
