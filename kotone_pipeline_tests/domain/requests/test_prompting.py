"""The one prompt/completion format shared by the training script and the pipeline (no heavy deps)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kotone_pipeline.domain.data.dims import DIMS, SOURCE_TYPES
from kotone_pipeline.domain.data.schemas import Vector
from kotone_pipeline.domain.model import predictor
from kotone_pipeline.domain.requests import prompting
from kotone_pipeline.training import TRAIN_SCRIPT

REQUEST = "Could you make a hushed, warm tune for a lantern-lit alley?"
RULE = (
    "Compose from these parts:\n"
    "style: 70s Folk (style_70s_folk)\n"
    "instrument: Warm Cello (inst_cello_warm)\n"
    "mood: Calm (mood_calm)\n"
    "gimmick: Rain Loop (gimmick_rain)"
)
# docs/design.md § Dims: what 0 and 10 mean for each dim.
MEANINGS = {
    "energy": ("silent, still", "intense, driving"),
    "warmth": ("mechanical, cold", "warm, cosy"),
    "brightness": ("dark", "bright, sparkling"),
    "acousticness": ("electronic", "acoustic"),
    "complexity": ("simple, bare", "complex, layered"),
    "nostalgia": ("futuristic", "nostalgic"),
}

# The reference implementation's regex (PEP 723, "Reference Implementation").
PEP723_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
vectors = st.tuples(*[st.integers(0, 10)] * len(DIMS)).map(Vector.from_values)


@pytest.fixture(scope="module")
def standalone_script():
    """The script file loaded on its own, as ``uv run`` sees it: not through the kotone package."""
    spec = importlib.util.spec_from_file_location("standalone_train_lora", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("text", "source_type"), [(REQUEST, "request_text"), (RULE, "rule_prompt")])
def test_prompt_holds_instruction_every_dim_meaning_and_the_commission(text, source_type):
    prompt = prompting.build_prompt(text, source_type)

    assert prompt.endswith(text)  # the commission comes last, verbatim (multi-line rule prompts too)
    assert "0 to 10" in prompt and "JSON" in prompt
    for dim, (low, high) in MEANINGS.items():
        assert f"- {dim}: 0 = {low}; 10 = {high}" in prompt
    # Dims are listed in the canonical order, the order of the completion's keys.
    assert [prompt.index(f"- {d}:") for d in DIMS] == sorted(prompt.index(f"- {d}:") for d in DIMS)


def test_prompt_tells_the_two_source_types_apart():
    request = prompting.build_prompt("same words", "request_text")
    rule = prompting.build_prompt("same words", "rule_prompt")

    assert request != rule
    assert "free-text request" in request and "catalog parts" in rule


def test_prompt_strips_surrounding_whitespace_of_the_text():
    padded = prompting.build_prompt(f"  {REQUEST}\n", "request_text")
    assert padded == prompting.build_prompt(REQUEST, "request_text")


@pytest.mark.parametrize(
    ("text", "source_type", "message"),
    [(REQUEST, "tweet", "source_type"), ("   ", "request_text", "text"), ("", "rule_prompt", "text")],
)
def test_prompt_rejects_bad_input(text, source_type, message):
    with pytest.raises(ValueError, match=message):
        prompting.build_prompt(text, source_type)


def test_chat_messages_wrap_the_same_prompt_after_a_system_message():
    messages = prompting.build_messages(REQUEST, "request_text")

    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == prompting.SYSTEM_PROMPT
    assert messages[1]["content"] == prompting.build_prompt(REQUEST, "request_text")


@pytest.mark.parametrize(("text", "source_type"), [(REQUEST, "request_text"), (RULE, "rule_prompt")])
def test_pipeline_and_standalone_script_build_identical_prompts(standalone_script, text, source_type):
    assert standalone_script.build_prompt(text, source_type) == prompting.build_prompt(text, source_type)
    assert standalone_script.build_messages(text, source_type) == prompting.build_messages(text, source_type)
    assert standalone_script.PROMPT_VERSION == prompting.PROMPT_VERSION


def test_script_top_level_imports_only_the_standard_library():
    """Heavy packages must be imported inside functions, so the pipeline can import the prompt builder."""
    tree = ast.parse(TRAIN_SCRIPT.read_text(encoding="utf-8"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            top_level.add((node.module or "").split(".")[0])
    assert top_level, "expected some imports"
    assert top_level <= set(sys.stdlib_module_names) | {"__future__"}


def test_script_declares_its_dependencies_inline():
    """PEP 723 metadata, read with the reference regex, so ``uv run <url>`` installs what it imports."""
    text = TRAIN_SCRIPT.read_text(encoding="utf-8")
    blocks = [m for m in PEP723_BLOCK.finditer(text) if m.group("type") == "script"]
    assert len(blocks) == 1
    lines = blocks[0].group("content").splitlines(keepends=True)
    toml = "".join(line[2:] if line.startswith("# ") else line[1:] for line in lines)
    metadata = tomllib.loads(toml)
    names = {re.split(r"[<>=!~\[ ]", dep, maxsplit=1)[0] for dep in metadata["dependencies"]}
    assert {"torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub"} <= names
    assert "requires-python" in metadata


def test_script_dims_and_source_types_match_the_domain(standalone_script):
    assert prompting.SCRIPT_DIMS == DIMS
    assert tuple(standalone_script.SOURCE_DESCRIPTIONS) == SOURCE_TYPES


def test_completion_is_compact_json_in_dims_order():
    vector = Vector(energy=7, warmth=3, brightness=5, acousticness=8, complexity=4, nostalgia=6)
    shuffled = {d: vector.as_dict()[d] for d in reversed(DIMS)}

    expected = '{"energy":7,"warmth":3,"brightness":5,"acousticness":8,"complexity":4,"nostalgia":6}'
    assert prompting.format_completion(shuffled) == expected
    assert prompting.format_completion(vector) == expected


@given(vectors)
def test_the_predictor_format_is_compact_json_of_the_six_dims_in_order(vector):
    text = predictor.format_completion(vector)
    assert " " not in text
    assert list(json.loads(text).items()) == [(d, getattr(vector, d)) for d in DIMS]


@pytest.mark.parametrize(
    ("vector", "field"),
    [
        ({d: 5 for d in DIMS if d != "nostalgia"}, "nostalgia"),
        ({**{d: 5 for d in DIMS}, "tempo": 5}, "tempo"),
        ({**{d: 5 for d in DIMS}, "energy": 11}, "energy"),
        ({**{d: 5 for d in DIMS}, "warmth": 7.5}, "warmth"),
        ({**{d: 5 for d in DIMS}, "brightness": "7"}, "brightness"),
        ({**{d: 5 for d in DIMS}, "complexity": True}, "complexity"),
    ],
)
def test_completion_rejects_invalid_vectors_naming_the_field(vector, field):
    with pytest.raises(ValueError, match=field):
        prompting.format_completion(vector)


@given(vectors)
def test_parse_completion_round_trips(vector):
    raw = prompting.format_completion(vector)

    assert prompting.parse_completion(raw) == vector.as_dict()
    assert prompting.parse_completion(f"  {raw}</s>\n") == vector.as_dict()
    assert prompting.parse_vector(raw) == vector


def test_parse_completion_accepts_integral_floats_as_ints():
    raw = json.dumps({d: 4.0 for d in DIMS})

    parsed = prompting.parse_completion(raw)
    assert parsed == {d: 4 for d in DIMS}
    assert all(type(v) is int for v in parsed.values())


GOOD = '{"energy":7,"warmth":3,"brightness":5,"acousticness":8,"complexity":4,"nostalgia":6}'


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        GOOD[:40],  # cut off mid-answer
        GOOD[:-1],  # missing the closing brace
        GOOD.replace(',"nostalgia":6', ""),  # a dim missing
        GOOD.replace("}", ',"tempo":5}'),  # an extra key
        GOOD.replace('"energy":7', '"energy":11'),
        GOOD.replace('"energy":7', '"energy":-1'),
        GOOD.replace('"energy":7', '"energy":7.5'),
        GOOD.replace('"energy":7', '"energy":"7"'),
        GOOD.replace('"energy":7', '"energy":true'),
        GOOD.replace('"energy":7', '"energy":null'),
        GOOD + GOOD,  # two answers
        "[7, 3, 5, 8, 4, 6]",
        "energy 7, warmth 3, brightness 5, acousticness 8, complexity 4, nostalgia 6",
        '{"energy":7,"warmth":3,"brightness":5,"acousticness":8,"complexity":4,"nostalgia":{"v":6}}',
    ],
)
def test_parse_completion_rejects_partial_or_invalid_output(raw):
    assert prompting.parse_completion(raw) is None
    assert prompting.parse_vector(raw) is None


dim_values = st.one_of(st.integers(-3, 13), st.floats(allow_nan=True), st.text(max_size=3), st.booleans(), st.none())
candidate_outputs = st.one_of(
    st.text(max_size=60),
    st.dictionaries(st.sampled_from([*DIMS, "tempo"]), dim_values, max_size=7).map(json.dumps),
    st.tuples(st.text(max_size=5), vectors.map(predictor.format_completion), st.text(max_size=5)).map("".join),
)


@given(candidate_outputs)
def test_parse_completion_gives_six_in_range_ints_or_nothing(raw):
    parsed = prompting.parse_completion(raw)
    if parsed is not None:
        assert list(parsed) == list(DIMS) or set(parsed) == set(DIMS)
        assert all(type(v) is int and 0 <= v <= 10 for v in parsed.values())
        assert predictor.parse_completion(raw).as_dict() == parsed


chatter = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=8)


@given(chatter, vectors, chatter)
def test_a_completion_inside_chatter_is_recovered(prefix, vector, suffix):
    assert predictor.parse_completion(prefix + predictor.format_completion(vector) + suffix) == vector
