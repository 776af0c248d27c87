"""Finding text the Dagster UI's markdown renderer would swallow: ``<id>`` outside code is read as an HTML tag."""

from __future__ import annotations

import re
from collections.abc import Iterator

import dagster as dg

from kotone_pipeline.orchestration.metadata import HTML_ELEMENTS

# A fenced block or an inline code span (any run of backticks, closed by the same run).
CODE = re.compile(r"```.*?```|(`+).+?\1", re.DOTALL)
# What markdown takes for an HTML tag: `<` then a letter (or `/` and a letter); `\<` is an escaped `<`.
TAG = re.compile(r"(?<!\\)</?([A-Za-z][\w-]*)[^<>\n]*>")


def swallowed(text: str) -> list[str]:
    """The ``<word>`` pieces of ``text`` outside code spans, which a markdown renderer drops as unknown tags
    (the HTML elements our markdown means as HTML aside)."""
    return [m.group(0) for m in TAG.finditer(CODE.sub("", text)) if m.group(1).lower() not in HTML_ELEMENTS]


def definition_texts(defs: dg.Definitions) -> Iterator[tuple[str, str]]:
    """(where, text) for every description and markdown metadata value the UI renders from the definitions."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        yield f"asset {key.to_user_string()}", node.description or ""
        for name, value in (node.metadata or {}).items():
            if isinstance(value, dg.MarkdownMetadataValue):
                yield f"asset {key.to_user_string()} metadata {name}", value.value or ""
    for check in graph.asset_check_keys:
        yield f"check {check.name}", graph.get_check_spec(check).description or ""
    for job in repo.get_all_jobs():
        yield f"job {job.name}", job.description or ""
    for sensor in repo.sensor_defs:
        yield f"sensor {sensor.name}", sensor.description or ""
    for name, resource in repo.get_top_level_resources().items():
        yield f"resource {name}", getattr(resource, "description", None) or ""
