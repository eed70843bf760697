"""The ``scrub`` entry point: the root typer app and its command groups.

Each command is registered through :func:`scrub.cli.errors.handle_errors`, the one place where
errors become exit codes. Tracebacks never show locals (they can hold keys and hashes).
typer is imported when the app is built, not with this module: a worker process spawned by the
console script re-imports it (multiprocessing's ``__mp_main__``) and needs none of the CLI.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from scrub import __version__

if TYPE_CHECKING:
    import typer

#: The modules that register commands (``scrub.cli.<module>``), in the order help lists them.
MODULES = ("apply", "decisions", "demo", "hash", "lists", "keys", "ledger", "nsfw", "release",
           "serve")
#: The module that registers each top-level command.
COMMANDS = {"apply": "apply", "decisions": "decisions", "demo": "demo", "hash": "hash",
            "keygen": "keys", "requests": "ledger", "ledger": "ledger", "db": "ledger",
            "lists": "lists", "nsfw": "nsfw", "release": "release", "serve": "serve",
            "users": "serve"}


def _version(value: bool) -> None:
    import typer

    if value:
        typer.echo(f"scrub {__version__}")
        raise typer.Exit()


def _root_callback() -> Callable[..., None]:
    """The root callback (``--version``), declared where typer is imported."""
    import typer

    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                     help="Print the version and exit."),
    ) -> None:
        """Safety and compliance scrubbing for web-scale image-text datasets."""

    return _root


def build_app(modules: Iterable[str] | None = None) -> typer.Typer:
    """The root app with the commands of ``modules`` (all of them by default)."""
    import typer

    root = typer.Typer(
        name="scrub",
        help="Safety and compliance scrubbing for web-scale image-text datasets.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
    )
    root.callback()(_root_callback())
    for module in MODULES if modules is None else modules:
        importlib.import_module(f"scrub.cli.{module}").register(root)
    _plain_help(root)
    return root


def _plain_help(app: typer.Typer) -> None:
    """One help style for the whole tree: click's plain layout (flags shown as flags, not with
    typer's ``<bool>``), and every value shown by an upper-case placeholder: the option's own
    ``metavar``, else its name (``--rows ROWS``), never typer's ``<int range>``."""
    import typer

    app.rich_markup_mode = None
    for info in app.registered_commands + ([app.registered_callback]
                                           if app.registered_callback else []):
        if info.callback is None:
            continue
        for parameter in inspect.signature(info.callback).parameters.values():
            default = parameter.default
            if not isinstance(default, (typer.models.OptionInfo, typer.models.ArgumentInfo)) \
                    or default.metavar is not None or parameter.annotation in (bool, "bool"):
                continue
            names = [d for d in getattr(default, "param_decls", None) or () if d.startswith("--")]
            default.metavar = (names[0][2:] if names else parameter.name).upper() \
                .replace("-", "_").rstrip("_")
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole command tree, built on first use (tests and docs use it)."""
    if name == "app":
        whole = globals()["app"] = build_app()
        return whole
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (with ``argv`` None the process ends here, see :func:`_exit`).

    Only the invoked command's module is imported (each pulls in what it needs: a release build
    need not load the image hashers' imports); a call without a known command (help, a typo)
    gets the whole tree."""
    args = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in args if not a.startswith("-")), None)
    module = COMMANDS.get(first or "")
    if argv is not None:  # called from Python (tests, scripts): SystemExit as usual
        build_app([module] if module else None)(prog_name="scrub", args=args)
        return
    if module is not None:
        _hide_pandas()
    try:
        build_app([module] if module else None)(prog_name="scrub", args=args)
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _hide_pandas() -> None:
    """pyarrow's pandas probe answered "no" before the command's first ``pa.array`` (scrub
    never uses pandas; loading it costs ~0.3 CPU-s a process). Only in a process of its own:
    a caller's process may hand pyarrow pandas objects later. Help and ``--version`` skip it,
    and with it the pyarrow import."""
    from scrub.runtime.workers import hide_pandas_from_arrow

    hide_pandas_from_arrow()


def _exit(code: object) -> None:
    """End the process once Python's own exit work is done (atexit: worker pools, Ray, temporary
    folders, flushed streams), before native libraries' static destructors: with pyarrow 26,
    one of those aborted a finished command now and then (exit 134, "terminate called without
    an active exception")."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1, as the interpreter does
        print(code, file=sys.stderr)
        status = 1
    # what the interpreter's own exit does first: join non-daemon threads (and the executors'
    # workers registered with threading), then run the atexit functions
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`| head`) or stream: nothing to keep
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
