"""What the Dagster UI renders as markdown keeps every placeholder: no ``<id>`` read as an HTML tag."""

from __future__ import annotations

import dagster as dg
import pytest

from kotone_pipeline.definitions import build_definitions
from kotone_pipeline.orchestration.metadata import escape_tags, md_table, readable
from kotone_pipeline_tests.markdown_text import definition_texts, swallowed


def test_the_scan_finds_a_placeholder_outside_code_and_only_there() -> None:
    assert swallowed("alias cycle-<id> that the runs use") == ["<id>"]
    assert swallowed("alias `cycle-<id>` and ```\n<id>\n``` and a < b > c and \\<id>") == []
    assert swallowed("</id> and <cycle_id> and <details><summary>x</summary></details>") == ["</id>", "<cycle_id>"]


def test_markdown_metadata_escapes_placeholders_but_keeps_code_and_meant_html() -> None:
    text = "aliases cycle-<id>, `cycle-<id>` and <details><summary>paths</summary>a</details>"
    escaped = escape_tags(text)
    assert escaped == "aliases cycle-\\<id>, `cycle-<id>` and <details><summary>paths</summary>a</details>"
    assert escape_tags(escaped) == escaped  # escaping twice changes nothing
    value = readable({"log": dg.MetadataValue.md(text)})["log"]
    assert isinstance(value, dg.MarkdownMetadataValue) and not swallowed(value.value)


def test_a_table_cell_of_data_shows_every_tag_as_typed() -> None:
    # A request's text is data: even an element's name is shown, not rendered.
    table = md_table(["text"], [["play <b>lofi</b> for <name>"]])
    assert "play \\<b>lofi\\</b> for \\<name>" in table


@pytest.fixture(scope="module")
def defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    return build_definitions({"KOTONE_HOME": str(tmp_path_factory.mktemp("kotone"))})


def test_no_description_of_the_code_location_loses_a_placeholder(defs: dg.Definitions) -> None:
    texts = dict(definition_texts(defs))
    assert "asset split_dataset" in texts and "sensor training_jobs_sensor" in texts  # the scan reaches them
    lost = {where: swallowed(text) for where, text in texts.items() if swallowed(text)}
    assert not lost, f"markdown would drop these as HTML tags (use `code` or ID): {lost}"


def test_split_dataset_names_its_alias_readably(defs: dg.Definitions) -> None:
    text = dict(definition_texts(defs))["asset split_dataset"]
    assert "`cycle-ID`" in text
