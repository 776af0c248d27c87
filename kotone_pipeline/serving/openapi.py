"""The API's contract: its limits, and the OpenAPI 3 document and docs page of ``kotone serve``, written by hand
(the endpoints are few and stable). ``serving/app.py`` serves both at ``/openapi.json`` and ``/docs``."""

from __future__ import annotations

import html
import json
from typing import Any

from kotone_pipeline.domain.data.dims import DIMS, MAX_VALUE, MIN_VALUE, SOURCE_TYPES

# What a request may hold (the app enforces them; the document states them).
DEFAULT_MAX_BODY_BYTES = 64_000
DEFAULT_MAX_BATCH = 256
DEFAULT_SOURCE_TYPE = "request_text"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json_body(ref: str, example: Any) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}, "example": example}},
    }


def _ok(ref: str, example: Any, description: str = "OK") -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}, "example": example}},
    }


def openapi_document(
    *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_batch: int = DEFAULT_MAX_BATCH
) -> dict[str, Any]:
    """The OpenAPI 3 description of the API, written by hand (the endpoints are few and stable)."""
    dims_example = dict.fromkeys(DIMS, 5)
    dims = {
        "type": "object",
        "nullable": True,
        "description": f"The six dims, integers {MIN_VALUE}..{MAX_VALUE}; null when the model's output "
        "was not a valid vector.",
        "properties": {dim: {"type": "integer", "minimum": MIN_VALUE, "maximum": MAX_VALUE} for dim in DIMS},
        "required": list(DIMS),
    }
    text = {"type": "string", "minLength": 1, "description": "The text to predict; not blank."}
    source_type = {"type": "string", "enum": list(SOURCE_TYPES), "default": DEFAULT_SOURCE_TYPE}
    item_id = {"description": "Any JSON value; echoed back with the item's prediction."}
    request_id = {
        "type": "string",
        "nullable": True,
        "description": "The id this answer is logged under (send it to POST /feedback); null when the request "
        "log is off or the model gave no valid prediction.",
    }
    too_large = _error_response(f"The body is over {max_body_bytes} bytes.")
    bad_json = _error_response("The body is not JSON (or is empty).")
    no_champion = _error_response("No champion is being served yet.")
    schemas: dict[str, Any] = {
        "Dims": dims,
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "PredictRequest": {
            "type": "object",
            "properties": {"text": text, "source_type": source_type},
            "required": ["text"],
        },
        "PredictResponse": {
            "type": "object",
            "properties": {
                "request_id": request_id,
                "model_id": {"type": "string"},
                "prediction": {"$ref": "#/components/schemas/Dims"},
                "latency_ms": {"type": "number", "description": "The model's time for this text."},
                "source_type": source_type,
            },
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "maxItems": max_batch,
                    "items": {
                        "type": "object",
                        "properties": {"text": text, "source_type": source_type, "id": item_id},
                        "required": ["text"],
                    },
                }
            },
            "required": ["items"],
        },
        "BatchResponse": {
            "type": "object",
            "properties": {
                "model_id": {"type": "string"},
                "predictions": {
                    "type": "array",
                    "description": "One per item, in input order; id only when the item had one.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": item_id,
                            "request_id": request_id,
                            "prediction": {"$ref": "#/components/schemas/Dims"},
                        },
                    },
                },
                "latency_ms": {"type": "number", "description": "The model's time for the whole batch."},
            },
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok", "no_champion", "degraded"]},
                "model_id": {"type": "string", "nullable": True},
                "promoted_at": {"type": "string", "nullable": True},
                "loaded_at": {"type": "string", "nullable": True},
                "reloading": {"type": "boolean"},
                "error": {
                    "type": "string",
                    "nullable": True,
                    "description": "Why the registry's latest champion is not the one served (a failed load).",
                },
                "model_calls": {"type": "integer", "description": "Model calls made for POST /predict."},
                "texts_predicted": {"type": "integer", "description": "Texts those calls predicted."},
                "request_log": {
                    "type": "object",
                    "description": "The request log: items logged, items not logged (a full disk, a locked "
                    "log; the requests were answered all the same), items waiting for the writer, the last "
                    "error. Only enabled=false when the log is off.",
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "logged": {"type": "integer"},
                        "not_logged": {"type": "integer"},
                        "pending": {"type": "integer"},
                        "last_error": {"type": "string", "nullable": True},
                    },
                },
            },
        },
        "FeedbackRequest": {
            "type": "object",
            "properties": {
                "request_id": {"type": "string", "description": "From a /predict or /predict/batch answer."},
                "labels": {
                    "$ref": "#/components/schemas/Dims",
                    "description": "What the six values should have been (all six, integers 0..10).",
                },
                "comment": {"type": "string"},
            },
            "required": ["request_id"],
        },
        "Feedback": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "request_id": {"type": "string"},
                "at": {"type": "string", "description": "UTC"},
                "labels": {"$ref": "#/components/schemas/Dims"},
                "comment": {"type": "string", "nullable": True},
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "model_id": {"type": "string"},
                "model_uri": {"type": "string"},
                "cycle_id": {"type": "string"},
                "run_id": {"type": "string"},
                "promoted_at": {"type": "string"},
                "holdout_mae": {"type": "number"},
                "human_mae": {"type": "number", "nullable": True},
                "per_dim_mae": {"type": "object", "additionalProperties": {"type": "number"}},
                "decision_id": {"type": "string", "nullable": True},
                "decision_reason": {"type": "string"},
                "forced": {"type": "boolean"},
                "loaded_at": {"type": "string"},
            },
        },
    }
    predict_example = {"text": "a quiet rainy-day piano piece", "source_type": "request_text"}
    batch_example = {"items": [{"id": 1, "text": "a quiet rainy-day piano piece"}, {"text": "stomping techno"}]}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kotone serve",
            "version": "1",
            "description": "The current champion's six-dim predictions. The server reloads a newly promoted "
            "champion without a restart; every answer is logged under its request_id for people to review "
            '(`kotone review`) unless the log is off; errors are JSON objects {"error": "..."}.',
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict the six dims of one text",
                    "requestBody": _json_body("PredictRequest", predict_example),
                    "responses": {
                        "200": _ok(
                            "PredictResponse",
                            {
                                "request_id": "req_3f2a9c0d1e4b5a6c7d8e",
                                "model_id": "cycle-007-local",
                                "prediction": dims_example,
                                "latency_ms": 1.2,
                                "source_type": "request_text",
                            },
                        ),
                        "400": bad_json,
                        "413": too_large,
                        "422": _error_response("Text missing, blank or not a string, or an unknown source_type."),
                        "503": no_champion,
                    },
                }
            },
            "/predict/batch": {
                "post": {
                    "summary": f"Predict up to {max_batch} texts at once",
                    "requestBody": _json_body("BatchRequest", batch_example),
                    "responses": {
                        "200": _ok(
                            "BatchResponse",
                            {
                                "model_id": "cycle-007-local",
                                "predictions": [
                                    {"id": 1, "request_id": "req_3f2a9c0d1e4b5a6c7d8e", "prediction": dims_example},
                                    {"request_id": "req_0b1c2d3e4f5a6b7c8d9e", "prediction": dims_example},
                                ],
                                "latency_ms": 2.5,
                            },
                        ),
                        "400": bad_json,
                        "413": too_large,
                        "422": _error_response(f"A bad item (the error names it) or more than {max_batch} items."),
                        "503": no_champion,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Whether a champion is served, and whether the latest one loaded",
                    "responses": {
                        "200": _ok(
                            "Health",
                            {
                                "status": "ok",
                                "model_id": "cycle-007-local",
                                "model_calls": 12,
                                "texts_predicted": 40,
                                "request_log": {
                                    "enabled": True,
                                    "logged": 40,
                                    "not_logged": 0,
                                    "pending": 0,
                                    "last_error": None,
                                },
                            },
                            "ok or degraded; model_calls / texts_predicted count /predict batching since start; "
                            "request_log counts what was logged and what could not be",
                        ),
                        "503": _ok("Health", {"status": "no_champion", "model_id": None}, "No champion yet"),
                    },
                }
            },
            "/feedback": {
                "post": {
                    "summary": "An app's feedback on one answer (the right values, a comment), stored beside the "
                    "logged request",
                    "requestBody": _json_body(
                        "FeedbackRequest",
                        {"request_id": "req_3f2a9c0d1e4b5a6c7d8e", "labels": dims_example, "comment": "too loud"},
                    ),
                    "responses": {
                        "200": _ok(
                            "Feedback",
                            {
                                "seq": 1,
                                "request_id": "req_3f2a9c0d1e4b5a6c7d8e",
                                "at": "2026-03-01T12:00:00.000+00:00",
                                "labels": dims_example,
                                "comment": "too loud",
                            },
                        ),
                        "400": bad_json,
                        "404": _error_response("No logged request has that id (or the request log is off)."),
                        "413": too_large,
                        "422": _error_response("Labels not six integers 0..10, no request_id, or nothing to store."),
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The champion being served",
                    "responses": {
                        "200": _ok("Model", {"model_id": "cycle-007-local", "holdout_mae": 0.29}),
                        "404": _error_response("No champion yet."),
                    },
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
            "/docs": {
                "get": {"summary": "A page describing the endpoints", "responses": {"200": {"description": "OK"}}}
            },
        },
        "components": {"schemas": schemas},
    }


def docs_html(spec: dict[str, Any]) -> str:
    """A self-contained page rendered from the OpenAPI document: nothing is fetched from elsewhere."""
    sections = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts = [
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>",
                f"<p>{html.escape(op['summary'])}</p>",
            ]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "example" in body:
                parts.append(f"<p>Request body:</p><pre>{html.escape(json.dumps(body['example'], indent=2))}</pre>")
            rows = "".join(
                f"<tr><td>{code}</td><td>{html.escape(resp['description'])}</td></tr>"
                for code, resp in op["responses"].items()
            )
            parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table>")
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
            if "example" in ok:
                parts.append(f"<p>Response:</p><pre>{html.escape(json.dumps(ok['example'], indent=2))}</pre>")
            sections.append("<section>" + "".join(parts) + "</section>")
    info = spec["info"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(info['title'])}</title>"
        "<style>body{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}"
        "pre{background:#f4f4f4;padding:.6rem}td,th{padding:.2rem .8rem;text-align:left}"
        "section{border-top:1px solid #ddd}</style></head><body>"
        f"<h1>{html.escape(info['title'])}</h1><p>{html.escape(info['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3).</p>"
        + "".join(sections)
        + "</body></html>"
    )
