"""``scrub requests ...``, ``scrub ledger verify`` and ``scrub db upgrade|current|check``."""

from __future__ import annotations

import contextlib
import csv
import getpass
import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Optional

import typer

from scrub.cli import options
from scrub.cli.errors import handle_errors
from scrub.crypto import load_key, resolve_key_file
from scrub.errors import ExternalSourceError, ScrubError, UserInputError
from scrub.ledger.vocabulary import KINDS, STATUSES

if TYPE_CHECKING:
    from scrub.ledger.audit import Anchor
    from scrub.ledger.service import Ledger, RequestSpec, RequestView

requests_app = typer.Typer(help="Takedown and erasure requests.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger's tamper-evident history.", no_args_is_help=True)
db_app = typer.Typer(help="The ledger database's schema (migrations).", no_args_is_help=True)

DB = options.DB
KEY_FILE = typer.Option(None, "--key-file", metavar="FILE",
                        help="The ledger key: seals identities and items, authenticates the "
                        "history (default: $SCRUB_KEY_FILE).")
ACTOR = typer.Option(None, "--actor", help="Who acts (default: $SCRUB_ACTOR or the login).")
AS_JSON = typer.Option(False, "--json", help="Machine-readable output.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress on stderr.")


def _ledger(url: Optional[str], key_file: Optional[Path] = None, *,
            need_key: bool = False) -> Ledger:
    resolved = resolve_key_file(key_file)
    if need_key and resolved is None:
        raise UserInputError("this needs the ledger key (identities and items are sealed, and "
                             "the history is authenticated with it)",
                             hint="pass --key-file or set SCRUB_KEY_FILE")
    from scrub.ledger.service import IdentitySeal, Ledger

    seal = IdentitySeal(load_key(resolved)) if resolved else None
    return Ledger(_db().make_engine(url), seal=seal)


def _actor(actor: Optional[str]) -> str:
    return actor or os.environ.get("SCRUB_ACTOR") or getpass.getuser()


def _line(view: RequestView) -> str:
    flags = " OVERDUE" if view.overdue else ""
    return (f"{view.id}\t{view.kind}\t{view.status}{flags}\treceived {view.received_at[:10]}"
            f"\tdue {view.due_at[:10]}\t{len(view.items)} item(s)")


