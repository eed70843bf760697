"""The CLI's single error handler.

Every expected failure is a :class:`~scrub.errors.ScrubError`; the handler prints one line on
stderr (plus a hint) and exits with the error's code: 2 user input, 3 external source, 1 other,
130 interrupt; output piped into a reader that stops early (``| head``) ends quietly with 141,
as SIGPIPE would. An OS error that escaped the library (a read-only OUTPUT, a file where a folder
goes, a full disk) is told by its errno and file name alone (:func:`scrub.errors.from_os_error`).
Unexpected errors print their type only, since their messages may hold sensitive values;
``SCRUB_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import typer

from scrub.errors import ScrubError, WorkerInternalError, from_os_error

#: The variable naming scrub's home folder (list store, default ledger); read here for hints
#: only, so the handler imports nothing heavy.
HOME_ENV = "SCRUB_HOME"
#: The exit status of a command whose output pipe closed early: what a shell reports for a
#: command that SIGPIPE ended (128 + 13).
SIGPIPE_EXIT = 141

_P = ParamSpec("_P")
_R = TypeVar("_R")


def handle_errors(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """The one error handler, wrapped around every command when it is registered."""

    @functools.wraps(command)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except WorkerInternalError as exc:  # an unexpected error in a worker process
            if os.environ.get("SCRUB_DEBUG") and exc.traceback:
                _say(exc.traceback.rstrip())
            _say(_internal_line(exc.type_name))
            raise typer.Exit(1) from None
        except ScrubError as exc:
            _report(exc)
        except KeyboardInterrupt:
            _say("scrub: interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            _closed_pipe()
        except OSError as exc:
            # A path the operator chose (read-only, a file where a folder goes) or a full
            # disk: say which file and why, from the errno alone.
            error = from_os_error(exc)
            if error is None:
                _internal(exc)
            if error.exit_code == 2:
                error.hint = _home_hint(exc) or error.hint
            _report(error)
        except Exception as exc:
            _internal(exc)

    return wrapper


def _report(exc: ScrubError) -> NoReturn:
    _say(f"scrub: error: {exc.message}")
    if exc.hint:
        _say(f"  hint: {exc.hint}")
    raise typer.Exit(exc.exit_code) from None


def _closed_pipe() -> NoReturn:
    """stdout's reader went away (``scrub ... | head``): end quietly, as a command killed by
    SIGPIPE does (exit 128 + 13), with stdout pointed at /dev/null so that the interpreter's
    final flush finds nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test runner's buffer)
        pass
    raise typer.Exit(SIGPIPE_EXIT) from None


def _internal(exc: BaseException) -> NoReturn:
    """An unexpected error: its type only, since its message may hold a sensitive value."""
    if os.environ.get("SCRUB_DEBUG"):
        traceback.print_exc()
    _say(_internal_line(type(exc).__name__))
    raise typer.Exit(1) from None


def _internal_line(type_name: str) -> str:
    return (f"scrub: internal error ({type_name}); rerun with SCRUB_DEBUG=1 for the traceback "
            "and report it")


def _home_hint(exc: OSError) -> str | None:
    """A hint naming ``SCRUB_HOME`` when the failing path is (or lies under) it."""
    home = os.environ.get(HOME_ENV)
    if not home or not isinstance(exc.filename, (str, os.PathLike)):
        return None
    failing, root = Path(os.path.abspath(exc.filename)), Path(os.path.abspath(home))
    if failing == root or root in failing.parents:
        return (f"{HOME_ENV} ({home}) must be a writable folder: set it to one, or name "
                "the store or database with --store / --db")
    return None


def _say(line: str) -> None:
    typer.echo(line, err=True)


