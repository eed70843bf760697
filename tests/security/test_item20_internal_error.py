"""Item 20: the CLI's one error handler prints only the type of an unexpected exception.

An unexpected exception's message (or its arguments, or the OS error's text) may hold a value
from a list or a row; the handler must print ``internal error (TYPE)`` and exit 1, whatever the
exception carries. The planted value must appear nowhere on stdout or stderr.
"""

from __future__ import annotations

import errno

import pytest
import typer

from scrub.cli.errors import handle_errors
from tests.helpers import run_cli

PLANTED = "d41d8cd98f00b204e9800998ecf8427e"  # an md5, as a partner list would hold
URL = "https://victim.example/private/photo.jpg"


class _Odd(Exception):
    """An exception whose str() and repr() both carry the value."""

    def __str__(self) -> str:
        return f"row value {PLANTED}"

    def __repr__(self) -> str:
        return f"_Odd({PLANTED!r})"


def _oserror_without_errno() -> OSError:
    """What pyarrow raises for many I/O failures: an OSError with a free-text message."""
    return OSError(f"Failed to open {URL} ({PLANTED})")


UNEXPECTED = {
    "RuntimeError": lambda: RuntimeError(f"matched {PLANTED} at {URL}"),
    "KeyError": lambda: KeyError(PLANTED),
    "ValueError": lambda: ValueError(PLANTED, URL),
    "_Odd": _Odd,
    "OSError": _oserror_without_errno,
    "UnicodeDecodeError": lambda: UnicodeDecodeError("utf-8", PLANTED.encode(), 0, 1,
                                                     f"bad byte near {URL}"),
}


def _app(make: object) -> typer.Typer:
    """A one-command app wired the way every scrub command is: through handle_errors."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    @handle_errors
    def boom() -> None:
        """Raise the planted exception."""
        raise make()  # type: ignore[operator]

    return app


@pytest.mark.parametrize("name", sorted(UNEXPECTED))
def test_unexpected_exception_prints_its_type_only(name: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)
    result = run_cli(app=_app(UNEXPECTED[name]))
    out = result.stdout + result.stderr
    assert result.exit_code == 1, out
    assert result.stderr.strip().splitlines()[0] == (
        f"scrub: internal error ({name}); rerun with SCRUB_DEBUG=1 for the traceback and "
        "report it")
    assert PLANTED not in out and URL not in out
    assert "victim" not in out and "Traceback" not in out


def test_chained_cause_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)

    def chained() -> Exception:
        try:
            raise ValueError(PLANTED)
        except ValueError as inner:
            outer = RuntimeError("wrapping")
            outer.__cause__ = inner
            outer.add_note(f"while matching {URL}")
            return outer

    result = run_cli(app=_app(chained))
    out = result.stdout + result.stderr
    assert result.exit_code == 1
    assert "internal error (RuntimeError)" in result.stderr
    assert PLANTED not in out and URL not in out


def test_os_error_with_errno_prints_its_file_not_its_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An OS error is an operator's fault with a file name; its free text is never echoed
    (only the standard wording of its errno)."""
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)
    error = OSError(errno.EACCES, f"denied for {PLANTED}", "/data/out/part-0.parquet")
    result = run_cli(app=_app(lambda: error))
    out = result.stdout + result.stderr
    assert result.exit_code == 2, out
    assert "scrub: error: /data/out/part-0.parquet: permission denied" in result.stderr
    assert PLANTED not in out
