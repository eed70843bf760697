"""``scrub lists import|ls|show|rm|verify|trust|seal``: the versioned list store. Metadata only."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from scrub.cli.errors import handle_errors
from scrub.crypto import KeyFileError, load_key, resolve_key_file
from scrub.errors import ScrubError, UserInputError
from scrub.lists.hashlist import ListFormat
from scrub.lists.store import CatalogSealError, ListStore, ListVersion, resolve_in

lists_app = typer.Typer(help="The versioned, verified, encrypted list store.",
                        no_args_is_help=True)

STORE = typer.Option(None, "--store", metavar="DIR",
                     help="List store (default: $SCRUB_HOME/lists).")
KEY_FILE = typer.Option(None, "--key-file", metavar="FILE",
                        help="Key for sensitive lists (default: $SCRUB_KEY_FILE).")
AS_JSON = typer.Option(False, "--json", help="Machine-readable output.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress on stderr.")
#: The list file formats, as ``--format`` names them.
FORMATS = ", ".join(f.value for f in ListFormat)


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
    if meta.trust_change:
        flags.append(meta.trust_change)
    change = f"+{meta.added:,} -{meta.removed:,}" + (" (delta)" if meta.delta else "")
    return f"{meta.ref}  source {meta.source}  {'; '.join(flags)}  {counts}  [{change}]"


@lists_app.command("import")
@handle_errors
def import_command(
    file: Path = typer.Argument(..., help="The list file (text, CSV/TSV, JSONL)."),
    name: str = typer.Option(..., "--name", help="List name."),
    source: str = typer.Option(..., "--source", help="Organisation that supplied it."),
    version: str = typer.Option(..., "--version", help="The supplier's version label."),
    type_: Optional[str] = typer.Option(None, "--type",
                                        help="Type of plain-text values (default: inferred: "
                                             "md5, sha1, sha256)."),
    list_format: ListFormat = typer.Option(ListFormat.auto, "--format",
                                           help=f"File format: {FORMATS}."),
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
    allow_unsigned: bool = typer.Option(
        False, "--allow-unsigned",
        help="Accept this version unsigned although its list (or source) requires a signature; "
             "recorded in the version."),
    retrust: bool = typer.Option(
        False, "--retrust",
        help="Bind the list to the key now registered for --source (the version must be signed "
             "with it); recorded in the version."),
    site: Optional[str] = typer.Option(None, "--site", metavar="URL",
                                       help="The site of a tdmrep.json or robots-style file."),
    key_file: Optional[Path] = KEY_FILE,
    store: Optional[Path] = STORE,
    as_json: bool = AS_JSON,
    quiet: bool = QUIET,
) -> None:
    """Validate, verify and store a new version of a list (progress on stderr: steps and
    entries, never a value)."""
    meta = _store(store).import_list(
        file, name=name, source=source, version=version, type_name=type_, fmt=list_format,
        sensitive=sensitive, signature=signature, terms=terms, kind=kind,
        suppresses=suppresses, delta=delta, key=_key(key_file), site=site,
        allow_unsigned=allow_unsigned, retrust=retrust, progress=not quiet)
    typer.echo(json.dumps(asdict(meta), indent=2) if as_json else f"stored {_summary(meta)}")


def _shown_catalog(lists: ListStore, key_file: Optional[Path]) -> dict[str, list[ListVersion]]:
    """The catalog to show: checked against its seal when a key is at hand. A catalog not yet
    sealed is shown (for review before `scrub lists seal`) with a warning on stderr."""
    key = _key(key_file)
    if key is None:
        catalog = lists.catalog()
        if lists.sealed_with() is not None:
            typer.echo("scrub: note: catalog.json is sealed; without the key it is shown "
                       "unchecked", err=True)
        return catalog
    try:
        return lists.catalog(key=key)
    except CatalogSealError:
        if lists.sealed_with() is not None:
            raise
    typer.echo("scrub: warning: catalog.json is not sealed; what follows is not authenticated "
               "(once reviewed, run `scrub lists seal`)", err=True)
    return lists.catalog()


@lists_app.command("ls")
@handle_errors
def ls_command(store: Optional[Path] = STORE, as_json: bool = AS_JSON,
               key_file: Optional[Path] = KEY_FILE) -> None:
    """Every list with its latest version (checked against the catalog's seal, given the key)."""
    catalog = _shown_catalog(_store(store), key_file)
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
def show_command(ref: str = typer.Argument(..., metavar="NAME[@VERSION]",
                                            help="A list, or one version of it."),
                 store: Optional[Path] = STORE, as_json: bool = AS_JSON,
                 key_file: Optional[Path] = KEY_FILE) -> None:
    """A list version's metadata and counts (never its values), and the list's history."""
    lists = _store(store)
    catalog = _shown_catalog(lists, key_file)
    meta = resolve_in(catalog, ref, lists.root)
    if as_json:
        typer.echo(json.dumps(asdict(meta), indent=2))
        return
    for field_name, value in asdict(meta).items():
        typer.echo(f"{field_name:>13}: {value}")
    typer.echo("      history:")
    for earlier in catalog[meta.name]:
        typer.echo(f"               {_summary(earlier)}  received {earlier.received_at}")


@lists_app.command("rm")
@handle_errors
def rm_command(ref: str = typer.Argument(..., metavar="NAME[@VERSION]",
                                          help="A list (every version), or one version."),
               key_file: Optional[Path] = KEY_FILE, store: Optional[Path] = STORE,
               as_json: bool = AS_JSON) -> None:
    """Remove one version, or every version of a list (a sealed store needs the key)."""
    removed = _store(store).remove(ref, key=_key(key_file))
    if as_json:
        typer.echo(json.dumps({"removed": [meta.ref for meta in removed]}, indent=2))
        return
    for meta in removed:
        typer.echo(f"removed {meta.ref}")


@lists_app.command("verify")
@handle_errors
def verify_command(key_file: Optional[Path] = KEY_FILE, store: Optional[Path] = STORE,
                   as_json: bool = AS_JSON) -> None:
    """Check the catalog's seal and every stored file against it (contents too, given the key)."""
    lists = _store(store)
    key = _key(key_file)
    problems = lists.verify(key=key)
    sealed = lists.sealed_with()
    if as_json:
        typer.echo(json.dumps({"ok": not problems, "problems": problems,
                               "sealed_with": sealed, "authenticated": key is not None
                               and sealed is not None}, indent=2))
    else:
        for problem in problems:
            typer.echo(problem)
    if problems:
        raise ScrubError(f"the store has {len(problems)} problem(s)")
    if as_json:
        return
    if key is not None and sealed is not None:
        typer.echo(f"store OK (catalog sealed with key id {sealed}; every file matches it)")
    else:
        typer.echo("store OK (every file matches catalog.json, which is NOT authenticated: it "
                   "is not sealed; a store written with a data key is)")


@lists_app.command("trust")
@handle_errors
def trust_command(source: str = typer.Option(..., "--source", help="Organisation."),
                  pubkey: Optional[Path] = typer.Option(None, "--pubkey", metavar="PEM",
                                                        help="Its Ed25519 public key."),
                  key: Optional[Path] = typer.Option(None, "--key", hidden=True,
                                                     help="Old spelling of --pubkey."),
                  key_file: Optional[Path] = KEY_FILE, store: Optional[Path] = STORE,
                  as_json: bool = AS_JSON) -> None:
    """Register a source's signing key; its imports then need a valid --signature.

    A list already signed stays bound to the key that signed it: a version signed with a new key
    is accepted only with `scrub lists import --retrust` (recorded)."""
    public = pubkey or key
    if public is None or (pubkey is not None and key is not None):
        raise UserInputError("give the source's public key once, with --pubkey PEM")
    fingerprint = _store(store).trust(source, public, key=_key(key_file))
    typer.echo(json.dumps({"source": source, "fingerprint": fingerprint}, indent=2) if as_json
               else f"trusted {source}: {fingerprint}")


@lists_app.command("seal")
@handle_errors
def seal_command(key_file: Optional[Path] = KEY_FILE, store: Optional[Path] = STORE,
                 force: bool = typer.Option(
                     False, "--force", help="Seal even a catalog whose seal fails or whose files "
                                            "do not match it (after reviewing it)."),
                 as_json: bool = AS_JSON) -> None:
    """Seal a catalog written by an older scrub or without a key, once (recorded in it).

    Every stored file is checked against the catalog first (sensitive ones decrypted); from then
    on every change needs the key and every use given the key checks the seal."""
    key = _key(key_file)
    if key is None:
        raise KeyFileError("sealing the catalog needs the data key",
                           hint="pass --key-file or set SCRUB_KEY_FILE")
    lists = _store(store)
    record = lists.seal(key, force=force)
    if as_json:
        typer.echo(json.dumps({"sealed": record is not None, "key_id": lists.sealed_with(),
                               **(record or {})}, indent=2, default=str))
        return
    if record is None:
        typer.echo(f"catalog.json is already sealed with key id {lists.sealed_with()}; "
                   "nothing to do")
        return
    typer.echo(f"sealed {lists.catalog_path}: {record['lists']} list(s), {record['versions']} "
               f"version(s), {record['trusted_sources']} trusted source key(s), key id "
               f"{record['key_id']}; recorded in the catalog")


def register(app: typer.Typer) -> None:
    app.add_typer(lists_app, name="lists")
