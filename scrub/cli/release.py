"""``scrub release build|verify``: policy variants, signed and audited."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.errors import UserInputError

release_app = typer.Typer(help="Build, verify and compare releases (research, research-safe).",
                          no_args_is_help=True)


@release_app.command("build")
@handle_errors
def build_command(
    input: Path = typer.Argument(..., help="The dataset: a folder of parquet shards (with "
                                 "img_emb/ if it has embeddings)."),
    output: Path = typer.Argument(..., help="Folder that receives one folder per variant."),
    policy: list[Path] = typer.Option(..., "--policy", metavar="TOML",
                                      help="A policy (repeat: every variant in one pass)."),
    signing_key: Path = typer.Option(..., "--signing-key", metavar="PEM",
                                     help="Ed25519 private key (scrub keygen --signing)."),
    store: Optional[Path] = typer.Option(None, "--store", metavar="DIR",
                                         help="The list store (default $SCRUB_HOME/lists)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE",
                                            help="Data key of sensitive stored lists."),
    db_url: Optional[str] = typer.Option(None, "--db", metavar="URL",
                                         help="The ledger (default $SCRUB_DATABASE_URL, else "
                                         "$SCRUB_HOME/ledger.db)."),
    scores: Optional[Path] = typer.Option(None, "--scores", metavar="DIR",
                                          help="Rescored punsafe (scrub nsfw rescore)."),
    release_id: Optional[str] = typer.Option(None, "--release-id", metavar="ID"),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME",
                                          help="Dataset name in the manifest (default: the "
                                          "input folder's name)."),
    previous: Optional[Path] = typer.Option(None, "--previous", metavar="DIR",
                                            help="A previous release of the same variant, to "
                                            "compare with in the audit (single policy)."),
    from_release: Optional[Path] = typer.Option(
        None, "--from", metavar="OUT", help="Rebuild incrementally from a previous build "
        "(its OUT folder): only new list versions and requests are matched, and shards they "
        "do not touch are reused byte for byte."),
    verify_inputs: bool = typer.Option(
        False, "--verify-inputs", help="With --from: hash every input shard, instead of "
        "trusting those the previous build recorded with the same size and mtime."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1),
    column: list[str] = typer.Option([], "--column", metavar="ROLE=NAME"),
    allow_empty: bool = typer.Option(False, "--allow-empty",
                                     help="Publish a variant even if it removes every row."),
    no_ledger_update: bool = typer.Option(False, "--no-ledger-update",
                                          help="Do not mark the requests applied."),
    engine: str = options.ENGINE,
    address: Optional[str] = options.ADDRESS,
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build every policy's variant in one pass; sign manifests; write audits and removal
    lists; mark the ledger's requests applied with the release id."""
    from scrub.crypto import load_key, load_signing_key, resolve_key_file
    from scrub.dataset import parse_role_overrides
    from scrub.engine.distributed import check_engine
    from scrub.lists.store import ListStore
    from scrub.release.build import build, plan_release
    from scrub.release.manifest import Finisher
    from scrub.release.policy import load_policy

    check_engine(engine, address)
    policies = [load_policy(p) for p in policy]
    if previous is not None and len(policies) != 1:
        raise UserInputError("--previous compares one variant: give a single --policy")
    private = load_signing_key(signing_key)
    key_path = resolve_key_file(key_file)
    key = load_key(key_path) if key_path else None
    ledger = None
    if any(p.ledger for p in policies):
        from scrub.ledger.db import make_engine
        from scrub.ledger.service import IdentitySeal, Ledger

        # the key opens the requests' items and authenticates the ledger's history
        ledger = Ledger(make_engine(db_url), seal=IdentitySeal(key) if key else None)
    release = plan_release(policies, store=ListStore(store) if store else None, key=key,
                           ledger=ledger, scores=scores)
    from cryptography.hazmat.primitives import serialization

    secret = hashlib.sha256(b"scrub-release-secret" + private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())).digest()
    reuse = None
    if from_release is not None:
        from scrub.release.build import prepare_reuse

        reuse = prepare_reuse(from_release, input, release, policies,
                              store=ListStore(store) if store else None, key=key,
                              ledger=ledger, scores=scores, secret=secret,
                              signer=private.public_key(), verify_inputs=verify_inputs)
    elif verify_inputs:
        raise UserInputError("--verify-inputs checks the inputs of a --from build")
    finisher = Finisher(release, input, private, dataset=dataset or input.resolve().name,
                        previous=previous, carry=reuse)
    marked: list[int] = []

    def mark_applied(published) -> None:  # type: ignore[no-untyped-def]
        """After publication, before the staging folder goes: a rerun after a kill runs it
        again (it records nothing twice). The requests are those the signed manifests name."""
        if ledger is not None and not no_ledger_update:
            marked[:] = ledger.mark_applied(
                _manifest_requests(published.variants.values(), private.public_key()),
                published.release_id, "release-builder")

    result = build(input, output, release, secret=secret, release_id=release_id,
                   workers=workers,
                   overrides=parse_role_overrides(column), allow_empty=allow_empty,
                   progress=not quiet, reuse=reuse, finish=finisher, engine=engine,
                   published=mark_applied,
                   address=address)
    summary = {"release_id": result.release_id, "requests_marked_applied": len(marked),
               "variants": {name: {"folder": str(path),
                                   "rows_out": sum(int(s["rows_out"])  # type: ignore
                                                   for s in result.stats[name])}
                            for name, path in result.variants.items()}}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        for name, info in summary["variants"].items():  # type: ignore[attr-defined]
            typer.echo(f"{name}: {info['rows_out']:,} rows -> {info['folder']} "
                       f"(audit: {info['folder']}/audit.html)")
        typer.echo(f"release {result.release_id}; {len(marked)} request(s) marked applied")


