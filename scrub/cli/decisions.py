"""``scrub decisions show OUTPUT``: an auditor's view of why each row of a run was removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scrub.cli.errors import handle_errors
from scrub.crypto import load_key, resolve_key_file
from scrub.engine.decisions import describe_records, read_decisions
from scrub.layout import companion, companion_of
from scrub.runtime import LEGACY_STATE_DIR

decisions_app = typer.Typer(help="Decision records of apply runs.", no_args_is_help=True)


@decisions_app.command("show")
@handle_errors
def show_command(
    run: Path = typer.Argument(..., metavar="OUTPUT", help="The OUTPUT folder of a run."),
    shard: Optional[str] = typer.Option(None, "--shard", help="One shard only."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE",
                                            help="Key of encrypted records "
                                                 "(default: $SCRUB_KEY_FILE)."),
    limit: int = typer.Option(50, "--limit", min=0, help="Rows to print per shard (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines, one row each."),
) -> None:
    """Each removed row: shard, row number, reasons, sources and evidence (distance)."""
    resolved = resolve_key_file(key_file)
    key = load_key(resolved) if resolved else None
    # OUTPUT.scrub/ (or that folder itself); an older scrub kept it in OUTPUT/.scrub/
    state = run if companion_of(run) and (run / "decisions").is_dir() else companion(run)
    if not state.is_dir() and (run / LEGACY_STATE_DIR).is_dir():
        state = run / LEGACY_STATE_DIR
    for name, records in read_decisions(state, key=key, shard=shard):
        rows = describe_records(state, records if not limit else records.slice(0, limit))
        if as_json:
            for row in rows:
                typer.echo(json.dumps({"shard": name, **row}))
            continue
        typer.echo(f"{name}: {records.num_rows:,} removed row(s)")
        for row in rows:
            distance = f" distance {row['distance']}" if row["distance"] is not None else ""
            typer.echo(f"  row {row['row']}: {', '.join(row['reasons'])} by "
                       f"{', '.join(row['sources'])}{distance}")


def register(app: typer.Typer) -> None:
    app.add_typer(decisions_app, name="decisions")
