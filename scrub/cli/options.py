"""Options shared by the commands that process shards: where the work runs."""

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