def _manifest_requests(folders, public_key) -> list[int]:  # type: ignore[no-untyped-def]
    """The ledger requests the signed manifests of a release's variants say it applied."""
    from scrub.release.signed import read_signed_manifest

    requests: set[int] = set()
    for folder in folders:
        record = read_signed_manifest(folder, public_key).get("ledger") or {}
        requests.update(int(r) for r in record.get("requests", []))
    return sorted(requests)


@release_app.command("verify")
@handle_errors
def verify_command(
    release: Path = typer.Argument(..., help="A variant folder (holding manifest.json)."),
    pubkey: Path = typer.Option(..., "--pubkey", metavar="PEM"),
    store: Optional[Path] = typer.Option(None, "--store", metavar="DIR",
                                         help="Also check no row matches the store's lists "
                                         "the manifest names."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE"),
    db_url: Optional[str] = typer.Option(None, "--db", metavar="URL",
                                         help="Also check no row matches the ledger's "
                                         "verified requests."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check the signature and its signer, that the folder holds exactly the files the
    manifest lists (hashes, row counts) and, given the store and the ledger, that no row of the
    release matches them. Prints the signer's fingerprint."""
    from scrub.release.manifest import verify_release

    manifest = verify_release(release, pubkey)
    matches = None
    if store is not None or db_url is not None:
        matches = _rematch(release, manifest, store, key_file, db_url)
        if matches:
            from scrub.errors import ExternalSourceError

            raise ExternalSourceError(f"release {manifest['release_id']}: {matches:,} row(s) "
                                      "match the lists or requests it should have removed")
    if as_json:
        typer.echo(json.dumps({"release_id": manifest["release_id"], "ok": True,
                               "signed_by": manifest["signed_by"],
                               "shards": len(manifest["shards"]), "matches": matches}))
    else:
        typer.echo(f"release {manifest['release_id']} ({manifest['variant']}): signed by "
                   f"{manifest['signed_by']}; signature, every file, "
                   f"{len(manifest['shards'])} shard(s) and their row counts verify"
                   + ("" if matches is None else "; no row matches the lists or requests"))


def _rematch(folder: Path, manifest: dict, store: Path | None, key_file: Path | None,
             db_url: str | None) -> int:
    from scrub.crypto import load_key, resolve_key_file
    from scrub.dataset import detect_roles
    from scrub.engine.filtering import iter_batches
    from scrub.engine.kernel import decide
    from scrub.engine.plan import add_ledger_rules, plan_for_apply
    from scrub.lists.store import ListStore

    key_path = resolve_key_file(key_file)
    key = load_key(key_path) if key_path else None
    refs = [entry["label"] for entry in manifest.get("lists", [])] if store else []
    plan = plan_for_apply([], refs, store=ListStore(store) if store else None, key=key)
    if db_url is not None and manifest.get("ledger"):
        from scrub.ledger.db import make_engine
        from scrub.ledger.service import IdentitySeal, Ledger

        book = Ledger(make_engine(db_url), seal=IdentitySeal(key) if key else None)
        add_ledger_rules(plan, book.enforced_items(), watermark=book.watermark())
    count = 0
    import pyarrow.parquet as pq

    for shard in manifest["shards"]:
        parquet = pq.ParquetFile(folder / shard["name"])
        roles = detect_roles(parquet.schema_arrow)
        for batch in iter_batches(parquet):
            count += int(decide(plan, batch, roles).drop.sum())
    return count


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")


@release_app.command("diff")
@handle_errors
def diff_command(
    old: Path = typer.Argument(..., help="The earlier release's variant folder."),
    new: Path = typer.Argument(..., help="The later release's variant folder."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rows removed and added back between two releases (by sample key), and the change of
    removals per reason."""
    from scrub.release.manifest import diff_releases

    report = diff_releases(old, new)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo(f"{report['old']} -> {report['new']}: {report['removed']:,} row(s) removed, "
               f"{report['added']:,} added, {report['rows_old']:,} -> {report['rows_new']:,}")
    for reason, change in report["by_reason"].items():
        typer.echo(f"  {reason}: {change['old']:,} -> {change['new']:,} "
                   f"({change['new'] - change['old']:+,})")
