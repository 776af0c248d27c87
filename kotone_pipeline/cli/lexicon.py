"""``kotone lexicon propose|show|accept``: lexicon patches learned from people's labels (issue 23).

A proposed patch changes nothing; ``accept`` is what brings entries into the lexicon in effect
(``$KOTONE_HOME/lexicon``), whose version the next datasets record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kotone_pipeline.cli._common import console, handle_errors

app = typer.Typer(help="Lexicon patches proposed from people's labels.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="lexicon")


def patch_table(cycle_id: str, patch) -> Table:  # noqa: ANN001 (LexiconPatch: imported lazily)
    table = Table(title=f"lexicon patch of {cycle_id}: {len(patch.entries)} entr(y/ies) on {patch.base_version}")
    for column in ("entry", "phrase", "dims (0..100)", "was", "rows", "groups", "CV gain"):
        table.add_column(column)
    for e in patch.entries:
        dims = ", ".join(f"{d} {v}" for d, v in e.dims.items())
        was = ", ".join(f"{d} {v}" for d, v in e.previous.items())
        table.add_row(e.id, e.phrase or "", dims, was, str(len(e.evidence)), str(e.groups), f"{e.cv_gain:.4f}")
    return table


@app.command("propose")
@handle_errors
def propose(
    cycle_id: Annotated[str, typer.Argument(help="Cycle the patch belongs to.")],
    people: Annotated[Path, typer.Option("--people", help="JSONL of people-labelled Pair rows.")],
) -> None:
    """Propose a patch from people's rows (origins human/imported/reviewed) and save it for CYCLE."""
    from kotone_pipeline.domain.data.importer import load_pairs
    from kotone_pipeline.domain.model.correction import is_people_row
    from kotone_pipeline.domain.requests.lexicon_patch import propose_lexicon_patch
    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.services.state_places import lexicon_store

    store = lexicon_store(kotone_home())
    rows = [p for p in load_pairs(people, None).rows if is_people_row(p)]
    if not rows:
        raise ValueError(f"{people}: no rows with origin human, imported or reviewed")
    lexicon, _ = store.current()
    patch = propose_lexicon_patch(rows, lexicon)
    path = store.save_patch(cycle_id, patch)
    console.print(patch_table(cycle_id, patch))
    console.print(f"proposed (not applied) -> {path}; accept with: kotone lexicon accept {cycle_id} [--entries ID,...]")


@app.command("show")
@handle_errors
def show(cycle_id: Annotated[str, typer.Argument(help="Cycle whose proposed patch to show.")]) -> None:
    """Show a cycle's proposed patch and the lexicon version in effect."""
    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.services.state_places import lexicon_store

    store = lexicon_store(kotone_home())
    console.print(patch_table(cycle_id, store.load_patch(cycle_id)))
    console.print(f"lexicon in effect: {store.current()[1]} ({len(store.accepted())} accepted entr(y/ies))")


@app.command("accept")
@handle_errors
def accept(
    cycle_id: Annotated[str, typer.Argument(help="Cycle whose patch to accept.")],
    entries: Annotated[
        str | None, typer.Option("--entries", help="Comma-separated entry ids (default: every entry).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Accept a cycle's proposed entries into the lexicon in effect; prints the new lexicon version."""
    from kotone_pipeline.services.home import kotone_home
    from kotone_pipeline.services.state_places import lexicon_store

    ids = [i.strip() for i in entries.split(",") if i.strip()] if entries is not None else None
    if ids is not None and not ids:
        raise ValueError("--entries names no entry")
    accepted, version = lexicon_store(kotone_home()).accept(cycle_id, ids, accepted_by="cli")
    if as_json:
        typer.echo(json.dumps({"cycle_id": cycle_id, "accepted": [e.id for e in accepted], "lexicon_version": version}))
    else:
        console.print(f"accepted {len(accepted)} entr(y/ies) of {cycle_id}; lexicon in effect: {version}")
