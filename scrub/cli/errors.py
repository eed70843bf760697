"""The CLI's single error handler.

Every expected failure is a :class:`~scrub.errors.ScrubError`; the handler prints one line on
stderr (plus a hint) and exits with the error's code: 2 user input, 3 external source, 1 other,
130 interrupt. Unexpected errors print their type only, since their messages may hold sensitive
values; ``SCRUB_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import functools
import os
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from scrub.errors import ScrubError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(command: F) -> F:
    """The one error handler, wrapped around every command when it is registered."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ScrubError as exc:
            _say(f"scrub: error: {exc.message}")
            if exc.hint:
                _say(f"  hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _say("scrub: interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SCRUB_DEBUG"):
                traceback.print_exc()
            _say(f"scrub: internal error ({type(exc).__name__}); "
                 "rerun with SCRUB_DEBUG=1 for the traceback and report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _say(line: str) -> None:
    typer.echo(line, err=True)


