"""``scrub users`` and ``scrub serve``'s refusals to start, and revision 0005 (staff accounts,
sessions, receipts) on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from scrub.crypto import write_key_file
from scrub.ledger import db
from scrub.ledger.service import Ledger
from scrub.ledger.staff import Staff
from tests.helpers import expect_exit, run_cli
from tests.security.ledger_setup import cli, tamper
from tests.web.conftest import (  # noqa: F401
    PASSWORD,
    cli_url,
    database,
    engine,
    free_port,
    key,
    ledger,
    staff,
)


def serve(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``scrub serve ARGS`` in a process of its own, expected to refuse (and so to end)."""
    env = {"PATH": "/usr/bin:/bin", "SCRUB_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "scrub", "serve", "--port",
                           str(free_port()), *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_users_add_reads_the_password_from_stdin_and_it_signs_in(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger) -> None:
    result = run_cli("users", "add", "carol", "--role", "admin", "--db", cli_url(database),
                     "--key-file", tmp_path / "ledger.key", "--actor", "root",
                     input_text="carol's passphrase\n")
    expect_exit(result, 0, "user carol: admin")
    member, _token = Staff(ledger).sign_in("carol", "carol's passphrase")
    assert member.role == "admin"
    listed = cli(tmp_path, database, "users", "ls")
    expect_exit(listed, 0, "carol\tadmin\tactive")
    again = run_cli("users", "add", "carol", "--role", "reviewer", "--db", cli_url(database),
                    "--key-file", tmp_path / "ledger.key", input_text="new passphrase!\n")
    expect_exit(again, 2, "user carol exists", "--replace")
    for bad_args, message in ((["Carol!", "--role", "admin"], "a user name is 1 to 64"),
                              (["dave", "--role", "root"], "--role must be one of")):
        refused = run_cli("users", "add", *bad_args, "--db", cli_url(database), "--key-file",
                          tmp_path / "ledger.key", input_text="dave's passphrase\n")
        expect_exit(refused, 2, message)
    short = run_cli("users", "add", "dave", "--role", "admin", "--db", cli_url(database),
                    "--key-file", tmp_path / "ledger.key", input_text="short\n")
    expect_exit(short, 2, "12 to 1024 characters")
    assert "short" not in short.output.replace("12 to 1024", "")
    no_key = cli(tmp_path, database, "users", "add", "erin", "--role", "admin", key=False)
    expect_exit(no_key, 2, "needs the ledger key")


def test_users_unlock(tmp_path: Path, database: tuple[str, dict], ledger: Ledger,
                      staff: Staff) -> None:
    tamper(ledger.engine, "UPDATE staff_users SET locked_until = '2999-01-01 00:00:00', "
           "failed_logins = 0 WHERE name = 'bob'")
    assert [u["locked"] for u in staff.users() if u["name"] == "bob"] == [True]
    expect_exit(cli(tmp_path, database, "users", "unlock", "bob"), 0, "user bob: unlocked")
    staff.sign_in("bob", PASSWORD["bob"])
    expect_exit(cli(tmp_path, database, "users", "unlock", "nobody"), 2, "no user nobody")


def test_serve_refuses_a_database_that_is_not_migrated(tmp_path: Path) -> None:
    write_key_file(tmp_path / "ledger.key")
    missing = serve(tmp_path, "--db", str(tmp_path / "none.db"), "--key-file",
                    str(tmp_path / "ledger.key"))
    assert missing.returncode == 2 and "scrub db upgrade" in missing.stderr, missing.stderr
    assert not (tmp_path / "none.db").exists()
    old = db.make_engine(str(tmp_path / "old.db"))
    db.upgrade(old, "0004")
    behind = serve(tmp_path, "--db", str(tmp_path / "old.db"), "--key-file",
                   str(tmp_path / "ledger.key"))
    assert behind.returncode == 3 and "scrub db upgrade" in behind.stderr, behind.stderr
    assert "revision 0004" in behind.stderr


def test_serve_refuses_to_start_without_the_key_or_with_another(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, staff: Staff) -> None:
    url = cli_url(database)
    missing = serve(tmp_path, "--db", url)
    assert missing.returncode == 2 and "needs the ledger key" in missing.stderr, missing.stderr
    other = tmp_path / "other.key"
    write_key_file(other)
    wrong = serve(tmp_path, "--db", url, "--key-file", str(other))
    assert wrong.returncode == 2 and "keyed with key" in wrong.stderr, wrong.stderr
    bad_port = serve(tmp_path, "--db", url, "--key-file", str(tmp_path / "ledger.key"),
                     "--ssl-certfile", str(other))
    assert bad_port.returncode == 2 and "go together" in bad_port.stderr


def test_revision_0005_goes_down_and_up(engine: Engine, ledger: Ledger, staff: Staff) -> None:
    staff.sign_in("alice", PASSWORD["alice"])
    assert db.current_revision(engine) == "0005"
    db.downgrade(engine, "0004")
    with engine.connect() as connection:
        tables = set(connection.dialect.get_table_names(connection))
    assert not tables & {"staff_users", "staff_sessions", "intake_receipts"}
    db.upgrade(engine)
    db.check(engine)  # the models and the migrated schema agree, on both databases
    assert Staff(ledger).users() == []
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 3
    assert ledger.verify().ok  # the account events stay, and still verify


@pytest.mark.parametrize("action", ["sign_in", "rekey_me"])
def test_account_events_name_no_request(ledger: Ledger, action: str) -> None:
    from scrub.ledger.specs import LedgerError

    if action == "sign_in":
        ledger.account_event(action, "alice", {"user": "alice"})
        assert ledger.verify().ok
    else:
        with pytest.raises(LedgerError, match="not an account action"):
            ledger.account_event(action, "alice", {})
