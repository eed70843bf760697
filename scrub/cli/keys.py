"""``scrub keygen``: a data key for encryption at rest, or an Ed25519 signing key pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from scrub.cli.errors import handle_errors
from scrub.crypto import key_id, public_key_path, write_key_file, write_signing_keypair


@handle_errors
def keygen_command(
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Key file to create (0600; default scrub.key); "
                                               "with --signing the private key (default "
                                               "signing.pem), its public key beside it as "
                                               "NAME.pub (signing.pub)."),
    signing: bool = typer.Option(False, "--signing",
                                 help="Make an Ed25519 signing pair (for release build "
                                      "--signing-key and release verify --pubkey)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    as_json: bool = typer.Option(False, "--json", help="Print the files and fingerprint as "
                                 "JSON."),
) -> None:
    """Create a new key; prints only its public fingerprint."""
    if signing:
        private = output or Path("signing.pem")
        public = public_key_path(private)
        fingerprint = write_signing_keypair(private, public, force=force)
        typer.echo(json.dumps({"private_key": str(private), "public_key": str(public),
                               "fingerprint": fingerprint}, indent=2) if as_json
                   else f"wrote {private} (private, 0600) and {public}; {fingerprint}")
        return
    target = output or Path("scrub.key")
    key = write_key_file(target, force=force)
    typer.echo(json.dumps({"key_file": str(target), "key_id": key_id(key)}, indent=2)
               if as_json else f"wrote {target} (0600); key id {key_id(key)}")


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen_command)
