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

from scrub.errors import UserInputError

#: The companion folder of output folder ``X`` is ``X`` + this suffix, beside it.
COMPANION_SUFFIX = ".scrub"
#: Marks a release's removal list and carries its HMAC key (also published in the manifest).
REMOVALS_KEY = b"scrub.removals.hmac_key"


def companion(folder: Path | str) -> Path:
    """The companion folder of output folder ``folder``: ``<parent>/<name>.scrub``.

    UserInputError for a folder without a name of its own (the filesystem root)."""
    folder = Path(folder)
    if folder.name in ("", ".", ".."):
        folder = folder.resolve()
    if not folder.name:
        raise UserInputError(f"{folder}: an output folder cannot be the filesystem root",
                             hint="its report and state go beside it, in a folder named "
                             f"after it with {COMPANION_SUFFIX!r} added")
    return folder.with_name(folder.name + COMPANION_SUFFIX)


def companion_of(folder: Path) -> Path | None:
    """The output folder whose companion ``folder`` is (``X`` for ``X.scrub``), else None."""
    name = Path(folder).name
    if name.endswith(COMPANION_SUFFIX) and len(name) > len(COMPANION_SUFFIX):
        return Path(folder).with_name(name[: -len(COMPANION_SUFFIX)])
    return None
