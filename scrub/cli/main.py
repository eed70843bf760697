"""The ``scrub`` entry point: the root typer app and its command groups.

Each command is registered through :func:`scrub.cli.errors.handle_errors`, the one place where
errors become exit codes. Tracebacks never show locals (they can hold keys and hashes).
"""

from __future__ import annotations

import typer

from scrub import __version__

app = typer.Typer(
    name="scrub",
    help="Safety and compliance scrubbing for web-scale image-text datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scrub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Safety and compliance scrubbing for web-scale image-text datasets."""


def _register() -> None:
    from scrub.cli import apply, decisions, demo, hash, keys, ledger, lists, nsfw, release

    apply.register(app)
    decisions.register(app)
    demo.register(app)
    hash.register(app)
    lists.register(app)
    keys.register(app)
    ledger.register(app)
    nsfw.register(app)
    release.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="scrub")
