"""``scrub release build|verify``: policy variants, signed and audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors

if TYPE_CHECKING:
    from scrub.release.verify import FolderVerdict

release_app = typer.Typer(help="Build, verify and compare releases (research, research-safe).",
                          no_args_is_help=True)


@release_app.command("build")
@handle_errors
def build_command(
    # str, not Path: typer's Path would fold s3://bucket/x into s3:/bucket/x
    input: str = typer.Argument(..., help="The dataset: a folder of parquet shards (with "
                                "img_emb/ if it has embeddings), or s3://bucket/prefix."),
    output: str = typer.Argument(..., help="Folder (or s3://bucket/prefix) that receives one "
                                 "folder per variant."),
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
    previous: Optional[str] = typer.Option(None, "--previous", metavar="DIR",
                                            help="A previous release (its OUT folder, or one "
                                            "variant): each variant's audit compares with the "
                                            "variant of the same name."),
    from_release: Optional[str] = typer.Option(
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
    from scrub.release.job import BuildOptions, build_release
    from scrub.storage import location

    summary = build_release(BuildOptions(
        input=location(input), output=location(output), policies=policy,
        signing_key=signing_key, store=store, key_file=key_file, db_url=db_url, scores=scores,
        release_id=release_id, dataset=dataset,
        previous=location(previous) if previous is not None else None,
        from_release=location(from_release) if from_release is not None else None,
        verify_inputs=verify_inputs, workers=workers, columns=column,
        allow_empty=allow_empty, ledger_update=not no_ledger_update, engine=engine,
        address=address, progress=not quiet))
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2, sort_keys=True))
    elif not quiet:
        for name, info in summary.variants.items():
            several = (f", {info['rows_with_several_reasons']:,} of them for several reasons"
                       if info["rows_with_several_reasons"] else "")
            reused = (f"; {info['shards_reused']} shard(s) reused, {info['shards_built']} "
                      "built" if info["shards_reused"] else "")
            typer.echo(f"{name}: {info['rows_out']:,} rows ({info['removed']:,} removed"
                       f"{several}) -> {info['folder']} (audit: "
                       f"{info['folder']}.scrub/audit.html){reused}")
        typer.echo(f"release {summary.release_id}; {len(summary.marked)} request(s) marked "
                   f"applied; built in {summary.duration_seconds or 0:,.1f} s")


@release_app.command("verify")
@handle_errors
def verify_command(
    release: str = typer.Argument(..., help="The release folder release build wrote (every "
                                  "variant), or one variant folder (its manifest in "
                                  "VARIANT.scrub/); or either in s3://bucket/prefix."),
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
    from scrub.release.verify import FolderVerdict, verify_path

    verdict = verify_path(release, pubkey, store=store, key_file=key_file, db_url=db_url,
                          progress=not quiet)
    if isinstance(verdict, FolderVerdict):
        _render_folder(verdict, as_json)
        return
    manifest, found = verdict.manifest, verdict.found
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
    stale = verdict.outdated()
    if stale is not None:
        raise stale


def _render_folder(verdict: FolderVerdict, as_json: bool) -> None:
    """A release folder's verdict: one line per variant (or JSON), then its error if any."""
    signed = verdict.signed
    if as_json:
        typer.echo(json.dumps({"release_id": verdict.release_id,
                               "ok": not verdict.found, "variants": verdict.variants,
                               "problems": verdict.problems,
                               "signed_by": signed[0]["signed_by"] if signed else None},
                              indent=2, sort_keys=True))
    else:
        for name, info in verdict.variants.items():
            typer.echo(f"  {name}: " + (f"ok, {info['shards']} shard(s)" if info["ok"]
                                        else f"FAILS: {info['problem']}"))
    failure = verdict.failure()
    if failure is not None:
        raise failure
    if not as_json:
        typer.echo(f"{verdict.title}: signed by {signed[0]['signed_by']}; {verdict.checks} "
                   f"variant(s) ({', '.join(verdict.variants)}): signature, every file, every "
                   "shard and its row count verify, and the folder holds nothing else"
                   + ("" if not verdict.rematched else
                      "; no row matches the lists or requests it applied"))
    stale = verdict.outdated()
    if stale is not None:
        raise stale


@release_app.command("report")
@handle_errors
def report_command(
    release: str = typer.Argument(..., help="The release folder release build wrote (every "
                                  "variant), or one variant folder; or either in "
                                  "s3://bucket/prefix."),
    pubkey: Path = typer.Option(..., "--pubkey", metavar="PEM",
                                help="The signer's Ed25519 public key."),
    output: Path = typer.Option(Path("audit-report"), "--output", metavar="DIR",
                                help="Where to write VARIANT/audit.json and "
                                "VARIANT/audit.html."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Render each variant's audit (JSON and HTML) again from the signed artifacts alone,
    after checking the manifest's signature and the sha256 of every file read; says whether
    each equals the published one. A missing or altered artifact: exit 3, naming it."""
    from scrub.release.report import render_release
    from scrub.storage import location

    rendered = render_release(location(release), pubkey, output)
    if as_json:
        typer.echo(json.dumps([{"variant": r.variant, "release_id": r.release_id,
                                "files": {k: str(v) for k, v in r.files.items()},
                                "same_as_published": r.same} for r in rendered],
                              indent=2, sort_keys=True))
        return
    for r in rendered:
        verdicts = ", ".join(f"{name} {'identical to' if same else 'differs from'} the "
                             "published one" for name, same in r.same.items())
        typer.echo(f"{r.variant} (release {r.release_id}): {verdicts} -> "
                   f"{r.files['audit.html'].parent}")


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")


@release_app.command("diff")
@handle_errors
def diff_command(
    old: str = typer.Argument(..., help="The earlier release's variant folder (or "
                              "s3://bucket/prefix)."),
    new: str = typer.Argument(..., help="The later release's variant folder (or "
                              "s3://bucket/prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
) -> None:
    """Rows removed and added back between two releases (by sample key), and the change of
    removals per reason."""
    from scrub.release.manifest import diff_releases
    from scrub.storage import location

    report = diff_releases(location(old), location(new), progress=not quiet)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    typer.echo(f"{report['old']} -> {report['new']}: {report['removed']:,} row(s) removed, "
               f"{report['added']:,} added, {report['rows_old']:,} -> {report['rows_new']:,}")
    for reason, change in report["by_reason"].items():
        typer.echo(f"  {reason}: {change['old']:,} -> {change['new']:,} "
                   f"({change['new'] - change['old']:+,})")
