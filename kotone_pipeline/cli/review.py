"""``kotone review``: the review page over the request log, and importing / exporting reviews as JSONL."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kotone_pipeline.cli._common import fail, handle_errors

# Starlette, uvicorn, scikit-learn and the lexicon are imported inside the commands: `kotone --help` stays fast.

DEFAULT_PORT = 8100
EXIT_SERVE_ERROR = 1
IMPORTED_MODEL_ID = "imported"

HELP = """Review logged requests: a web page to label them; JSONL import/export.

`kotone serve` logs every request it answers (KOTONE_HOME/requests/).
`kotone review` serves a page where a person corrects the champion's six
values on them, one request at a time, most useful first: the queue ranks
requests by how much a label would teach (the champion disagreeing with the
lexicon reader, text unlike the training data) and keeps paraphrases apart.
A request served a minute ago is already in it: no cycle needed.

The page: six sliders 0..10; keys 1-6 pick a dim, left/right or -/+ change
it, Enter saves, S skips, J marks "not a music request".

API (what the page uses):
  GET  /review/queue?limit=N
       -> {"items": [{"id", "text", "prediction", "reason", ...}], "total"}
  POST /review/ID  {"labels": {six dims}, "reviewer": NAME}
                   or {"skip": true} or {"junk": true}
       -> the stored review; 404 unknown id, 409 this reviewer already
          reviewed it, 422 a value out of 0..10 or a missing dim

It listens on 127.0.0.1 and refuses any other host unless
KOTONE_REVIEW_TOKEN is set; with a token every API call needs
"Authorization: Bearer <token>" (the page asks for it once).

Examples:
  kotone review
  kotone review --port 9100
  KOTONE_REVIEW_TOKEN=... kotone review --host 0.0.0.0
  kotone review import labels.jsonl
  kotone review export --out reviews.jsonl
"""

IMPORT_HELP = """Import reviews from a JSONL file (e.g. a labelling tool's export).

One JSON object a line, e.g.
  {"text": "...", "labels": {"energy": 7, ...}, "reviewer": "ana"}
  {"request_id": "req_...", "energy": 7, "warmth": 3, ..., "reviewer": "ana"}
The request is named by request_id (a logged one) or by its text; a text
not in the log is added to it first, as a request of model "imported"
(under the line's request_id if it has one, so an export imports back
unchanged). The six values go in "labels" or at the top level, integers
0..10. Optional: "source_type" (request_text), "kind" (label, skip, junk),
"at".

Every line is checked first: bad lines are reported as FILE:LINE and the
reason, and nothing is written. Exit 2 on bad input.
"""

EXPORT_HELP = """Export every review as JSONL with the request's text (stdout or --out).

Each line: request_id, text, source_type, reviewer, kind (label, skip or
junk), labels, at, model_id and prediction_shown (what the reviewer saw),
reason. `kotone review import` reads it back.
"""

review_app = typer.Typer(
    help=HELP,
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["--help", "-h"]},
)


def is_local(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _request_log() -> Any:
    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.services.request_log import RequestLog
    from kotone_pipeline.settings import load_settings

    settings = load_settings()
    return RequestLog(
        kotone_home(), max_rows=settings.request_log_max_rows, max_age_days=settings.request_log_max_age_days
    )


@review_app.callback()
@handle_errors
def review(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port; 0 picks a free one.")
    ] = DEFAULT_PORT,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; other than loopback only with KOTONE_REVIEW_TOKEN set."),
    ] = "127.0.0.1",
    score_cap: Annotated[
        int, typer.Option("--score-cap", min=1, help="Most new requests one page load scores (the rest: next loads).")
    ] = 500,
) -> None:
    """Serve the review page (see HELP), unless a subcommand (import, export) is given."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from kotone_pipeline.cli.serve import _bind, _url
    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.serving.review_app import create_review_app, teacher_texts
    from kotone_pipeline.settings import load_settings

    token = load_settings().review_token
    if not is_local(host) and not token:
        raise fail(
            f"refusing to listen on {host} without a token: set KOTONE_REVIEW_TOKEN (every API call then needs "
            "it), or keep the default --host 127.0.0.1"
        )
    sock = _bind(host, port)
    url = _url(sock)
    log = _request_log()
    typer.echo("reading the training texts and scoring the waiting requests ...", err=True)
    app = create_review_app(log, teacher_texts(kotone_home()), token=token, score_cap=score_cap)
    queue = app.state.queue

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                waiting = len(log.queue_ids())
                auth = "; the API needs the token" if token else ""
                typer.echo(f"review page on {url}  ({waiting} request(s) to review{auth}; Ctrl+C to stop)")

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets=sockets)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list) and captured:
                captured.clear()
                typer.echo("stopped", err=True)

    del queue
    config = uvicorn.Config(app, workers=1, lifespan="on", access_log=False, log_level="warning")
    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()


# --- import / export -----------------------------------------------------------------------------------------


