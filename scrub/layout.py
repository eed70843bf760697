"""Output layout: an output folder holds its rows and nothing else.

Users read an output folder with glob and folder readers, which take every file they find for
data: DuckDB and Hugging Face datasets read every ``*.parquet`` a glob matches (``_`` and ``.``
names too), ``pyarrow.dataset`` every file not named ``_*``/``.*``, at any depth, and polars'
``scan_parquet(DIR)`` every file at any depth, hidden or not, and refuses a folder holding any
other extension. So apply's OUTPUT and each release variant hold their parquet shards only, and
everything else of theirs (report, job state, decision records, manifest, signature, audit,
removal list, embeddings) lies in the *companion folder* ``X.scrub`` beside ``X``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, TypeVar, cast

from scrub.errors import UserInputError


class _Location(Protocol):
    """A local path or an object path (:class:`scrub.storage.ObjectPath`)."""

    @property
    def name(self) -> str: ...

    def with_name(self, name: str, /) -> _Location: ...


_L = TypeVar("_L", bound=_Location)

#: The companion folder of output folder ``X`` is ``X`` + this suffix, beside it.
COMPANION_SUFFIX = ".scrub"
#: Marks a release's removal list and carries its HMAC key (also published in the manifest).
REMOVALS_KEY = b"scrub.removals.hmac_key"


def companion(folder: _L) -> _L:
    """The companion folder of output folder ``folder``: ``<parent>/<name>.scrub``.

    UserInputError for a folder without a name of its own (the filesystem root)."""
    if getattr(folder, "remote", False):  # an ObjectPath: s3://b/x -> s3://b/x.scrub
        if not getattr(folder, "key", ""):
            raise UserInputError(f"{folder}: an output cannot be a whole bucket",
                                 hint="give a prefix in it, such as s3://bucket/scrubbed")
        return cast(_L, folder.with_name(folder.name + COMPANION_SUFFIX))
    local = Path(str(folder))
    if local.name in ("", ".", ".."):
        local = local.resolve()
    if not local.name:
        raise UserInputError(f"{local}: an output folder cannot be the filesystem root",
                             hint="its report and state go beside it, in a folder named "
                             f"after it with {COMPANION_SUFFIX!r} added")
    return cast(_L, local.with_name(local.name + COMPANION_SUFFIX))


def companion_of(folder: _L) -> _L | None:
    """The output folder whose companion ``folder`` is (``X`` for ``X.scrub``), else None."""
    name = folder.name
    if name.endswith(COMPANION_SUFFIX) and len(name) > len(COMPANION_SUFFIX):
        return cast(_L, folder.with_name(name[: -len(COMPANION_SUFFIX)]))
    return None
