"""``scrub demo``: the whole path on a generated sample, in well under a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scrub.cli.errors import handle_errors
from scrub.cli.render import render_apply_summary
from scrub.layout import companion


def demo_command(
    workdir: Path = typer.Option(Path("scrub-demo"), "--workdir",
                                 help="Folder for the sample, the lists and the output."),
    rows: int = typer.Option(50_000, "--rows", min=1, help="Rows in the sample."),
    shards: int = typer.Option(4, "--shards", min=1, help="Parquet shards in the sample."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Worker processes (default: all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print the apply report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Generate a LAION-like sample, plant hash-list matches, scrub it; then import the lists,
    verify a takedown request and build the signed research and research-safe releases."""
    from scrub.demo import run_demo, run_release_demo

    if shards > rows:
        shards = rows
    demo = run_demo(workdir, rows=rows, shards=shards, seed=seed, workers=workers,
                    progress=not quiet)
    if as_json:
        typer.echo(json.dumps(demo.result.report, indent=2, sort_keys=True))
        return
    typer.echo(f"sample:       {demo.dataset} ({rows:,} rows, {shards} shards, seed {seed})")
    typer.echo(f"lists:        {', '.join(str(p) for p in demo.lists)}")
    typer.echo(f"planted:      {demo.planted_rows:,} rows")
    typer.echo(render_apply_summary(demo.result.report, demo.result.path))
    release = run_release_demo(demo, seed=seed, workers=workers, progress=not quiet)
    typer.echo(f"\nrelease {release.release_id} (lists in {demo.workdir / 'store'}, request "
               f"{release.request} verified in {demo.workdir / 'ledger.db'}):")
    for name, folder in release.variants.items():
        typer.echo(f"  {name + ':':15s} {release.rows_out[name]:,} rows -> {folder}")
    for folder in release.variants.values():  # beside each variant's shards, never among them
        typer.echo(f"  audit:          {companion(folder) / 'audit.html'}")
    typer.echo(f"  verify with:    scrub release verify "
               f"{next(iter(release.variants.values())).parent} --pubkey {release.public_key}")


def register(app: typer.Typer) -> None:
    app.command("demo")(handle_errors(demo_command))
