"""Reading hash-list files: plain text, CSV/TSV and JSON Lines.

A hash list arrives as a file from a partner or from a release's removal list. Every entry is
validated; one bad entry rejects the whole file with ``file:line`` and the expected form, and the
offending value is never echoed (lists can be sensitive). Files are read in chunks of lines that are
split, stripped and validated as whole Arrow/polars columns, so a 100M-line list streams with
bounded working memory (the decoded keys themselves are kept: 16 bytes per md5). A text chunk of
nothing but hex lines of one width is decoded at once, with the same result.

Formats:

- ``text``: one value per line; blank lines and ``#`` comments (a whole line, or after whitespace)
  are ignored. The type is ``--type`` or inferred from the value's form (32/40/64 hex digits for
  md5/sha1/sha256); a form that fits two types is an error asking for ``--type``.
- ``csv``/``tsv``: a header naming ``value`` (or ``hash``) and ``type``; ``type`` may be left out
  when ``--type`` is given. A ``deleted`` column (1/true/yes) marks tombstones of a delta file.
  Other columns are ignored.
- ``jsonl``: one object per line with ``value`` and ``type`` (``type`` optional with ``--type``)
  and optionally ``"deleted": true``.
- ``tdmrep``: a W3C TDMRep ``/.well-known/tdmrep.json`` of one site (``site``): each ``location``
  with ``"tdm-reservation": 1`` becomes a ``url_prefix`` on that site (a trailing ``*`` is the
  prefix wildcard).
- ``robots``: a robots.txt-style file for one site: each ``Disallow: /path`` becomes a
  ``url_prefix`` on it (``/path$`` an exact ``url``).

In both site formats, exceptions (``tdm-reservation: 0`` rules, ``Allow:`` lines) are ignored:
scrub removes the whole reserved prefix, erring on the side of the opt-out.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scrub.atomic import open_regular
from scrub.errors import InvalidListError, ScrubError
from scrub.keys import unique_values
from scrub.lists._records import (
    _chunk_lines,
    _Decoded,
    _Lines,
    _typed_from_delimited,
    _typed_from_jsonl,
    _typed_from_text_blocks,
    _TypedChunk,
)
from scrub.lists._site_files import _typed_from_site_file
from scrub.lists.types import (
    HexDigestType,
    KeyType,
    get_type,
    registered_types,
)

_CHUNK_BYTES = 8 << 20


class ListFormat(StrEnum):
    """Hash-list file formats."""

    auto = "auto"
    text = "text"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    tdmrep = "tdmrep"
    robots = "robots"


@dataclass
class HashList:
    """A parsed hash list: unique keys per type, with counts, never the values in text."""

    label: str
    path: Path
    sha256: str
    format: ListFormat
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    #: Tombstones: entries a delta file withdraws (a ``deleted`` column or field set to true).
    deleted: dict[str, np.ndarray] = field(default_factory=dict)
    entries: int = 0
    duplicates: int = 0

    def counts(self) -> dict[str, int]:
        """Unique entries per type."""
        return {name: len(k) for name, k in sorted(self.keys.items())}

    def describe(self) -> dict[str, object]:
        """Metadata safe to print or store: label, file digest, counts. No values."""
        return {
            "label": self.label,
            "sha256": self.sha256,
            "format": self.format.value,
            "entries": self.entries,
            "unique": sum(len(k) for k in self.keys.values()),
            "duplicates": self.duplicates,
            "types": self.counts(),
            "deleted": {name: len(k) for name, k in sorted(self.deleted.items())},
        }


def read_hashlist(path: Path | str, *, type_name: str | None = None,
                  fmt: ListFormat = ListFormat.auto, label: str | None = None,
                  site: str | None = None,
                  on_type: Callable[[str], None] | None = None,
                  content: bytes | None = None) -> HashList:
    """Parse a hash-list file.

    ``on_type`` is told each entry type as it is first met, before that chunk is normalised
    (executors use it to prepare what the rules of that type need).

    Raises :class:`InvalidListError` (exit 2) naming the file and line for every malformed entry,
    an unreadable, empty, binary or wrongly encoded file, or an ambiguous form without ``--type``.

    The file is opened once: one handle gives its size, format, lines and digest, so the bytes
    hashed are the bytes parsed. ``content`` is the file's bytes already read (an import reads a
    signed file once, to verify the signature over them): they are parsed instead of the path.
    """
    path = Path(path)
    forced = _resolve_type(path, type_name)
    # _open_list refuses a folder, FIFO or device before any read
    with (io.BytesIO(content) if content is not None else _open_list(path)) as handle:
        size = len(content) if content is not None else os.fstat(handle.fileno()).st_size
        return _read_opened(path, handle, size, forced=forced, fmt=fmt, label=label, site=site,
                            on_type=on_type)


def _read_opened(path: Path, handle: BinaryIO, size: int, *, forced: type[KeyType] | None,
                 fmt: ListFormat, label: str | None, site: str | None,
                 on_type: Callable[[str], None] | None) -> HashList:
    """:func:`read_hashlist` on an opened list (``size`` bytes)."""
    if fmt is ListFormat.auto:
        fmt = _detect_format(path, handle)
    digest = hashlib.sha256()
    result = HashList(label=label or path.name, path=path, sha256="", format=fmt)
    # A list cannot hold more entries of a type than the file has lines of that width, so each
    # type gets one buffer of that size: untouched pages cost no memory, and there is no
    # concatenation (which would hold every key twice).
    parts: dict[str, _Growing] = {}
    tombstones: dict[str, _Growing] = {}

    announced: set[str] = set()

    def announce(name: str) -> None:
        if on_type is not None and name not in announced:
            announced.add(name)
            on_type(name)

    typed = _typed(path, digest, handle, fmt, forced, site)
    for key_type, keys, deleted in _keys_of(path, typed, announce):
        target = tombstones if deleted else parts
        if key_type.name not in target:
            target[key_type.name] = _Growing(key_type, size)
        target[key_type.name].append(keys)
        if not deleted:
            result.entries += len(keys)

    result.sha256 = digest.hexdigest()
    result.deleted = {name: unique_values(buffer.take()) for name, buffer in tombstones.items()}
    if result.entries == 0 and not result.deleted:
        raise InvalidListError(path, None, "the list holds no entries",
                               hint="a hash list has one value per line; # starts a comment")
    for name in list(parts):
        result.keys[name] = unique_values(parts.pop(name).take())
    result.duplicates = result.entries - sum(len(k) for k in result.keys.values())
    return result


def _typed(path: Path, digest: hashlib._Hash, handle: BinaryIO, fmt: ListFormat,
           forced: type[KeyType] | None, site: str | None) -> Iterator[_TypedChunk | _Decoded]:
    """The entries of an opened list of format ``fmt``, chunk by chunk, by type."""
    if fmt is ListFormat.text:
        return _typed_from_text_blocks(path, _iter_blocks(path, digest, handle), forced)
    lines = _iter_lines(path, digest, handle)
    if fmt in (ListFormat.tdmrep, ListFormat.robots):
        return _typed_from_site_file(path, lines, fmt is ListFormat.tdmrep, site)
    if fmt in (ListFormat.csv, ListFormat.tsv):
        return _typed_from_delimited(path, lines, forced, "," if fmt is ListFormat.csv else "\t")
    return _typed_from_jsonl(path, lines, forced)


def _keys_of(path: Path, typed: Iterator[_TypedChunk | _Decoded],
             announce: Callable[[str], None]) -> Iterator[tuple[type[KeyType], np.ndarray, bool]]:
    """``(type, keys, tombstones)`` per chunk, each type announced before its first chunk is
    normalised (or, from the fast path, once decoded); the first refused value is an
    :class:`InvalidListError` naming its line (a fast path decodes valid chunks only)."""
    for chunk in typed:
        if isinstance(chunk, _Decoded):
            announce(chunk.key_type.name)
            yield chunk.key_type, chunk.keys, False
            continue
        key_type, numbers, values, deleted = chunk
        announce(key_type.name)
        keys, valid = key_type.normalize_column(values)
        if not valid.all():
            at = int(np.argmin(valid))
            raise InvalidListError(path, int(numbers[at]), _refusal(key_type, values[at]))
        yield key_type, keys, deleted


def _refusal(key_type: type[KeyType], value: str | None) -> str:
    """Why ``value`` is no entry of ``key_type``: the type's own reason (which never holds
    the value, e.g. "an ICANN public suffix..." for a domain), else what was expected."""
    if value is not None:
        try:
            key_type.normalize(value)
        except ValueError as exc:
            return str(exc)
    return f"expected {key_type.expected}"


class _Growing:
    """An append-only key buffer sized for the worst case up front (virtual memory only)."""

    def __init__(self, key_type: type[KeyType], file_size: int) -> None:
        # The bound holds for hex values only (each takes at least 2 * width + 1 bytes).
        self.textual = not issubclass(key_type, HexDigestType)
        self.parts: list[np.ndarray] = []
        if not self.textual:
            rows = file_size // (2 * key_type.width + 1) + 1
            self.buffer = np.empty((rows, key_type.width), dtype=np.uint8)
        self.used = 0

    def append(self, keys: np.ndarray) -> None:
        if self.textual:
            self.parts.append(keys)
            return
        self.buffer[self.used: self.used + len(keys)] = keys
        self.used += len(keys)

    def take(self) -> np.ndarray:
        if self.textual:
            return np.concatenate(self.parts)
        return self.buffer[: self.used]



@dataclass(frozen=True)
class ListArgument:
    """One ``--hashlist`` argument: the file, and the type of its plain values when the
    argument names one (``domain:domains.txt``)."""

    path: Path
    type_name: str | None = None


#: The types a list given by hand may hold without being a secret: opt-out registries of URLs,
#: prefixes, hosts and domains (and the site formats, which give url and url_prefix entries).
#: Digests of URLs, content hashes and keys are what partners keep secret.
_OPT_OUT_TYPES = frozenset({"url", "url_prefix", "host", "domain"})


def public_by_default(type_names: Iterable[str]) -> bool:
    """Whether a list of these entry types is public unless said otherwise: only when every
    type is an opt-out one (url, url_prefix, host, domain); hash sets stay sensitive. The one
    rule for ``lists import`` and ``apply --hashlist``."""
    return set(type_names) <= _OPT_OUT_TYPES


def parse_list_argument(text: str) -> ListArgument:
    """``[TYPE:]FILE`` as given to ``--hashlist``. A prefix is a type only when it is a known
    type name and the whole argument is not an existing file, so a path holding a colon still
    works. A word before a colon that names no type, followed by an existing file, is a
    mistyped type: :class:`InvalidListError` (exit 2), before anything is read or written."""
    whole = Path(text)
    prefix, sep, rest = text.partition(":")
    if not sep or not rest or os.path.lexists(whole):
        return ListArgument(whole)
    if prefix in registered_types():
        return ListArgument(Path(rest), prefix)
    if prefix.replace("_", "").isalnum() and len(prefix) > 1 and os.path.lexists(rest):
        known = ", ".join(sorted(registered_types()))
        raise InvalidListError(rest, None, f"unknown list type {prefix[:40]!r} in --hashlist "
                               f"TYPE:FILE; known types: {known}")
    return ListArgument(whole)



def check_list_file(path: Path | str) -> None:
    """Refuse, before anything reads it, a list path that is missing or not a regular file
    (a FIFO or device would block a reader forever). InvalidListError (exit 2) naming it."""
    _open_list(Path(path)).close()


def _open_list(path: Path) -> BinaryIO:
    """The list file opened for reading; a missing file, folder, FIFO or device is an
    InvalidListError naming it (a FIFO would otherwise block the run forever)."""
    try:
        return open_regular(path, "list file")
    except ScrubError as exc:
        raise InvalidListError(path, None, exc.message.removeprefix(f"{path}: "),
                               hint=exc.hint) from None


def _resolve_type(path: Path, type_name: str | None) -> type[KeyType] | None:
    if type_name is None:
        return None
    try:
        return get_type(type_name)
    except KeyError:
        known = ", ".join(sorted(registered_types()))
        raise InvalidListError(path, None,
                               f"unknown --type {type_name!r}; known types: {known}") from None


def _detect_format(path: Path, handle: BinaryIO) -> ListFormat:
    """The format by name, else by the first line of ``handle`` (rewound after)."""
    by_name = _format_by_name(path)
    if by_name is not None:
        return by_name
    head = handle.read(4096)
    handle.seek(0)
    for raw in head.splitlines():
        line = raw.strip()
        if line and not line.startswith(b"#"):
            return _format_by_line(line)
    return ListFormat.text


_SUFFIX_FORMATS = {".csv": ListFormat.csv, ".tsv": ListFormat.tsv, ".jsonl": ListFormat.jsonl,
                   ".ndjson": ListFormat.jsonl}


def _format_by_name(path: Path) -> ListFormat | None:
    """The format a file's name gives (its last known suffix), or None."""
    name = path.name.lower()
    if name == "tdmrep.json":
        return ListFormat.tdmrep
    for suffix in reversed([s.lower() for s in path.suffixes]):
        if suffix == ".txt":
            return ListFormat.robots if name == "robots.txt" else ListFormat.text
        if suffix in _SUFFIX_FORMATS:
            return _SUFFIX_FORMATS[suffix]
    return None


