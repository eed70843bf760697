"""``scrub release build|verify``: policy variants, signed and audited."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
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
    policy: list[Path] = typer.Option(..., "--policy", metavar="NAME|TOML",
                                      help="A stock policy (research, research-safe) or a "
                                      "policy file (repeat: every variant in one pass)."),
    signing_key: Path = typer.Option(..., "--signing-key", metavar="PEM",
                                     help="Ed25519 private key (scrub keygen --signing)."),
    store: Optional[Path] = typer.Option(None, "--store", metavar="DIR",
                                         help="The list store (default $SCRUB_HOME/lists)."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE",
                                            help="Data key of sensitive stored lists."),
    db_url: Optional[str] = options.DB,
    scores: Optional[Path] = typer.Option(None, "--scores", metavar="DIR",
                                          help="Rescored punsafe (scrub nsfw rescore)."),
    release_id: Optional[str] = typer.Option(None, "--release-id", metavar="ID",
                                             help="The release's id (default: the day and "
                                             "a digest of the job)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="NAME",
                                          help="Dataset name in the manifest (default: with "
                                          "--from, the previous release's; else the input "
                                          "folder's name)."),
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
    workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N",
                                          help="Worker processes (default: all cores)."),
    column: list[str] = typer.Option([], "--column", metavar="ROLE=NAME",
                                     help="Override a column role, e.g. url=image_url."),
    allow_empty: bool = typer.Option(False, "--allow-empty",
                                     help="Publish a variant even if it removes every row."),
    no_ledger_update: bool = typer.Option(False, "--no-ledger-update",
                                          help="Do not mark the requests applied."),
    engine: str = options.ENGINE,
    address: Optional[str] = options.ADDRESS,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON: per "
                                 "variant its rows, removals per reason and the shards built "
                                 "or reused."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Build every policy's variant in one pass; sign manifests; write audits and removal
    lists; mark the ledger's requests applied with the release id."""
    from scrub.crypto import load_key, load_signing_key, resolve_key_file
    from scrub.dataset import parse_role_overrides
    from scrub.engine.distributed import check_engine
    from scrub.lists.store import ListStore
    from scrub.release.build import build, plan_release
    from scrub.release.manifest import Finisher
    from scrub.release.policy import check_score_columns, load_policy

    check_engine(engine, address)
    policies = [load_policy(p) for p in policy]
    check_score_columns(policies, input, overrides=parse_role_overrides(column))
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
    if dataset is None and reuse is not None:  # a rebuild keeps the release's dataset name
        dataset = next(iter(reuse.manifests.values())).get("dataset")
    finisher = Finisher(release, input, private, dataset=dataset or input.resolve().name,
                        previous=previous, carry=reuse)
    marked: list[int] = []

    def mark_applied(published) -> None:  # type: ignore[no-untyped-def]
        """After publication, before the staging folder goes: a rerun after a kill runs it
        again (it records nothing twice). The requests are those the signed manifests name;
        each one's event records, per variant naming it, the rows removed per item."""
        if ledger is not None and not no_ledger_update:
            from scrub.release.build import rows_per_item

            named = _manifest_requests(published.variants, private.public_key())
            counted = rows_per_item(published.stats)
            rows = {request: {variant: counted.get(request, {}).get(variant, {})
                              for variant in sorted(variants)}
                    for request, variants in named.items()}
            marked[:] = ledger.mark_applied(sorted(named), published.release_id,
                                            "release-builder", rows=rows)

    result = build(input, output, release, secret=secret, release_id=release_id,
                   workers=workers,
                   overrides=parse_role_overrides(column), allow_empty=allow_empty,
                   progress=not quiet, reuse=reuse, finish=finisher, engine=engine,
                   published=mark_applied,
                   address=address)
    summary = {"release_id": result.release_id, "requests_marked_applied": len(marked),
               "requests_applied": marked,
               "variants": {name: _variant_summary(path, result.stats[name])
                            for name, path in result.variants.items()}}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        for name, info in summary["variants"].items():  # type: ignore[attr-defined]
            several = (f", {info['rows_with_several_reasons']:,} of them for several reasons"
                       if info["rows_with_several_reasons"] else "")
            reused = (f"; {info['shards_reused']} shard(s) reused, {info['shards_built']} "
                      "built" if info["shards_reused"] else "")
            typer.echo(f"{name}: {info['rows_out']:,} rows ({info['removed']:,} removed"
                       f"{several}) -> {info['folder']} (audit: "
                       f"{info['folder']}.scrub/audit.html){reused}")
        typer.echo(f"release {result.release_id}; {len(marked)} request(s) marked applied")


