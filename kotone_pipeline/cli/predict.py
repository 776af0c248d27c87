"""``kotone predict``: the six dims for one text, or a JSONL stream of texts, from the champion or a model directory."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kotone_pipeline.cli._common import MAX_MESSAGE_LINES, console, fail, handle_errors, require_home, status_console
from kotone_pipeline.domain.data.dims import DIMS, MAX_VALUE, SOURCE_TYPES
from kotone_pipeline.domain.data.jsonl import DataFileError
from kotone_pipeline.domain.model.predictor import PredictInput, Prediction, Predictor

# The model code (scikit-learn, the encoder, the cycle steps) is imported inside the command, so
# `kotone --help` and the other commands start fast.

CHAMPION = "champion"
BATCH_LINES = 64
EXIT_MODEL_ERROR = 1
EXIT_BAD_LINES = 2
STDIN = "-"
NO_CHAMPION = "no champion yet: run `kotone demo` or `kotone cycle new ... --run` first, or pass --model DIR"

HELP = f"""Predict the six dims of a text (or a JSONL stream) with the champion or a model directory.

The dims: {", ".join(DIMS)}; integers 0..{MAX_VALUE}.
One TEXT prints a table naming the model, or with --json one JSON object:
  {{"model_id", "text", "source_type", "prediction": {{six dims}}, "latency_ms"}}

--jsonl FILE (- for stdin) predicts many. Each input line is a JSON object
  {{"text": ..., "source_type"?: ..., "id"?: ...}}
(other keys are ignored, blank lines skipped). Each prediction goes to stdout
as one line, in input order, flushed every {BATCH_LINES} input lines:
  {{"line": N, "id"?: ..., "model_id": ..., "prediction": {{six dims}}}}
A bad line (invalid JSON, not an object, text missing, empty or not a string,
unknown source_type) is reported on stderr as FILE:LINE: reason and gets NO
output line; the other lines go on. A summary ends stderr.

Exit codes: 0 ok; 1 no champion, or the model cannot be loaded or run;
2 bad arguments, or some --jsonl lines were bad (the rest still predicted).

Examples:
  kotone predict "a quiet rainy-day piano piece"
  kotone predict "a quiet rainy-day piano piece" --json
  kotone predict "lofi, warm pads" --source-type rule_prompt -m models/local
  kotone predict --jsonl requests.jsonl > predictions.jsonl
  cat requests.jsonl | kotone predict --jsonl - -m models/local
