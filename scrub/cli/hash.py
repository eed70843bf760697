"""``scrub hash INPUT OUTPUT``: content and perceptual hashes of downloaded images."""

from __future__ import annotations

import json
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.errors import UserInputError
from scrub.images.hashing import DEFAULT_MAX_PIXELS, HASH_TYPES, parse_types
from scrub.images.job import hash_dataset


def hash_command(
    input: str = typer.Argument(..., help="Webdataset tars (a folder of NNNNN.tar, or one tar) "
                                          "or a folder of image files; local, or "
                                          "s3://bucket/prefix."),
    output: str = typer.Argument(..., help="Output folder: one parquet per shard, by key "
                                           "(local, or s3://bucket/prefix)."),
    types: str = typer.Option(",".join(HASH_TYPES), "--types", metavar="LIST",
                              help=f"Comma-separated hashes among {', '.join(HASH_TYPES)}."),
    dihedral: bool = typer.Option(False, "--dihedral",
                                  help="Add the 8 PDQ orientation hashes (pdq_dihedral)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Processes (default: all cores)."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1,
                                   help="Larger images are not decoded (status too_large); "
                                        "content hashes are still computed."),
    force: bool = typer.Option(False, "--force", help="Write into an OUTPUT that holds "
                                                      "something else."),
    engine: str = options.ENGINE,
    address: Optional[str] = options.ADDRESS,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Hash every image once decoded: md5/sha1/sha256 of the bytes, PDQ/pHash/dHash of pixels."""
    from scrub.runtime import check_engine

    try:
        chosen = parse_types(types)
    except ValueError as exc:
        raise UserInputError(f"--types {types!r}: {exc}") from None
    check_engine(engine, address)
    report = hash_dataset(input, output, chosen, dihedral=dihedral, workers=workers,
                          max_pixels=max_pixels, force=force, progress=not quiet,
                          engine=engine, address=address)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    elif not quiet:
        statuses = ", ".join(f"{k} {v:,}" for k, v in report["by_status"].items())
        typer.echo(f"hashed {report['samples']:,} samples in {report['shards']} shard(s) "
                   f"into {report['output']} ({statuses})")


def register(app: typer.Typer) -> None:
    app.command("hash")(handle_errors(hash_command))