def _variant_summary(folder: Path, stats: list[dict[str, object]]) -> dict[str, object]:
    """A published variant as the build's summary shows it: counts from its audit, and how
    many of its shards were reused from the --from release and how many built."""
    from scrub.layout import companion
    from scrub.release.signed import AUDIT_JSON

    audit = json.loads((companion(folder) / AUDIT_JSON).read_text())
    reused = sum(1 for s in stats if s.get("reused"))
    return {"folder": str(folder), "rows_in": audit["rows_in"], "rows_out": audit["rows_out"],
            "removed": audit["removed"], "removed_by_reason": audit["removed_by_reason"],
            "rows_with_several_reasons": audit.get("rows_with_several_reasons", 0),
            "shards_reused": reused, "shards_built": len(stats) - reused}


def _manifest_requests(folders, public_key) -> dict[int, set[str]]:  # type: ignore
    """The ledger requests the signed manifests of a release's variants (name -> folder) say
    it applied, each with the variants that name it."""
    from scrub.release.signed import read_signed_manifest

    requests: dict[int, set[str]] = {}
    for name, folder in folders.items():
        record = read_signed_manifest(folder, public_key).get("ledger") or {}
        for request in record.get("requests", []):
            requests.setdefault(int(request), set()).add(name)
    return requests


