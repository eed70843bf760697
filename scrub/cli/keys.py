"""``scrub keygen``: a data key for encryption at rest, or an Ed25519 signing key pair."""

from __future__ import annotations

from pathlib import Path

import typer

from scrub.cli.errors import handle_errors
from scrub.crypto import key_id, write_key_file, write_signing_keypair


@handle_errors
def keygen_command(
    output: Path = typer.Option(Path("scrub.key"), "--output", "-o",
                                help="Key file to create (0600); or the private key with "
                                     "--signing."),
    signing: bool = typer.Option(False, "--signing",
                                 help="Make an Ed25519 signing pair (OUTPUT and OUTPUT.pub)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Create a new key; prints only its public fingerprint."""
    if signing:
        public = output.with_name(output.name + ".pub")
        fingerprint = write_signing_keypair(output, public, force=force)
        typer.echo(f"wrote {output} (private, 0600) and {public}; {fingerprint}")
        return
    key = write_key_file(output, force=force)
    typer.echo(f"wrote {output} (0600); key id {key_id(key)}")


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen_command)
