"""Every command's --help as a person sees it: no text swallowed by the markup renderer (a stray " ."
where "[default: ...]" was), no line cut in the middle of a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# One process renders every command's help through the real console script entry point (rich markup on).
RENDER = r"""
import contextlib, io, json, sys
from typer.main import get_command
from kotone_pipeline.cli import app

def walk(cmd, path):
    yield path
    if getattr(cmd, "commands", None):  # a group (typer vendors its own click)
        for name, sub in sorted(cmd.commands.items()):
            yield from walk(sub, path + [name])

out = {}
for path in walk(get_command(app), []):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            app([*path, "--help"], prog_name="kotone")
        except SystemExit:
            pass
    out[" ".join(path) or "kotone"] = buffer.getvalue()
print(json.dumps(out))
"""


def _helps() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    done = subprocess.run([sys.executable, "-c", RENDER], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_no_help_text_loses_words_to_markup_or_wrapping() -> None:
    helps = _helps()
    assert {"kotone", "status", "demo", "cycle new", "data generate", "review", "champion rollback"} <= set(helps)
    problems = []
    for command, text in helps.items():
        for line in text.splitlines():
            body = line.strip("│ ").rstrip()
            if body.endswith(" .") or " . " in body:
                problems.append(f"{command}: {line.strip()}")
            # A word cut at the box edge leaves a hyphen-less fragment followed by a lowercase continuation;
            # rich wraps at spaces, so a line ending in a letter directly against the border is the symptom.
            if line.endswith("│") and len(line) >= 100 and line[-2].isalpha():
                problems.append(f"{command}: cut mid-word: {line.strip()}")
    assert problems == []