"""


def _check_source_type(value: str) -> str:
    if value not in SOURCE_TYPES:
        raise typer.BadParameter(f"must be one of {', '.join(SOURCE_TYPES)}, got {value!r}")
    return value


@dataclass
class _Item:
    line: int
    text: str
    source_type: str
    passthrough: dict[str, Any] = field(default_factory=dict)  # the input's id, when it has one


class _Model:
    """A loaded predictor and the id to report; model failures end the command with exit code 1."""

    def __init__(self, spec: str) -> None:
        from kotone_pipeline.domain.model.encoder import EncoderError

        # Loading a model or its encoder is not bad input: the model (or the environment) is broken.
        self._errors: tuple[type[BaseException], ...] = (EncoderError, ImportError, OSError)
        with status_console.status("loading the model"):
            self.predictor, self.model_id = self._load(spec)

    def _load(self, spec: str) -> tuple[Predictor, str]:
        from kotone_pipeline.domain.model.local_model import LocalTextModel

        if spec != CHAMPION:
            try:
                model = LocalTextModel.load(Path(spec))
                self._warm_up(model)
            except (ValueError, *self._errors) as exc:
                raise fail(str(exc), code=EXIT_MODEL_ERROR) from None
            return model, model.model_id
        from kotone_pipeline.services.state_places import champion_registry

        home = require_home("whose champion to ask")
        try:
            champion = champion_registry(home).current()
        except DataFileError as exc:
            raise fail(f"the champion registry is corrupt: {exc.problems[0]}", code=EXIT_MODEL_ERROR) from None
        if champion is None:
            raise fail(NO_CHAMPION, code=EXIT_MODEL_ERROR)
        from kotone_pipeline.cycle.champion_eval import load_predictor

        try:
            predictor = load_predictor(champion.model_uri)
            self._warm_up(predictor)
        except (ValueError, *self._errors) as exc:
            message = f"cannot load the champion {champion.model_id} ({champion.model_uri}): {exc}"
            raise fail(message, code=EXIT_MODEL_ERROR) from None
        return predictor, champion.model_id

    @staticmethod
    def _warm_up(predictor: Predictor) -> None:
        # The local model loads its sentence encoder on first use: load it now, so a broken encoder is a
        # load error and latency_ms is the prediction's alone.
        from kotone_pipeline.domain.model.local_model import LocalTextModel

        if isinstance(predictor, LocalTextModel) and predictor.encoder_info is not None:
            predictor.encoder()

    def predict(self, inputs: Sequence[PredictInput]) -> list[Prediction]:
        # A LoRA model loads its weights on the first prediction: failures there are model errors too.
        try:
            return self.predictor.predict(inputs)
        except self._errors as exc:
            raise fail(f"model {self.model_id}: {exc}", code=EXIT_MODEL_ERROR) from None


def _dims(prediction: Prediction) -> dict[str, int] | None:
    return prediction.vector.as_dict() if prediction.vector is not None else None


def _parse_line(lineno: int, raw: bytes | str, default_source: str) -> tuple[_Item | None, str | None]:
    """(item, None) for a good line, (None, reason) for a bad one, (None, None) for a blank one."""
    if isinstance(raw, bytes):
        try:
            # Per line, so one bad byte costs one line; utf-8-sig drops a BOM some editors put first.
            raw = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not valid UTF-8 ({exc.reason})"
    if not raw.strip():
        return None, None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    if "text" not in obj:
        return None, "missing text"
    text = obj["text"]
    if not isinstance(text, str):
        return None, f"text must be a string, got {type(text).__name__}"
    if not text.strip():
        return None, "empty text"
    source_type = obj.get("source_type", default_source)
    if source_type not in SOURCE_TYPES:
        return None, f"unknown source_type {source_type!r} (expected one of {', '.join(SOURCE_TYPES)})"
    passthrough = {"id": obj["id"]} if "id" in obj else {}
    return _Item(lineno, text, source_type, passthrough), None


def _open_lines(source: str) -> tuple[str, IO[Any]]:
    """(label for messages, stream of lines); bytes where possible so each line is decoded on its own."""
    if source == STDIN:
        return "<stdin>", getattr(sys.stdin, "buffer", sys.stdin)
    return source, Path(source).open("rb")


def _stream(model: _Model, label: str, lines: Iterable[bytes | str], default_source: str) -> tuple[int, int]:
    """Predict line by line in batches; returns (predicted, skipped)."""
    predicted = skipped = 0
    numbered: Iterator[tuple[int, bytes | str]] = enumerate(lines, start=1)
    while batch := list(islice(numbered, BATCH_LINES)):
        items: list[_Item] = []
        for lineno, raw in batch:
            item, reason = _parse_line(lineno, raw, default_source)
            if reason is not None:
                skipped += 1
                if skipped <= MAX_MESSAGE_LINES:  # the summary line gives the total
                    typer.echo(f"{label}:{lineno}: {reason}", err=True)
            elif item is not None:
                items.append(item)
        if not items:
            continue
        predictions = model.predict([PredictInput(text=i.text, source_type=i.source_type) for i in items])
        out = "".join(
            json.dumps(
                {"line": item.line, **item.passthrough, "model_id": model.model_id, "prediction": _dims(prediction)},
                ensure_ascii=False,
            )
            + "\n"
            for item, prediction in zip(items, predictions, strict=True)
        )
        typer.echo(out, nl=False)  # click flushes after each write: a consumer sees every batch at once
        predicted += len(items)
    return predicted, skipped


def _silence_stdout() -> None:
    # After the reader of a pipe went away (`... | head`), the interpreter's final flush of stdout
    # would fail again; point the descriptor at /dev/null so the exit stays quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _predict_jsonl(model: _Model, source: str, default_source: str) -> None:
    label, stream = _open_lines(source)
    try:
        predicted, skipped = _stream(model, label, stream, default_source)
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_MODEL_ERROR) from None
    finally:
        if source != STDIN:
            stream.close()
    if predicted == skipped == 0:  # an empty input is a mistake (a wrong file, a pipe that failed upstream)
        raise fail(f"{label}: no input lines (the input is empty or blank)")
    shown = f" (the first {MAX_MESSAGE_LINES} shown above)" if skipped > MAX_MESSAGE_LINES else ""
    typer.echo(f"predicted {predicted}, skipped {skipped} bad line(s){shown}", err=True)
    if skipped:
        raise typer.Exit(EXIT_BAD_LINES)


def _print_table(model_id: str, item: PredictInput, dims: dict[str, int], latency_ms: float) -> None:
    console.print(f"model [bold]{escape(model_id)}[/bold]  ({item.source_type}, {latency_ms:.1f} ms)", soft_wrap=True)
    table = Table()
    table.add_column("dim")
    table.add_column("value", justify="right")
    table.add_column(f"0..{MAX_VALUE}")
    for dim in DIMS:
        value = dims[dim]
        table.add_row(dim, str(value), "█" * value + "·" * (MAX_VALUE - value))
    console.print(table)


@handle_errors
def predict(
    text: Annotated[
        str | None, typer.Argument(help="The text to predict (a request, or a rule prompt).", show_default=False)
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="champion|DIR",
            help="'champion': the current champion under KOTONE_HOME; or a local model directory (`model fit`; "
            "write ./champion for a directory of that name).",
        ),
    ] = CHAMPION,
    source_type: Annotated[
        str,
        typer.Option(
            "--source-type",
            callback=_check_source_type,
            help="request_text or rule_prompt; with --jsonl, for lines that give none.",
        ),
    ] = "request_text",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    jsonl: Annotated[
        str | None,
        typer.Option(
            "--jsonl",
            metavar="FILE|-",
            help="Predict every line of a JSONL file ('-': stdin), one JSON line out per good line in.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict the six dims for a text, or for every line of a JSONL file (see HELP)."""
    if jsonl is not None and text is not None:
        raise fail("pass either a TEXT or --jsonl FILE, not both")
    if jsonl is None:
        if text is None:
            raise fail("nothing to predict: pass a TEXT or --jsonl FILE|- (see `kotone predict --help`)")
        if not text.strip():
            raise fail("the text is empty")
    if jsonl is not None and jsonl != STDIN and not Path(jsonl).is_file():
        # Checked before loading the model, which takes a while.
        raise fail(f"{jsonl}: not found" if not Path(jsonl).exists() else f"{jsonl}: not a file")

    loaded = _Model(model)
    if jsonl is not None:
        _predict_jsonl(loaded, jsonl, source_type)
        return
    item = PredictInput(text=text or "", source_type=source_type)
    with status_console.status("predicting"):
        [prediction] = loaded.predict([item])
    dims = _dims(prediction)
    if dims is None:
        raise fail(f"model {loaded.model_id} gave no valid vector (output: {prediction.raw!r})", code=EXIT_MODEL_ERROR)
    if as_json:
        result = {
            "model_id": loaded.model_id,
            "text": item.text,
            "source_type": source_type,
            "prediction": dims,
            "latency_ms": round(prediction.latency_ms, 3),
        }
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        _print_table(loaded.model_id, item, dims, prediction.latency_ms)


def register(app: typer.Typer) -> None:
    app.command("predict", help=HELP)(predict)
