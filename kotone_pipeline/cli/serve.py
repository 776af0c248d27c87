"""``kotone serve``: the current champion behind an HTTP JSON API (uvicorn, one worker)."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Annotated, Any

import typer

from kotone_pipeline.cli._common import fail, handle_errors

# Starlette, uvicorn and the model code are imported inside the command, so `kotone --help` starts fast.

EXIT_SERVE_ERROR = 1

HELP = """Serve the current champion (under KOTONE_HOME) as an HTTP JSON API.

Endpoints:
  POST /predict  {"text": ..., "source_type"?: ...}
    -> {"request_id", "model_id", "prediction": {six dims}, "latency_ms",
        "source_type"}
  POST /predict/batch  {"items": [{"text", "source_type"?, "id"?}, ...]}
    -> {"model_id", "predictions": [{"id"?, "request_id", "prediction"}],
        "latency_ms"}
  POST /feedback  {"request_id", "labels"?: {six dims}, "comment"?}
    stored beside the logged request (404 unknown id, 422 bad labels)
  GET /healthz  status ok, degraded or no_champion (503); request_log
    counts logged and not-logged items
  GET /model    the served champion: id, promoted_at, holdout/human MAE
  GET /docs, GET /openapi.json

A newly promoted champion is loaded in the background and swapped in with
no restart and no failed request; if it cannot be loaded, the old one keeps
serving and /healthz says degraded. With no champion yet the server starts
anyway and answers 503 until one is promoted.
Errors are JSON {"error": ...}: 400 bad JSON, 413 body too large,
422 bad fields, 503 no champion.

Request log: every answered item is logged (time UTC, text, source_type,
model id, prediction, latency) under KOTONE_HOME/requests/ for people to
review (`kotone review`); the request id is in the answer. On by default;
--no-log or KOTONE_REQUEST_LOG=off turns it off. KOTONE_REQUEST_LOG_MAX_ROWS
and KOTONE_REQUEST_LOG_MAX_AGE_DAYS cap it. A background thread writes it:
a full disk or a locked log never fails or slows a request; such items are
counted as not_logged in /healthz.

Ctrl+C or SIGTERM stops it gracefully: requests in flight finish.
Exit codes: 0 stopped; 1 the address cannot be used (port in use,
unknown host); 2 bad arguments.

Examples:
  kotone serve
  kotone serve --port 9000 --host 0.0.0.0
  kotone serve --no-log
  curl -s localhost:8000/predict -d '{"text": "a rainy-day piano piece"}'
"""


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a taken port is one clear error (and --port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise fail(f"cannot resolve host {host!r}: {exc.strerror}", code=EXIT_SERVE_ERROR) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use: stop the other server or pass --port"
        else:
            message = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise fail(message, code=EXIT_SERVE_ERROR) from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _log_to_stderr() -> None:
    # Reloads and load failures are worth seeing in the terminal; only this package's serving logger.
    logger = logging.getLogger("kotone_pipeline.serving")
    if any(getattr(h, "kotone_serve", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.kotone_serve = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


@handle_errors
def serve(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port; 0 picks a free one.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = (
        "127.0.0.1"
    ),
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Larger request bodies get 413.")
    ] = 64_000,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most items per /predict/batch.")] = 256,
    check_interval: Annotated[
        float, typer.Option("--check-interval", min=0.05, help="Seconds between checks for a new champion.")
    ] = 1.0,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (uvicorn's access log).")] = False,
    request_log: Annotated[
        bool | None,
        typer.Option(
            "--log/--no-log",
            help="Keep the request log (default: KOTONE_REQUEST_LOG, on unless set to off).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the champion over HTTP (see HELP)."""
    import uvicorn

    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.services.request_log import RequestLog
    from kotone_pipeline.services.state_places import StatePlace, champion_registry
    from kotone_pipeline.serving.app import create_app
    from kotone_pipeline.settings import load_settings

    settings = load_settings()
    logging_on = settings.request_log if request_log is None else request_log
    log = (
        RequestLog(
            kotone_home(),
            max_rows=settings.request_log_max_rows,
            max_age_days=settings.request_log_max_age_days,
        )
        if logging_on
        else None
    )

    sock = _bind(host, port)
    url = _url(sock)
    _log_to_stderr()
    app = create_app(
        champion_registry(kotone_home(), StatePlace.of(settings)),
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        check_interval_s=check_interval,
        request_log=log,
    )
    holder = app.state.holder

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                health = holder.health()
                serving = health["model_id"] or "no champion yet (503 until one is promoted)"
                typer.echo(f"serving {serving} on {url}  (docs: {url}/docs; Ctrl+C to stop)")
                where = f"logging requests to {log.path}" if log is not None else "request log off"
                typer.echo(where, err=True)
                if health["error"]:
                    typer.echo(f"warning: {health['error']}", err=True)

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets=sockets)
            # uvicorn re-raises the signal that stopped it once shut down; for a server, Ctrl+C or SIGTERM is
            # the normal end, so it exits 0 instead of as "interrupted" (130) or killed by the signal.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list) and captured:
                captured.clear()
                typer.echo("stopped", err=True)

    config = uvicorn.Config(
        app,
        workers=1,
        lifespan="on",
        access_log=access_log,
        log_level="info" if access_log else "warning",
        timeout_graceful_shutdown=5,
    )
    typer.echo(f"loading the champion from {holder.registry.where()} ...", err=True)
    try:
        Server(config).run(sockets=[sock])
    finally:
        sock.close()


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve)
