"""Where the ledger is, as a user names it: ``--db`` takes a plain file path (``~`` too), commands
that only read never create a ledger (exit 2 saying how to create one), and only
``scrub db upgrade`` creates one, leaving nothing behind when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import Result

from scrub.crypto import write_key_file
from tests.helpers import expect_exit, expect_ok, read_only_folder, run_cli

#: The commands that only read the ledger, plus one that writes to it.
READERS = [("requests", "ls"), ("requests", "show", "1"), ("requests", "export", "1"),
           ("ledger", "verify"), ("db", "current"), ("db", "check")]
WRITER = ("requests", "add", "--kind", "gdpr_erasure", "--name", "A", "--email", "a@example.org",
          "--item", "url=https://example.com/a.jpg")


def invoke(tmp_path: Path, *args: str, **env: str) -> Result:
    key = tmp_path / "ledger.key"
    if not key.exists():
        write_key_file(key)
    return run_cli(*args, env={"SCRUB_HOME": str(tmp_path / "home"),
                               "SCRUB_KEY_FILE": str(key),
                               "SCRUB_DATABASE_URL": "", "SCRUB_DEBUG": "",
                               **env})


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("scrub: error: ")]


def test_db_takes_a_plain_file_path(tmp_path: Path) -> None:
    path = tmp_path / "books" / "ledger.db"
    created = invoke(tmp_path, "db", "upgrade", "--db", str(path))
    expect_ok(created)
    assert path.is_file() and path.stat().st_mode & 0o777 == 0o600  # the owner's only
    current = invoke(tmp_path, "db", "current", "--db", str(path))
    assert current.exit_code == 0 and current.stdout.startswith("database: 0005"), current.output
    assert invoke(tmp_path, "requests", "ls", "--db", str(path)).exit_code == 0
    # the same file named as a URL is the same ledger
    url = invoke(tmp_path, "db", "current", "--db", f"sqlite:///{path}")
    assert url.exit_code == 0 and url.stdout == current.stdout


def test_db_expands_a_tilde(tmp_path: Path) -> None:
    home = tmp_path / "user"
    home.mkdir()
    # quoted, as in --db=~/... where the shell leaves the tilde alone
    result = invoke(tmp_path, "db", "upgrade", "--db", "~/ledger.db", HOME=str(home))
    expect_ok(result)
    assert (home / "ledger.db").is_file()
    assert not Path("~").exists()


@pytest.mark.parametrize("command", READERS + [WRITER], ids=" ".join)
def test_no_default_ledger_exits_2_saying_how_to_create_it(tmp_path: Path,
                                                             command: tuple[str, ...]) -> None:
    result = invoke(tmp_path, *command)
    expect_exit(result, 2)
    assert len(error_lines(result)) == 1 and "has no ledger yet" in result.stderr
    assert "scrub db upgrade" in result.stderr and "SCRUB_HOME" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "home").exists()  # nothing created: no folder, no empty ledger


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_no_ledger_at_the_path_given_is_never_created(tmp_path: Path,
                                                      command: tuple[str, ...]) -> None:
    path = tmp_path / "books" / "ledger.db"
    result = invoke(tmp_path, *command, "--db", str(path))
    expect_exit(result, 2)
    assert len(error_lines(result)) == 1
    assert f"scrub db upgrade --db {path}" in result.stderr
    assert not (tmp_path / "books").exists()


def test_an_empty_database_file_is_no_ledger_either(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    result = invoke(tmp_path, "requests", "ls", "--db", str(path))
    assert result.exit_code == 2 and "has no ledger yet" in result.stderr, result.output
    assert path.stat().st_size == 0


def test_an_unknown_revision_exits_2_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "books" / "ledger.db"
    result = invoke(tmp_path, "db", "upgrade", "--db", str(path), "--revision", "9999")
    assert result.exit_code == 2 and len(error_lines(result)) == 1, result.output
    assert "revision '9999'" in result.stderr
    assert not (tmp_path / "books").exists()


@pytest.mark.parametrize("below", [False, True], ids=["home", "below-home"])
def test_db_upgrade_in_a_read_only_scrub_home_is_one_line(tmp_path: Path, below: bool) -> None:
    with read_only_folder(tmp_path / "ro") as folder:
        home = folder / "scrub" if below else folder
        result = invoke(tmp_path, "db", "upgrade", SCRUB_HOME=str(home))
        expect_exit(result, 2)
        assert len(error_lines(result)) == 1 and str(home) in error_lines(result)[0]
        assert "SCRUB_HOME" in result.stderr and "Traceback" not in result.output
        assert list(folder.iterdir()) == []


def test_db_upgrade_with_a_file_as_scrub_home_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home-file"
    home.write_text("not a folder\n")
    for command in (("db", "upgrade"), ("db", "current")):
        result = invoke(tmp_path, *command, SCRUB_HOME=str(home))
        expect_exit(result, 2)
        assert len(error_lines(result)) == 1 and str(home) in error_lines(result)[0]
        assert "SCRUB_HOME" in result.stderr
    assert home.read_text() == "not a folder\n"
