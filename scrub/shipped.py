"""Folders scrub ships beside its code: the ledger's Alembic migrations and the stock release
policies.

Git holds one copy of each, at the top level (``migrations/``, ``policies/``). A wheel carries
them inside the package as ``scrub/_migrations`` and ``scrub/_policies`` (``setup.py`` maps the
folders in at build time); a checkout or an editable install reads the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

from scrub.errors import ScrubError

#: The installed package's folder.
PACKAGE = Path(__file__).resolve().parent


def shipped_folder(name: str, marker: str) -> Path:
    """The folder ``name`` (``migrations`` or ``policies``): the copy inside the package, else
    the checkout's top-level one. ``marker`` is a file that folder must hold. An install that
    has neither is broken (exit 1, with a hint to reinstall)."""
    inside = PACKAGE / f"_{name}"
    if (inside / marker).is_file():
        return inside
    checkout = PACKAGE.parent
    # a checkout (pyproject.toml beside the package), never another package's site-packages/NAME
    if (checkout / name / marker).is_file() and (checkout / "pyproject.toml").is_file():
        return checkout / name
    raise ScrubError(f"this scrub install lacks its {name} ({inside} is missing)",
                     hint="reinstall scrub from a wheel or the source tree")


def migrations_folder() -> Path:
    """The Alembic script folder of the ledger (``env.py``, ``versions/``)."""
    return shipped_folder("migrations", "env.py")


def policies_folder() -> Path:
    """The stock policies (``research.toml``, ``research-safe.toml``, ``keywords.txt``)."""
    return shipped_folder("policies", "research.toml")