@release_app.command("verify")
@handle_errors
def verify_command(
    release: Path = typer.Argument(..., help="The release folder release build wrote (every "
                                   "variant), or one variant folder (its manifest in "
                                   "VARIANT.scrub/)."),
    pubkey: Path = typer.Option(..., "--pubkey", metavar="PEM",
                                help="The signer's Ed25519 public key (scrub keygen --signing "
                                "wrote it beside the private key)."),
    store: Optional[Path] = typer.Option(None, "--store", metavar="DIR",
                                         help="Also check no row matches the store's lists "
                                         "the manifest names."),
    key_file: Optional[Path] = typer.Option(None, "--key-file", metavar="FILE",
                                            help="Data key of sensitive stored lists and of "
                                            "the ledger (default: $SCRUB_KEY_FILE)."),
    db_url: Optional[str] = typer.Option(None, "--db", metavar="FILE|URL",
                                         help="Also check no row matches the requests the "
                                         "release applied, and count the verified requests "
                                         "it predates (exit 4 when there are some)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Check the signature and its signer, that the folder holds exactly the files the
    manifest lists (hashes, row counts) and, given the store and the ledger, that no row of the
    release matches them. Prints the signer's fingerprint. Given the release folder, checks
    every variant (one line each) and that the folder holds nothing else."""
    from scrub.release.manifest import verify_release
    from scrub.release.signed import locate_variant

    if locate_variant(release) is None and release.is_dir():  # what release build wrote
        _verify_release_folder(release, pubkey, store, key_file, db_url, as_json,
                               progress=not quiet)
        return
    manifest = verify_release(release, pubkey, progress=not quiet)
    found = Rematch()
    if store is not None or db_url is not None:
        found = _rematch(release, manifest, store, key_file, db_url, progress=not quiet)
        if found.matches:
            from scrub.errors import ExternalSourceError

            raise ExternalSourceError(f"release {manifest['release_id']}: {found.matches:,} "
                                      "row(s) match the lists or requests it should have "
                                      "removed")
    if as_json:
        typer.echo(json.dumps({"release_id": manifest["release_id"], "ok": True,
                               "signed_by": manifest["signed_by"],
                               "shards": len(manifest["shards"]), "matches": found.matches,
                               "newer_requests": found.newer,
                               "newer_request_matches": found.newer_matches}))
    else:
        typer.echo(f"release {manifest['release_id']} ({manifest['variant']}): signed by "
                   f"{manifest['signed_by']}; signature, every file, "
                   f"{len(manifest['shards'])} shard(s) and their row counts verify"
                   + ("" if found.matches is None else
                      "; no row matches the lists or requests it applied"))
    if found.newer:
        raise _outdated(f"release {manifest['release_id']}", found.newer, found.newer_matches)


@dataclass
class Rematch:
    """What a release's rows match now: ``matches``, rows matching the lists and requests it
    applied (None: not checked); ``newer``, verified requests of the ledger it predates, and
    ``newer_matches``, its rows that they name."""

    matches: int | None = None
    newer: int = 0
    newer_matches: int = 0


def _outdated(title: str, newer: int, rows: int):  # type: ignore[no-untyped-def]
    from scrub.errors import ReleaseOutdated

    return ReleaseOutdated(
        f"{title} verifies, but predates {newer} verified request(s) in the ledger "
        f"({rows:,} of its row(s) match them)",
        hint="not a fault of the release: build a new one to apply them (scrub release build "
             "... --from OUT)")


def _verify_release_folder(root: Path, pubkey: Path, store: Path | None,
                           key_file: Path | None, db_url: str | None, as_json: bool, *,
                           progress: bool = True) -> None:
    """Every variant of a release folder checked (one line each), then one verdict: exit 3
    naming the first problem of any variant or of the folder."""
    from scrub.errors import ExternalSourceError
    from scrub.release.manifest import verify_release_folder

    checks, problems = verify_release_folder(root, pubkey, progress=progress)
    if not checks:
        raise UserInputError(f"{root}: not a release: no manifest.json in {root.name}.scrub/, "
                             "here, nor in its folders",
                             hint="give a variant folder, or the OUT folder of release build")
    variants: dict[str, dict[str, object]] = {}
    newer = newer_rows = 0
    for check in checks:
        found = Rematch()
        if check.manifest is not None and not check.problems and (store or db_url):
            found = _rematch(check.folders.rows, check.manifest, store, key_file, db_url,
                             progress=progress)
            if found.matches:
                check.problems.append(f"{check.folders.rows}: {found.matches:,} row(s) match "
                                      "the lists or requests it should have removed")
        newer, newer_rows = max(newer, found.newer), max(newer_rows, found.newer_matches)
        variants[check.folders.name] = {
            "ok": not check.problems, "matches": found.matches,
            "newer_requests": found.newer, "newer_request_matches": found.newer_matches,
            "shards": len(check.manifest["shards"]) if check.manifest else None,
            "problem": check.problems[0] if check.problems else None}
    found = [problem for check in checks for problem in check.problems] + problems
    signed = [check.manifest for check in checks if check.manifest is not None]
    ids = sorted({str(m["release_id"]) for m in signed})
    title = f"release {ids[0]}" if len(ids) == 1 else f"release folder {root}"
    if as_json:
        typer.echo(json.dumps({"release_id": ids[0] if len(ids) == 1 else None,
                               "ok": not found, "variants": variants, "problems": problems,
                               "signed_by": signed[0]["signed_by"] if signed else None},
                              indent=2, sort_keys=True))
    else:
        for name, info in variants.items():
            typer.echo(f"  {name}: " + (f"ok, {info['shards']} shard(s)" if info["ok"]
                                        else f"FAILS: {info['problem']}"))
    if found:
        raise ExternalSourceError(f"{title} fails verification: {found[0]}"
                                  + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    if not as_json:
        typer.echo(f"{title}: signed by {signed[0]['signed_by']}; {len(checks)} variant(s) "
                   f"({', '.join(variants)}): signature, every file, every shard and its row "
                   "count verify, and the folder holds nothing else"
                   + ("" if not (store or db_url) else
                      "; no row matches the lists or requests it applied"))
    if newer:
        raise _outdated(title, newer, newer_rows)


def _rematch(folder: Path, manifest: dict, store: Path | None, key_file: Path | None,
             db_url: str | None, *, progress: bool = True) -> Rematch:
    """Match the release's rows against the store's lists its manifest names and the ledger's
    verified requests, in one pass: those its signed manifest says it applied (a match is a
    fault of the release) apart from those it predates (a match is a reason to rebuild)."""
    import numpy as np

    from scrub.crypto import load_key, resolve_key_file
    from scrub.dataset import detect_roles
    from scrub.engine.filtering import iter_batches
    from scrub.engine.kernel import decide
    from scrub.engine.plan import add_ledger_rules, plan_for_apply
    from scrub.lists.store import ListStore
    from scrub.progress import Progress

    key_path = resolve_key_file(key_file)
    key = load_key(key_path) if key_path else None
    refs = [entry["label"] for entry in manifest.get("lists", [])] if store else []
    plan = plan_for_apply([], refs, store=ListStore(store) if store else None, key=key)
    newer: set[int] = set()
    if db_url is not None and manifest.get("ledger"):
        from scrub.ledger.db import make_engine
        from scrub.ledger.service import IdentitySeal, Ledger

        book = Ledger(make_engine(db_url), seal=IdentitySeal(key) if key else None)
        items = list(book.enforced_items())
        applied = {int(r) for r in manifest["ledger"].get("requests", [])}
        newer = {int(item[0]) for item in items} - applied
        add_ledger_rules(plan, items, watermark=book.watermark())
    later = frozenset(s.id for s in plan.sources
                      if s.kind == "request" and dict(s.details).get("request") in newer)
    groups = [frozenset(s.id for s in plan.sources) - later, later]
    import pyarrow.parquet as pq

    from scrub.release.signed import locate_variant

    variant = locate_variant(folder)
    rows = variant.rows if variant is not None else folder  # the variant folder: its shards
    found = Rematch(matches=0, newer=len(newer))
    meter = Progress(f"match {manifest.get('variant', folder.name)}", len(manifest["shards"]),
                     sum(int(s["rows"]) for s in manifest["shards"]), enabled=progress)
    for shard in manifest["shards"]:
        parquet = pq.ParquetFile(rows / shard["name"])
        roles = detect_roles(parquet.schema_arrow)
        for batch in iter_batches(parquet):
            decisions = decide(plan, batch, roles, groups=groups)
            found.matches += int(np.count_nonzero(decisions.group_reasons[0]))  # type: ignore
            found.newer_matches += int(np.count_nonzero(decisions.group_reasons[1]))
        meter.advance(parquet.metadata.num_rows)
    meter.finish()
    return found


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")


@release_app.command("diff")
@handle_errors
def diff_command(
    old: Path = typer.Argument(..., help="The earlier release's variant folder."),
    new: Path = typer.Argument(..., help="The later release's variant folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Rows removed and added back between two releases (by sample key), and the change of
    removals per reason."""
    from scrub.release.manifest import diff_releases

    report = diff_releases(old, new, progress=not quiet)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo(f"{report['old']} -> {report['new']}: {report['removed']:,} row(s) removed, "
               f"{report['added']:,} added, {report['rows_old']:,} -> {report['rows_new']:,}")
    for reason, change in report["by_reason"].items():
        typer.echo(f"  {reason}: {change['old']:,} -> {change['new']:,} "
                   f"({change['new'] - change['old']:+,})")