@requests_app.command("add")
@handle_errors
def add_command(
    file: Optional[Path] = typer.Option(None, "--file", metavar="REQUEST.json",
                                        help="The request as JSON (see the README)."),
    kind: Optional[str] = typer.Option(None, "--kind", help=f"One of {', '.join(KINDS)}."),
    received_at: Optional[str] = typer.Option(None, "--received-at",
                                              help="ISO 8601 time (default: now)."),
    name: Optional[str] = typer.Option(None, "--name", help="Requester's name."),
    email: Optional[str] = typer.Option(None, "--email", help="Requester's email."),
    item: list[str] = typer.Option([], "--item", metavar="TYPE=VALUE",
                                   help="An item, e.g. url=https://... (repeatable)."),
    notes: Optional[str] = typer.Option(None, "--notes",
                                        help="Free-text notes, stored in clear (not "
                                        "sealed): never put a name, email, URL or other "
                                        "identity here."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
    actor: Optional[str] = ACTOR, as_json: bool = AS_JSON,
) -> None:
    """Record a request; prints its id (or the whole record with --json)."""
    if file is not None:
        record = _read_json(file)
        where = str(file)
    else:
        import datetime as dt

        items = []
        for number, text in enumerate(item, start=1):
            type_name, sep, value = text.partition("=")
            if not sep:  # never echo it: a swapped value may be a name or a URL
                raise UserInputError(f"--item number {number}: expected TYPE=VALUE",
                                     hint="e.g. --item url=https://... (the type first)")
            items.append({"type": type_name, "value": value})
        record = {"kind": kind, "received_at": received_at
                  or dt.datetime.now(dt.UTC).isoformat(),
                  "requester": {"name": name, "email": email}, "items": items,
                  "notes": notes}
        where = "the request"
    from scrub.ledger.service import RequestSpec

    spec = RequestSpec.parse(record, where=where)
    ledger = _ledger(db_url, key_file, need_key=True)
    request_id, created = ledger.add(spec, _actor(actor))
    if as_json:
        typer.echo(json.dumps({**asdict(ledger.show(request_id)), "created": created},
                              indent=2))
    else:
        typer.echo(request_id)
        if not created:
            typer.echo(f"scrub: a repeat of request {request_id}: its new items were added "
                       "to it", err=True)


@requests_app.command("import")
@handle_errors
def import_command(
    file: Path = typer.Argument(..., help="Requests as JSONL (one request per line) or CSV "
                                "(kind,received_at,name,email,item_type,item_value; rows with "
                                "the same kind, time and email form one request)."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
    actor: Optional[str] = ACTOR, as_json: bool = AS_JSON, quiet: bool = QUIET,
) -> None:
    """Record a batch of requests: all or nothing (progress on stderr: steps and requests,
    never an item or identity)."""
    from scrub.progress import Progress

    meter = Progress("import requests", 2, None, enabled=not quiet,
                     units=("steps", "requests"))
    specs = _read_batch(file)
    meter.advance(len(specs))  # read and parsed
    ledger = _ledger(db_url, key_file, need_key=True)
    results = ledger.add_many(specs, _actor(actor))
    meter.advance(0)  # recorded
    meter.finish()
    created = sum(1 for _, new in results if new)
    if as_json:  # in the file's order: the id each request got, or joined
        typer.echo(json.dumps({"imported": len(specs), "created": created,
                               "requests": [{"id": request_id, "created": new}
                                            for request_id, new in results]}, indent=2))
        return
    typer.echo(f"imported {len(specs)} request(s): {created} new, "
               f"{len(specs) - created} joined earlier ones")


@requests_app.command("ls")
@handle_errors
def ls_command(
    status: Optional[str] = typer.Option(None, "--status", help=f"One of {', '.join(STATUSES)}."),
    kind: Optional[str] = typer.Option(None, "--kind", help=f"One of {', '.join(KINDS)}."),
    overdue: bool = typer.Option(False, "--overdue", help="Only open requests past due."),
    db_url: Optional[str] = DB, as_json: bool = AS_JSON,
) -> None:
    """List requests (no identities)."""
    if status and status not in STATUSES:
        raise UserInputError(f"--status must be one of {', '.join(STATUSES)}")
    if kind and kind not in KINDS:
        raise UserInputError(f"--kind must be one of {', '.join(KINDS)}")
    views = _ledger(db_url).list(status=status, kind=kind, overdue=overdue)
    if as_json:
        typer.echo(json.dumps([asdict(v) for v in views], indent=2))
        return
    for view in views:
        typer.echo(_line(view))


@requests_app.command("show")
@handle_errors
def show_command(
    request_id: int = typer.Argument(..., metavar="ID", help="The request's id."),
    identity: bool = typer.Option(False, "--identity",
                                  help="Also decrypt the requester (needs the key)."),
    items: bool = typer.Option(False, "--items",
                               help="Also decrypt the item values (needs the key)."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE, as_json: bool = AS_JSON,
) -> None:
    """One request with its item types and history (values and requester only on request)."""
    view = _ledger(db_url, key_file, need_key=identity or items).show(
        request_id, identity=identity, items=items)
    if as_json:
        typer.echo(json.dumps(asdict(view), indent=2))
        return
    typer.echo(_line(view))
    for entry in view.items:
        shown = entry["value"] if entry["value"] is not None else "(sealed; --items shows it)"
        typer.echo(f"  item {entry['type']}: {shown}")
    if view.requester:
        typer.echo(f"  requester: {view.requester['name']} <{view.requester['email']}>")
    for event in view.history:
        typer.echo(f"  {event['at']}  {event['action']}  by {event['actor']}")


def _transition(action: str, doc: str) -> None:
    @handle_errors
    def command(
        request_ids: list[int] = typer.Argument(..., metavar="ID...",
                                                help="One or more request ids (all move, or "
                                                "none)."),
        reason: Optional[str] = typer.Option(None, "--reason",
                                             help="Why (recorded in the history)."),
        db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
        actor: Optional[str] = ACTOR, as_json: bool = AS_JSON,
    ) -> None:
        ledger = _ledger(db_url, key_file, need_key=True)
        ledger.transition_many(request_ids, action, _actor(actor), reason=reason)
        if as_json:
            _echo_states(ledger, action, request_ids)
        elif len(request_ids) == 1:
            typer.echo(f"request {request_ids[0]}: {action} recorded")
        else:
            typer.echo(f"{len(set(request_ids))} requests: {action} recorded")

    command.__doc__ = doc
    requests_app.command(action)(command)


_transition("verify", "Mark received requests verified (their items then apply).")
_transition("reject", "Reject received requests.")
_transition("schedule", "Mark verified requests scheduled for the next release.")
_transition("withdraw", "Withdraw open requests.")
_transition("close", "Close applied or rejected requests.")


@requests_app.command("apply")
@handle_errors
def apply_command(
    request_ids: list[int] = typer.Argument(..., metavar="ID...",
                                            help="One or more request ids (all move, or none)."),
    release: str = typer.Option(..., "--release", metavar="RELEASE_ID",
                                help="The release that removed what they name."),
    reason: Optional[str] = typer.Option(None, "--reason",
                                         help="Why by hand (recorded in the history)."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
    actor: Optional[str] = ACTOR, as_json: bool = AS_JSON,
) -> None:
    """Record by hand that a release applied requests: the repair when a build published but
    could not update the ledger. Recorded like the builder's own update, with the actor."""
    ledger = _ledger(db_url, key_file, need_key=True)
    ledger.transition_many(request_ids, "apply", _actor(actor), reason=reason, release=release)
    if as_json:
        _echo_states(ledger, "apply", request_ids, release=release)
        return
    typer.echo(f"{len(set(request_ids))} request(s): apply in release {release} recorded")


def _echo_states(ledger: Ledger, action: str, request_ids: list[int], **extra: object) -> None:
    """A transition as JSON: the action and each request's status now (no identities)."""
    typer.echo(json.dumps({"action": action, **extra, "requests": [
        {"id": request_id, "status": ledger.show(request_id).status}
        for request_id in dict.fromkeys(request_ids)]}, indent=2))


@requests_app.command("extend")
@handle_errors
def extend_command(
    request_id: int = typer.Argument(..., metavar="ID", help="The request's id."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the history)."),
    days: int = typer.Option(60, "--days", help="Days to add (at most 90 after receipt)."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
    actor: Optional[str] = ACTOR, as_json: bool = AS_JSON,
) -> None:
    """Extend an open request's deadline, with a recorded reason."""
    ledger = _ledger(db_url, key_file, need_key=True)
    ledger.extend(request_id, _actor(actor), reason=reason, days=days)
    due = ledger.show(request_id).due_at
    typer.echo(json.dumps({"id": request_id, "due_at": due}, indent=2) if as_json
               else f"request {request_id}: due {due[:10]}")


@requests_app.command("export")
@handle_errors
def export_command(
    request_id: int = typer.Argument(..., metavar="ID", help="The request's id."),
    fmt: str = typer.Option("json", "--format", metavar="FORMAT",
                            help="json (the export, for scripts), html or text (a letter to "
                            "the data subject)."),
    identity: bool = typer.Option(False, "--identity",
                                  help="Name the requester in the letter (html, text); "
                                  "without it the letter names them nowhere."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
) -> None:
    """The data subject's report: their request, when it was received, verified and applied,
    what each item matched and where it was removed (needs the key: items are sealed)."""
    from scrub.ledger import letter

    fmt = letter.check_format(fmt)
    ledger = _ledger(db_url, key_file, need_key=True)
    if fmt == "json":  # today's shape, requester included: scripts read it
        report = json.dumps(letter.json_report(ledger.export(request_id)), indent=2) + "\n"
    else:
        export = ledger.export(request_id, identity=identity)
        report = letter.render(letter.build_letter(export, identity=identity), fmt)
    if output:
        from scrub.atomic import atomic_write_bytes

        atomic_write_bytes(output, report.encode())
    else:
        typer.echo(report, nl=False)


@ledger_app.command("verify")
@handle_errors
def verify_command(
    db_url: Optional[str] = DB, key_file: Optional[Path] = KEY_FILE,
    release: list[Path] = typer.Option(
        [], "--release", metavar="DIR",
        help="A release (variant folder, build OUT folder or manifest.json) whose signed "
        "manifest recorded the ledger's head: the history must still hold it (repeatable)."),
    pubkey: Optional[Path] = typer.Option(None, "--pubkey", metavar="PEM",
                                          help="The releases' signing public key."),
    as_json: bool = AS_JSON, quiet: bool = QUIET,
) -> None:
    """Authenticate the history with the ledger key, re-derive every request from its events
    and compare with the tables, and check the heads signed releases recorded; exit 1 naming
    what differs."""
    anchors = _anchors(release, pubkey)
    report = _ledger(db_url, key_file, need_key=True).verify(anchors, progress=not quiet)
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
    if not report.ok:
        for problem in report.problems[1:]:
            typer.echo(f"scrub: also: {problem}", err=True)
        more = report.problem_count - len(report.problems)
        if more > 0:
            typer.echo(f"scrub: and {more} more problem(s)", err=True)
        raise ScrubError(f"ledger fails verification: {report.problem}",
                         hint="restore the database from a backup and compare")
    if not as_json:
        anchored = (f"; holds the heads of {len(report.anchors)} signed release "
                    "manifest(s)" if report.anchors else
                    " (no release given: a history cut short is only seen with --release)")
        typer.echo(f"ledger history intact: {report.events} event(s), head {report.head}; "
                   f"{report.requests} request(s) match their history{anchored}")


def _anchors(paths: list[Path], pubkey: Optional[Path]) -> list[Anchor]:
    """The ledger heads the signed manifests under ``paths`` recorded."""
    if not paths:
        return []
    if pubkey is None:
        raise UserInputError("--release needs --pubkey: only a signed manifest anchors the "
                             "ledger's history")
    from scrub.crypto import load_public_key
    from scrub.ledger.service import Anchor
    from scrub.release.signed import MANIFEST, find_variants, read_variant

    key = load_public_key(pubkey)
    variants = []
    for path in paths:  # a variant (folder, companion or manifest) or a release folder
        found = find_variants(path)
        if not found:
            raise UserInputError(f"--release {path}: no {MANIFEST} there, nor in its folders")
        variants.extend(found)
    anchors = []
    for variant in variants:
        folder = variant.meta
        manifest = read_variant(variant, key)
        record = manifest.get("ledger")
        if record is None:
            continue  # a variant whose policy takes no requests
        try:
            events, head = record["events"], record["head"]
            valid = (type(events) is int and events >= 0 and isinstance(head, str)
                     and len(head) == 64 and all(c in "0123456789abcdef" for c in head))
        except (KeyError, TypeError):
            valid = False
        if not valid:
            raise ExternalSourceError(f"{folder / MANIFEST}: signed, but its ledger record is "
                                      "malformed")
        anchors.append(Anchor(f"{manifest.get('release_id')} ({variant.name})", events, head))
    if not anchors:
        raise UserInputError("none of the releases given recorded the ledger (their policies "
                             "take no requests)")
    return anchors


@db_app.command("upgrade")
@handle_errors
def upgrade_command(db_url: Optional[str] = DB,
                    revision: str = typer.Option("head", "--revision",
                                                 help="The schema revision to reach."),
                    key_file: Optional[Path] = KEY_FILE, as_json: bool = AS_JSON) -> None:
    """Create the ledger, or migrate it to this scrub's schema (a ledger holding requests
    needs the key to reach revision 0004, which seals its items and keys its history)."""
    resolved = resolve_key_file(key_file)
    key = load_key(resolved) if resolved else None
    engine = _db().make_engine(db_url)
    _db().upgrade(engine, revision, key=key)
    where, now = _db().describe(str(engine.url)), _db().current_revision(engine)
    typer.echo(json.dumps({"database": where, "revision": now}, indent=2) if as_json
               else f"{where}: at revision {now}")


@db_app.command("current")
@handle_errors
def current_command(db_url: Optional[str] = DB, as_json: bool = AS_JSON) -> None:
    """The database's revision and the code's (exit 2 where there is no ledger)."""
    engine = _db().make_engine(db_url)
    found, code = _db().require_ledger(engine), _db().head_revision()
    typer.echo(json.dumps({"database": found, "code": code, "current": found == code},
                          indent=2) if as_json else f"database: {found}; code: {code}")


@db_app.command("check")
@handle_errors
def check_command(db_url: Optional[str] = DB, as_json: bool = AS_JSON) -> None:
    """Exit non-zero when the database is behind or differs from the models."""
    engine = _db().make_engine(db_url)
    _db().require_current(engine)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Alembic's own note, not our answer
            _db().check(engine)
    except Exception as exc:  # alembic's AutogenerateDiffsDetected
        if isinstance(exc, ScrubError):
            raise
        raise ScrubError("the database schema differs from the models") from None
    typer.echo(json.dumps({"ok": True, "revision": _db().head_revision()}, indent=2)
               if as_json else "database schema matches the code")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise UserInputError(f"{path}{f':{line}' if line else ''}: not valid JSON") from None


def _read_batch(path: Path) -> list[RequestSpec]:
    from scrub.ledger.service import LedgerError, RequestSpec

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path}: cannot read ({type(exc).__name__})") from None
    if path.suffix.lower() == ".csv":
        return _csv_batch(path, text)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((json.loads(line), f"{path}:{number}"))
        except json.JSONDecodeError:
            raise UserInputError(f"{path}:{number}: not valid JSON") from None
    if not records:
        raise LedgerError(f"{path}: no requests in the file")
    return RequestSpec.parse_many(records)


def _csv_batch(path: Path, text: str) -> list[RequestSpec]:
    from scrub.ledger.service import LedgerError, RequestSpec

    rows = csv.DictReader(text.splitlines())
    needed = {"kind", "received_at", "name", "email", "item_type", "item_value"}
    missing = needed - set(rows.fieldnames or [])
    if missing:
        raise LedgerError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
    grouped: dict[tuple[str, str, str], tuple[int, dict]] = {}
    for number, row in enumerate(rows, start=2):
        group = (row["kind"], row["received_at"], row["email"])
        if group not in grouped:
            grouped[group] = (number, {"kind": row["kind"], "received_at": row["received_at"],
                                       "requester": {"name": row["name"],
                                                     "email": row["email"]}, "items": []})
        grouped[group][1]["items"].append({"type": row["item_type"], "value": row["item_value"]})
    if not grouped:
        raise LedgerError(f"{path}: no requests in the file")
    return RequestSpec.parse_many([(record, f"{path}:{number}")
                                   for number, record in grouped.values()])


def _db() -> ModuleType:
    """The database module (Alembic, SQLAlchemy), imported when a command needs it."""
    from scrub.ledger import db

    return db


def register(app: typer.Typer) -> None:
    app.add_typer(requests_app, name="requests")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(db_app, name="db")
