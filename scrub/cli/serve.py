"""``scrub serve`` (the intake page and the staff console) and ``scrub users add|ls|unlock``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.cli.ledger import ACTOR, AS_JSON, KEY_FILE, _actor, _ledger
from scrub.errors import UserInputError
from scrub.ledger.vocabulary import STAFF_ROLES

users_app = typer.Typer(help="Staff accounts of the web console.", no_args_is_help=True)


@handle_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind (default: loopback only; put a TLS reverse "
                             "proxy in front to publish it)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    db_url: Optional[str] = options.DB, key_file: Optional[Path] = KEY_FILE,
    forwarded_allow_ips: Optional[str] = typer.Option(
        None, "--forwarded-allow-ips", metavar="IPS",
        help="Proxies whose X-Forwarded-For/-Proto to trust (comma-separated; default: none). "
        "Rate limits then count the client's address, and cookies are Secure over https."),
    ssl_certfile: Optional[Path] = typer.Option(None, "--ssl-certfile", metavar="PEM",
                                                help="Serve TLS directly with this certificate."),
    ssl_keyfile: Optional[Path] = typer.Option(None, "--ssl-keyfile", metavar="PEM",
                                               help="The certificate's private key."),
) -> None:
    """Serve the takedown intake page (/request, /status) and the staff console (/console)."""
    if resolve_key(key_file) is None:
        raise UserInputError("scrub serve needs the ledger key: requests are sealed with it "
                             "as they arrive, and the console opens them with it",
                             hint="pass --key-file or set SCRUB_KEY_FILE")
    if not 0 < port < 65536:
        raise UserInputError(f"--port {port} is not a port (1 to 65535)")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UserInputError("--ssl-certfile and --ssl-keyfile go together")
    _require_web_extra()
    ledger = _ledger(db_url, key_file, need_key=True)
    from scrub.ledger.staff import Staff
    from scrub.web.app import create_app
    from scrub.web.config import ServeConfig

    app = create_app(ServeConfig(ledger))
    if not Staff(ledger).users():
        typer.echo("scrub serve: no staff account yet; create one with `scrub users add NAME "
                   "--role admin`", err=True)
    import uvicorn

    scheme = "https" if ssl_certfile else "http"
    typer.echo(f"scrub serve: {scheme}://{host}:{port}/request (intake), /console (staff)",
               err=True)
    uvicorn.run(app, host=host, port=port, proxy_headers=bool(forwarded_allow_ips),
                forwarded_allow_ips=forwarded_allow_ips or "", server_header=False,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None, log_level="info")


def _require_web_extra() -> None:
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn", "python_multipart", "argon2")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise UserInputError(f"scrub serve needs the web extra ({', '.join(missing)} missing)",
                             hint="pip install 'scrub[web]'")


def resolve_key(key_file: Optional[Path]) -> Optional[Path]:
    from scrub.crypto import resolve_key_file

    return resolve_key_file(key_file)


@users_app.command("add")
@handle_errors
def add_command(
    name: str = typer.Argument(..., metavar="NAME", help="The user name."),
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(STAFF_ROLES)}."),
    replace: bool = typer.Option(False, "--replace",
                                 help="Set a new password and role for an existing user."),
    db_url: Optional[str] = options.DB, key_file: Optional[Path] = KEY_FILE,
    actor: Optional[str] = ACTOR,
) -> None:
    """Add a staff account. The password is prompted for (twice), or read from the first
    line of stdin when stdin is not a terminal; never a flag."""
    from scrub.ledger.staff import Staff, check_name, check_password

    check_name(name)
    if role not in STAFF_ROLES:
        raise UserInputError(f"--role must be one of {', '.join(STAFF_ROLES)}")
    ledger = _ledger(db_url, key_file, need_key=True)
    password = _password()
    check_password(password)
    member = Staff(ledger).add_user(name, role, password, _actor(actor), replace=replace)
    typer.echo(f"user {member.name}: {member.role}")


def _password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    if not line:
        raise UserInputError("no password on stdin", hint="pipe it in, one line")
    return line.rstrip("\r\n")


@users_app.command("ls")
@handle_errors
def ls_command(db_url: Optional[str] = options.DB, key_file: Optional[Path] = KEY_FILE,
               as_json: bool = AS_JSON) -> None:
    """List the staff accounts (a row edited outside scrub is marked altered)."""
    from scrub.ledger.staff import Staff

    users = Staff(_ledger(db_url, key_file, need_key=True)).users()
    if as_json:
        typer.echo(json.dumps(users, indent=2))
        return
    for user in users:
        state = "ALTERED" if not user["intact"] else "locked" if user["locked"] else "active"
        created = str(user["created_at"])[:10]
        typer.echo(f"{user['name']}\t{user['role']}\t{state}\tcreated {created}")


@users_app.command("unlock")
@handle_errors
def unlock_command(name: str = typer.Argument(..., metavar="NAME"),
                   db_url: Optional[str] = options.DB, key_file: Optional[Path] = KEY_FILE,
                   actor: Optional[str] = ACTOR) -> None:
    """Unlock an account locked after too many wrong passwords."""
    from scrub.ledger.staff import Staff

    Staff(_ledger(db_url, key_file, need_key=True)).unlock(name, _actor(actor))
    typer.echo(f"user {name}: unlocked")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(users_app, name="users")