def _format_by_line(line: bytes) -> ListFormat:
    """The format a file's first line of content (stripped, not a comment) suggests."""
    lowered = line.lower()
    if line.startswith(b"{"):
        return ListFormat.jsonl
    if line.startswith(b"["):
        return ListFormat.tdmrep
    if lowered.startswith((b"user-agent:", b"disallow:", b"allow:")):
        return ListFormat.robots
    named = b"value" in lowered or b"hash" in lowered
    if b"," in line and named:
        return ListFormat.csv
    if b"\t" in line and named:
        return ListFormat.tsv
    return ListFormat.text


def _iter_lines(path: Path, digest: hashlib._Hash,
                handle: BinaryIO) -> Iterator[_Lines]:
    """Stream the file as chunks of stripped, non-blank, comment-free lines with their numbers.

    Comments are removed later by format (CSV keeps ``#`` inside fields); here only blank lines go.
    """
    for data, first_line in _iter_blocks(path, digest, handle):
        yield _chunk_lines(path, data, first_line)


def _iter_blocks(path: Path, digest: hashlib._Hash,
                 handle: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Stream the file as blocks of whole lines (about ``_CHUNK_BYTES``), each with the number
    of its first line; a BOM is dropped and the start checked for UTF-16 and binary content
    (each block's NUL bytes and UTF-8 are checked by :func:`_chunk_lines`, or hold nothing but
    hex digits and newlines). Reads ``handle`` from where it is (the start); the caller closes
    it.
    """
    first_line = 1
    carry = b""
    at_start = True
    while True:
        block = handle.read(_CHUNK_BYTES)
        digest.update(block)
        if at_start:
            at_start = False
            if block.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InvalidListError(path, 1, "the file is UTF-16 encoded",
                                       hint="save it as UTF-8")
            if b"\x00" in block[:8192]:
                raise InvalidListError(path, None,
                                       "binary content (NUL bytes); expected a text list")
            if block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]
        data = carry + block
        if not block:
            if not data:
                return
            carry = b""
        else:
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            data, carry = data[:cut], data[cut:]
        yield data, first_line
        first_line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if not block:
            return
