"""``scrub apply INPUT OUTPUT --hashlist FILE ...``: remove matching rows from a dataset copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.cli.render import render_apply_summary
from scrub.crypto import load_key, resolve_key_file
from scrub.dataset import parse_role_overrides
from scrub.lists.hashlist import ListFormat, parse_list_argument
from scrub.lists.types import registered_types

_FORMATS = ", ".join(f.value for f in ListFormat)


def apply_command(
    input: str = typer.Argument(..., help="Dataset folder of parquet shards (or one file); "
                                          "or s3://bucket/prefix."),
    output: str = typer.Argument(..., help="Output folder: same shard names, matches removed; "
                                           "or s3://bucket/prefix."),
    hashlist: list[str] = typer.Option([], "--hashlist", metavar="[TYPE:]FILE",
                                       help="Hash-list file (text, CSV/TSV, JSONL, ...), its "
                                            "plain values' type in front if needed (e.g. "
                                            "domain:optout.txt); repeatable. Opt-out lists "
                                            "(url, url_prefix, host, domain) are public, "
                                            "others sensitive."),
    stored: list[str] = typer.Option([], "--list", metavar="NAME[@VERSION]",
                                     help="A list from the store (latest version by default); "
                                          "repeatable."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE",
                                            help="Data key: reads encrypted stored lists, "
                                                 "encrypts decision records "
                                                 "(default: $SCRUB_KEY_FILE)."),
    store: Optional[Path] = typer.Option(None, "--store", metavar="DIR",
                                         help="List store (default: $SCRUB_HOME/lists)."),
    type_: Optional[str] = typer.Option(None, "--type", metavar="TYPE",
                                        help="Type of every --hashlist's plain values (default: "
                                             "inferred: md5, sha1, sha256; one list's type: "
                                             "--hashlist TYPE:FILE); any of "
                                             + ", ".join(sorted(registered_types())) + "."),
    list_format: ListFormat = typer.Option(ListFormat.auto, "--format",
                                           help=f"Hash-list file format: {_FORMATS}."),
    site: Optional[str] = typer.Option(None, "--site", metavar="URL",
                                       help="The site of tdmrep.json / robots-style files."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Worker processes (default: all cores)."),
    column: list[str] = typer.Option([], "--column", metavar="ROLE=NAME",
                                     help="Override a column role, e.g. url=image_url."),
    pdq_radius: int = typer.Option(31, "--pdq-radius", min=0, max=255,
                                   help="PDQ match radius in bits (31 = within 31)."),
    phash_radius: int = typer.Option(8, "--phash-radius", min=0, max=63,
                                     help="pHash/dHash match radius in bits."),
    pdq_quality_floor: int = typer.Option(50, "--pdq-quality-floor", min=0, max=100,
                                          help="Rows whose pdq_quality is lower never match."),
    ledger: bool = typer.Option(False, "--ledger",
                                help="Also remove what verified takedown requests name."),
    db_url: Optional[str] = typer.Option(None, "--db", metavar="URL",
                                         help="Ledger database (default: $SCRUB_DATABASE_URL, "
                                              "else $SCRUB_HOME/ledger.db)."),
    punsafe_above: Optional[float] = typer.Option(
        None, "--punsafe-above", min=0.0, max=1.0, metavar="T",
        help="Also drop rows whose punsafe exceeds T (reason nsfw)."),
    scores: Optional[Path] = typer.Option(
        None, "--scores", metavar="DIR", help="Rescored punsafe from `scrub nsfw rescore` (one "
        "parquet per shard, same names, row-aligned)."),
    trust_score: Optional[str] = typer.Option(
        None, "--trust-score", metavar="stored|rescored",
        help="Which punsafe --punsafe-above reads (default: rescored when --scores is given)."),
    force: bool = typer.Option(False, "--force",
                               help="Write into an OUTPUT that holds something else."),
    engine: str = options.ENGINE,
    address: Optional[str] = options.ADDRESS,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or notes on stderr."),
) -> None:
    """Remove every row matching the given lists; write the rest to OUTPUT (its shards only)
    and the report beside it, to OUTPUT.scrub/apply-report.json."""
    from scrub.apply import ApplyRequest, apply, plan_builder
    from scrub.engine.plan import MatchOptions
    from scrub.runtime import check_engine

    request = ApplyRequest(
        files=[parse_list_argument(text) for text in hashlist], stored=stored, store=store,
        type_name=type_, fmt=list_format, site=site,
        options=MatchOptions(pdq_radius, phash_radius, pdq_quality_floor), ledger=ledger,
        db_url=db_url, punsafe_above=punsafe_above, scores=scores, trust_score=trust_score)
    request.check()
    check_engine(engine, address)
    build_plan = plan_builder(request)
    overrides = parse_role_overrides(column)
    key_path = resolve_key_file(key_file)
    request.key = load_key(key_path) if key_path else None
    result = apply(build_plan, input, output, workers=workers, force=force,
                   column_overrides=overrides, progress=not quiet, key=request.key,
                   engine=engine, address=address)
    withheld = result.report["decision_records"].get("withheld", 0)
    if withheld and not quiet:
        typer.echo(f"scrub: note: decision records of {withheld} shard(s) were not kept: "
                   "sensitive lists removed rows there and no key was given "
                   "(--key-file) to keep them encrypted", err=True)
    if as_json:
        # Public lists' entries that matched nothing are named here, never in the report file.
        shown = {**result.report, "unmatched_entry_values": result.unmatched_values}
        typer.echo(json.dumps(shown, indent=2, sort_keys=True))
    else:
        typer.echo(render_apply_summary(result.report, result.path))


def register(app: typer.Typer) -> None:
    app.command("apply")(handle_errors(apply_command))
