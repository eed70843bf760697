"""``scrub lists import|ls|show|rm|verify|trust``: the versioned list store. Metadata only."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from scrub.cli.errors import handle_errors
from scrub.crypto import load_key, resolve_key_file
from scrub.errors import ScrubError
from scrub.lists.hashlist import ListFormat
from scrub.lists.store import ListStore, ListVersion

lists_app = typer.Typer(help="The versioned, verified, encrypted list store.",
                        no_args_is_help=True)

STORE = typer.Option(None, "--store", metavar="DIR",
                     help="List store (default: $SCRUB_HOME/lists).")
KEY_FILE = typer.Option(None, "--key-file", metavar="FILE",
                        help="Key for sensitive lists (default: $SCRUB_KEY_FILE).")
AS_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _store(path: Optional[Path]) -> ListStore:
    return ListStore(path) if path else ListStore()


def _key(path: Optional[Path]) -> bytes | None:
    resolved = resolve_key_file(path)
    return load_key(resolved) if resolved else None


def _summary(meta: ListVersion) -> str:
    counts = ", ".join(f"{t} {n:,}" for t, n in meta.counts.items()) or "no entries"
    flags = ["sensitive, encrypted" if meta.sensitive else "public", meta.kind]
    if meta.signed_by:
        flags.append(f"signed by {meta.signed_by}")
    change = f"+{meta.added:,} -{meta.removed:,}" + (" (delta)" if meta.delta else "")
    return f"{meta.ref}  source {meta.source}  {'; '.join(flags)}  {counts}  [{change}]"


@lists_app.command("import")
@handle_errors
def import_command(
    file: Path = typer.Argument(..., help="The list file (text, CSV/TSV, JSONL)."),
    name: str = typer.Option(..., "--name", help="List name."),
    source: str = typer.Option(..., "--source", help="Organisation that supplied it."),
    version: str = typer.Option(..., "--version", help="The supplier's version label."),
    type_: Optional[str] = typer.Option(None, "--type", help="Type of plain-text values."),
    list_format: ListFormat = typer.Option(ListFormat.auto, "--format", help="File format."),
    sensitive: Optional[bool] = typer.Option(
        None, "--sensitive/--public",
        help="Encrypt at rest and never show values (default: on for hash sets)."),
    signature: Optional[Path] = typer.Option(None, "--signature", metavar="SIG",
                                             help="Detached Ed25519 signature of FILE."),
    terms: str = typer.Option("", "--terms", help="Licence or usage terms."),
    kind: str = typer.Option("block", "--kind", help="block (default) or allow."),
    suppresses: list[str] = typer.Option([], "--suppresses", metavar="NAME",
                                         help="For an allow-list: a list it suppresses."),
    delta: bool = typer.Option(False, "--delta",
                               help="Add to the previous version instead of replacing it."),
    site: Optional[str] = typer.Option(None, "--site", metavar="URL",
                                       help="The site of a tdmrep.json or robots-style file."),
    key_file: Optional[Path] = KEY_FILE,
    store: Optional[Path] = STORE,
    as_json: bool = AS_JSON,
) -> None:
    """Validate, verify and store a new version of a list."""
    meta = _store(store).import_list(
        file, name=name, source=source, version=version, type_name=type_, fmt=list_format,
        sensitive=sensitive, signature=signature, terms=terms, kind=kind,
        suppresses=suppresses, delta=delta, key=_key(key_file), site=site)
    typer.echo(json.dumps(asdict(meta), indent=2) if as_json else f"stored {_summary(meta)}")


@lists_app.command("ls")
@handle_errors
def ls_command(store: Optional[Path] = STORE, as_json: bool = AS_JSON) -> None:
    """Every list with its latest version."""
    catalog = _store(store).catalog()
    if as_json:
        typer.echo(json.dumps({n: [asdict(v) for v in vs] for n, vs in catalog.items()},
                              indent=2))
        return
    if not catalog:
        typer.echo("the store holds no lists")
    for versions in catalog.values():
        typer.echo(f"{_summary(versions[-1])}  ({len(versions)} version(s))")


@lists_app.command("show")
@handle_errors
def show_command(ref: str = typer.Argument(..., metavar="NAME[@VERSION]"),
                 store: Optional[Path] = STORE, as_json: bool = AS_JSON) -> None:
    """A list version's metadata and counts (never its values), and the list's history."""
    lists = _store(store)
    meta = lists.resolve(ref)
    if as_json:
        typer.echo(json.dumps(asdict(meta), indent=2))
        return
    for field_name, value in asdict(meta).items():
        typer.echo(f"{field_name:>13}: {value}")
    typer.echo("      history:")
    for version in lists.catalog()[meta.name]:
        typer.echo(f"               {_summary(version)}  received {version.received_at}")


@lists_app.command("rm")
@handle_errors
def rm_command(ref: str = typer.Argument(..., metavar="NAME[@VERSION]"),
               store: Optional[Path] = STORE) -> None:
    """Remove one version, or every version of a list."""
    for meta in _store(store).remove(ref):
        typer.echo(f"removed {meta.ref}")


@lists_app.command("verify")
@handle_errors
def verify_command(key_file: Optional[Path] = KEY_FILE, store: Optional[Path] = STORE) -> None:
    """Check every stored file against the catalog (contents too, given the key)."""
    problems = _store(store).verify(key=_key(key_file))
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise ScrubError(f"the store has {len(problems)} problem(s)")
    typer.echo("store OK")


@lists_app.command("trust")
@handle_errors
def trust_command(source: str = typer.Option(..., "--source", help="Organisation."),
                  key: Path = typer.Option(..., "--key", help="Its Ed25519 public key."),
                  store: Optional[Path] = STORE) -> None:
    """Register a source's signing key; its imports then need a valid --signature."""
    fingerprint = _store(store).trust(source, key)
    typer.echo(f"trusted {source}: {fingerprint}")


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
