"""Options shared by several commands: where the work runs, which ledger."""

from __future__ import annotations

from typing import Optional

import typer

ENGINE = typer.Option("local", "--engine", metavar="local|ray",
                      help="Where shards are processed: local processes, or a Ray cluster "
                           "(needs the ray extra; same output bytes).")
ADDRESS: Optional[str] = typer.Option(
    None, "--address", metavar="auto|ray://HOST:PORT",
    help="With --engine ray: the cluster to join (auto: the one `ray start` runs here); "
         "default: start a local one.")

#: The ledger database, for every command that reads or changes it (parsed by
#: :func:`scrub.ledger.db.resolve_url`).
DB: Optional[str] = typer.Option(
    None, "--db", metavar="FILE|URL",
    help="The ledger: a SQLite file path, or a URL (sqlite:///PATH, postgresql://HOST/DB); "
         "default $SCRUB_DATABASE_URL, else $SCRUB_HOME/ledger.db.")