def _parse_line(obj: Any, known_ids: set[str], texts: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(review, new request or None)`` from one line, or ValueError naming what is wrong."""
    from kotone_pipeline.domain.data.dims import DIMS, SOURCE_TYPES
    from kotone_pipeline.services.request_log import ReviewError, check_labels, new_request_id

    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    reviewer = obj.get("reviewer")
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ValueError("reviewer: a name is required")
    kind = obj.get("kind", "label")
    if kind not in ("label", "skip", "junk"):
        raise ValueError(f"kind: expected label, skip or junk, got {kind!r}")
    labels = None
    if kind == "label":
        raw = obj["labels"] if "labels" in obj else {d: obj[d] for d in DIMS if d in obj}
        try:
            labels = check_labels(raw)
        except ReviewError as exc:
            raise ValueError(str(exc)) from None
    request_id, text = obj.get("request_id"), obj.get("text")
    if request_id is not None and not isinstance(request_id, str):
        raise ValueError("request_id must be a string")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise ValueError("text must be a non-empty string")
    new = None
    if request_id is not None and request_id in known_ids:
        pass
    elif text is not None and request_id is None and text in texts:
        request_id = texts[text]
    elif text is not None:
        source_type = obj.get("source_type", "request_text")
        if source_type not in SOURCE_TYPES:
            raise ValueError(f"source_type: expected one of {', '.join(SOURCE_TYPES)}, got {source_type!r}")
        shown = obj.get("prediction_shown") or obj.get("prediction")
        try:
            prediction = check_labels(shown) if shown is not None else {}
        except ReviewError:
            prediction = {}
        request_id = request_id or new_request_id()
        new = {
            "request_id": request_id,
            "text": text,
            "source_type": source_type,
            "model_id": IMPORTED_MODEL_ID,
            "prediction": prediction,
            "latency_ms": 0.0,
        }
    elif request_id is not None:
        raise ValueError(f"unknown request_id {request_id!r} and no text to add it with")
    else:
        raise ValueError("give request_id or text")
    at = obj.get("at")
    review = {"request_id": request_id, "reviewer": reviewer.strip(), "kind": kind, "labels": labels}
    if isinstance(at, str):
        review["at"] = at
    if isinstance(obj.get("reason"), str):
        review["reason"] = obj["reason"]
    return review, new


@review_app.command("import", help=IMPORT_HELP)
@handle_errors
def import_reviews(
    file: Annotated[Path, typer.Argument(help="A JSONL file of reviews.", dir_okay=False)],
) -> None:
    from kotone_pipeline.cli._common import capped
    from kotone_pipeline.services.request_log import ReviewError

    log = _request_log()
    known_ids = {rid for _, rid in _all_ids(log)}
    texts = log.ids_by_text()
    problems: list[str] = []
    reviews: list[dict[str, Any]] = []
    new_requests: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str], int] = {}
    with file.open(encoding="utf-8-sig") as lines:  # -sig: a leading BOM (Windows editors) is no part of line 1
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: invalid JSON ({exc.msg})")
                continue
            try:
                review, new = _parse_line(obj, known_ids | set(new_requests), texts)
            except (ValueError, KeyError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            if new is not None:
                new_requests[new["request_id"]] = new
                texts.setdefault(new["text"], new["request_id"])
            key = (review["request_id"], review["reviewer"])
            if key in seen:
                problems.append(f"{where}: {key[1]} already reviews this request on line {seen[key]}")
                continue
            seen[key] = number
            reviews.append(review)
    existing = {(v.request_id, v.reviewer) for v in log.reviews_of([r["request_id"] for r in reviews])}
    for review in reviews:
        key = (review["request_id"], review["reviewer"])
        if key in existing:
            problems.append(f"{file}:{seen[key]}: {key[1]} already reviewed {key[0]} in the log")
    if problems:
        from kotone_pipeline.domain.data.jsonl import problem_kinds

        ordered = sorted(problems, key=_line_number)
        kinds = problem_kinds((_line_number(p), p.split(": ", 1)[-1]) for p in ordered)
        raise fail(f"nothing imported; {len(ordered)} bad line(s): {kinds}\n" + "\n".join(capped(ordered)))
    if not reviews:
        raise fail(f"{file}: no reviews in it")
    try:
        log.import_reviews(list(new_requests.values()), reviews)
    except ReviewError as exc:
        raise fail(str(exc)) from None
    typer.echo(
        f"imported {len(reviews)} review(s) ({len(new_requests)} new request(s) added to the log as "
        f"model {IMPORTED_MODEL_ID!r}) into {log.path}"
    )


def _line_number(problem: str) -> int:
    try:
        return int(problem.split(":")[1])
    except (IndexError, ValueError):
        return 0


def _all_ids(log: Any) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(r.seq, r.request_id) for r in log.requests_between(0, log.last_seq())]


@review_app.command("export", help=EXPORT_HELP)
@handle_errors
def export_reviews(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.", dir_okay=False)
    ] = None,
) -> None:
    log = _request_log()
    reviews = log.reviews_between(0, log.last_seq("reviews"))
    requests = {r.request_id: r for r in log.requests_by_id(sorted({v.request_id for v in reviews}))}
    rows = []
    for review in reviews:
        request = requests.get(review.request_id)
        rows.append(
            {
                "request_id": review.request_id,
                "text": request.text if request else None,
                "source_type": request.source_type if request else None,
                "reviewer": review.reviewer,
                "kind": review.kind,
                "labels": review.labels,
                "at": review.at,
                "model_id": review.model_id,
                "prediction_shown": review.prediction_shown,
                "reason": review.reason,
            }
        )
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    typer.echo(f"exported {len(rows)} review(s) to {out}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
