"""The review page in a real headless Chromium: a person reviews three requests with the keyboard only, and the
reviews are in the request log. Screenshots go to ``$KOTONE_TEST_SCREENSHOTS`` (default: the test's tmp dir)
for people to look at; their paths are printed. Without a browser the test skips, saying why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kotone_pipeline.cycle.config import LoopConfig
from kotone_pipeline.cycle.flywheel import step_reviewed_requests
from kotone_pipeline.domain.data.dims import DIMS
from kotone_pipeline.services.artifacts import CycleArtifacts
from kotone_pipeline.services.request_log import RequestLog
from kotone_pipeline.serving.review_app import create_review_app
from kotone_pipeline_tests.browser import browser, new_page, screenshot  # noqa: F401 (fixture)
from kotone_pipeline_tests.serving.test_app import _uvicorn
from kotone_pipeline_tests.serving.test_review_app import TOKEN, TRAIN, logged

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TEXTS = [
    "A stomping techno track for a night drive through neon streets",
    "雨の日のカフェで流れる、やさしいピアノのBGMをお願いします",
    "Compose something nostalgic with a music box for the ending credits",
    "Need a loud orchestral fanfare with brass for the boss fight",
]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("KOTONE_TEST_SCREENSHOTS") or tmp_path / "screenshots")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, RequestLog, list[dict]]]:
    log = RequestLog(tmp_path / "home")
    rows = [logged(text, {**dict.fromkeys(DIMS, 5), "energy": 2 + i}) for i, text in enumerate(TEXTS)]
    log.append(rows)
    with _uvicorn(create_review_app(RequestLog(tmp_path / "home"), TRAIN, token=TOKEN)) as url:
        yield url, log, rows


def _current(page: Page) -> str:
    return page.locator("#text").inner_text()


def test_three_requests_reviewed_with_the_keyboard_are_in_the_log(
    browser: Browser,  # noqa: F811
    served: tuple[str, RequestLog, list[dict]],
    shots: Path,
) -> None:
    url, log, rows = served
    by_text = {r["text"]: r for r in rows}
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(url)
    # The server has a token: the page asks for it once, then keeps it.
    page.locator("#token").wait_for(state="visible")
    print("screenshot:", screenshot(page, shots, "review_token"))
    page.locator("#token").fill(TOKEN)
    page.keyboard.press("Enter")
    page.locator("#card").wait_for(state="visible")
    page.locator("#reviewer").fill("ana")
    page.keyboard.press("Escape")  # leave the name field: keys now drive the sliders
    assert page.locator("#progress").inner_text() == "1 of 4"
    assert page.locator("#reason").inner_text()
    print("screenshot:", screenshot(page, shots, "review_first"))

    # 1: energy +3 with the right arrow, warmth (2) -2 with "-": saved with Enter.
    first = _current(page)
    before = by_text[first]["prediction"]
    for key in ("1", "ArrowRight", "ArrowRight", "ArrowRight", "2", "-", "-"):
        page.keyboard.press(key)
    assert page.locator("#dim-energy .val").inner_text() == str(min(10, before["energy"] + 3))
    print("screenshot:", screenshot(page, shots, "review_edited"))
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.getElementById('text').innerText !== {first!r}")
    assert page.locator("#progress").inner_text() == "2 of 4"

    # 2: not a music request.
    second = _current(page)
    page.keyboard.press("j")
    page.wait_for_function(f"document.getElementById('text').innerText !== {second!r}")

    # 3: skipped.
    third = _current(page)
    page.keyboard.press("s")
    page.wait_for_function(f"document.getElementById('text').innerText !== {third!r}")
    assert page.locator("#progress").inner_text() == "4 of 4"
    print("screenshot:", screenshot(page, shots, "review_last"))
    assert errors == []

    reviews = {r.request_id: r for r in log.reviews_between(0, 100)}
    assert len(reviews) == 3
    labelled = reviews[by_text[first]["request_id"]]
    assert labelled.kind == "label" and labelled.reviewer == "ana"
    assert labelled.labels == {
        **before,
        "energy": min(10, before["energy"] + 3),
        "warmth": max(0, before["warmth"] - 2),
    }
    assert labelled.reason  # why the queue showed it is kept with the review
    assert reviews[by_text[second]["request_id"]].kind == "junk"
    assert reviews[by_text[third]["request_id"]].kind == "skip"
    assert reviews[by_text[third]["request_id"]].reviewer == "ana"
    # The name is remembered for the next visit.
    page.reload()
    page.locator("#card").wait_for(state="visible")
    assert page.locator("#reviewer").input_value() == "ana"
    page.close()

    # The next cycle's reviewed_requests takes the label in, with its provenance; junk and skip train nothing.
    artifacts = CycleArtifacts(log.path.parent.parent)
    step = step_reviewed_requests(artifacts, log, LoopConfig(), "c1", [])
    assert (step.doc.reviews, step.doc.labelled, step.doc.junk, step.doc.skipped) == (3, 1, 1, 1)
    (pair,) = [*step.training, *step.field]
    assert pair.meta["request_id"] == by_text[first]["request_id"] and pair.meta["reviewers"] == ["ana"]
    assert pair.vector.model_dump() == labelled.labels and pair.origin == "reviewed"
