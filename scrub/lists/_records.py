"""Chunks of list lines and the record formats: plain text, CSV/TSV with a header, and JSON Lines.

Each parser yields ``(type, line numbers, values, tombstone)`` per type, validated as whole
columns; a bad record is an :class:`~scrub.errors.InvalidListError` naming its line. A text
chunk of nothing but hex lines of one width is decoded at once instead (:class:`_Decoded`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from scrub.errors import InvalidListError
from scrub.keys import hex_to_keys
from scrub.lists.types import HexDigestType, KeyType, inferable_by_width, registered_types

_VALUE_COLUMNS = ("value", "hash")
_COMMENT = r"(^|\s)#.*$"
_JSON_SCHEMA = pl.Struct({"type": pl.String, "value": pl.String, "deleted": pl.Boolean})


@dataclass
class _Lines:
    """One chunk of non-blank, comment-free lines."""

    numbers: np.ndarray  # 1-based line numbers
    text: pl.Series      # stripped line text


_TypedChunk = tuple[type[KeyType], np.ndarray, pl.Series, bool]


@dataclass
class _Decoded:
    """A chunk of entries already decoded and valid (the fixed-width fast path)."""

    key_type: type[KeyType]
    keys: np.ndarray  # (n, width) uint8


def fixed_width_hex(data: bytes, forced: type[KeyType] | None,
                    by_length: dict[int, list[type[KeyType]]]) -> _Decoded | None:
    """A block of a text list decoded at once when it is nothing but lines of one width of hex
    digits, each ending in a newline, of one type (``forced``, or the only inferable type of
    that width, normalised as :class:`HexDigestType` does); None for any other block (blank
    lines, comments, spaces, CR, a ``0x``, mixed widths, a bad digit, a last line without
    newline...), which the line parser then reads, with its errors. Where this one answers,
    both give the same keys; this one in a third of the time (no line splitting or stripping)."""
    width = data.find(b"\n")
    candidates = [forced] if forced is not None else by_length.get(width, [])
    if width <= 0 or len(data) % (width + 1) or len(candidates) != 1:
        return None
    key_type = candidates[0]
    if not _plain_hex(key_type) or 2 * key_type.width != width:
        return None  # a type with its own normalisation (or a width it refuses): the parser
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, width + 1)
    if not (rows[:, width] == 10).all():
        return None
    digits = np.ascontiguousarray(rows[:, :width])
    offsets = np.arange(0, digits.size + 1, width, dtype=np.int64)
    text = pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offsets),
                                            pa.py_buffer(digits))
    keys, valid = hex_to_keys(text, key_type.width)
    return _Decoded(key_type, keys) if valid.all() else None


def _plain_hex(key_type: type[KeyType]) -> bool:
    """Whether ``key_type`` is a hex digest normalised as :class:`HexDigestType` does it."""
    mro = key_type.__mro__
    return HexDigestType in mro and not any(
        "normalize_column" in vars(cls) for cls in mro[: mro.index(HexDigestType)])


def type_hint(path: Path, why: str) -> str:
    """How to name a list's type, in a form that works with several lists at once."""
    return (f"name its type {why}: scrub apply --hashlist TYPE:{path} (one list), or scrub "
            "lists import --type TYPE; types: " + ", ".join(sorted(registered_types())))



def _typed_from_delimited(path: Path, chunks: Iterator[_Lines], forced: type[KeyType] | None,
                          delimiter: str) -> Iterator[_TypedChunk]:
    header: list[str] | None = None
    value_at = type_at = deleted_at = -1
    # read where the header names no type column, which is refused unless a type is forced
    forced_name = forced.name if forced is not None else ""
    for chunk in chunks:
        numbers, text = chunk.numbers, chunk.text
        comment = text.str.starts_with("#").to_numpy()
        numbers, text = numbers[~comment], text.filter(pl.Series(~comment))
        if len(text) == 0:
            continue
        if header is None:
            header = [h.strip().lower() for h in
                      _parse_line(path, int(numbers[0]), text[0], delimiter)]
            value_at = next((header.index(c) for c in _VALUE_COLUMNS if c in header), -1)
            type_at = header.index("type") if "type" in header else -1
            deleted_at = header.index("deleted") if "deleted" in header else -1
            if value_at < 0:
                raise InvalidListError(path, int(numbers[0]),
                                       "the header names no 'value' (or 'hash') column")
            if type_at < 0 and forced is None:
                raise InvalidListError(path, int(numbers[0]), "the header names no 'type' column",
                                       hint=type_hint(path, "or add a type column"))
            numbers, text = numbers[1:], text.slice(1)
            if len(text) == 0:
                continue
        fields = _split_fields(path, numbers, text, delimiter, len(header))
        types = (fields[type_at] if type_at >= 0
                 else pl.Series([forced_name] * len(text)))
        deleted = (_truthy(fields[deleted_at]) if deleted_at >= 0
                   else np.zeros(len(text), dtype=bool))
        yield from _group_by_type(path, numbers, types, fields[value_at], deleted)


def _split_fields(path: Path, numbers: np.ndarray, text: pl.Series, delimiter: str,
                  width: int) -> list[pl.Series]:
    """Split delimited lines into ``width`` stripped columns; a wrong field count is an error.

    Lines with quotes are parsed one by one (a record is one line: a quoted field that runs
    over a line break is an error naming its line, never a silent shift of the rows)."""
    if text.str.contains('"', literal=True).any():
        rows: list[list[str]] = []
        for number, line in zip(numbers, text, strict=True):
            row = _parse_line(path, int(number), line, delimiter)
            if len(row) != width:
                raise InvalidListError(path, int(number),
                                       f"expected {width} fields, found {len(row)}")
            rows.append(row)
        return [pl.Series([r[i].strip() for r in rows], dtype=pl.String) for i in range(width)]
    parts = text.str.split(delimiter)
    counts = parts.list.len().to_numpy()
    if (counts != width).any():
        at = int(np.argmax(counts != width))
        raise InvalidListError(path, int(numbers[at]),
                               f"expected {width} fields, found {int(counts[at])}")
    return [parts.list.get(i).str.strip_chars() for i in range(width)]


def _parse_line(path: Path, number: int, line: str, delimiter: str) -> list[str]:
    """One delimited line's fields; an unclosed quote or stray text after one is an error."""
    try:
        rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error:
        raise InvalidListError(path, number, "malformed record (an unclosed quote, text after a "
                               "closing quote, or a line break inside a field)",
                               hint="one record per line; quote a field whole, doubling any "
                                    "quote inside it") from None
    return rows[0] if rows else [""]


def _truthy(flags: pl.Series) -> np.ndarray:
    return flags.str.to_lowercase().is_in(["1", "true", "yes", "y"]).fill_null(False).to_numpy()


def _group_by_type(path: Path, numbers: np.ndarray, types: pl.Series, values: pl.Series,
                   deleted: np.ndarray) -> Iterator[_TypedChunk]:
    names = types.str.to_lowercase()
    registry = registered_types()
    known = names.is_in(list(registry)).fill_null(False).to_numpy()
    if not known.all():
        at = int(np.argmin(known))
        raise InvalidListError(path, int(numbers[at]),
                               f"unknown type; known types: {', '.join(sorted(registry))}")
    names_np = names.to_numpy()
    for name in sorted(set(names_np.tolist())):
        for tomb in (False, True):
            rows = (names_np == name) & (deleted == tomb)
            if rows.any():
                yield registry[name], numbers[rows], values.filter(pl.Series(rows)), tomb


def _typed_from_jsonl(path: Path, chunks: Iterator[_Lines],
                      forced: type[KeyType] | None) -> Iterator[_TypedChunk]:
    for chunk in chunks:
        try:
            decoded = chunk.text.str.json_decode(_JSON_SCHEMA).struct.unnest()
        except pl.exceptions.PolarsError:
            _raise_first_bad_json(path, chunk)
            raise InvalidListError(path, int(chunk.numbers[0]) if len(chunk.numbers) else None,
                                   "not valid JSON Lines") from None
        values = decoded["value"]
        missing = values.is_null().to_numpy()
        if missing.any():
            _raise_first_bad_json(path, chunk)
            raise InvalidListError(path, int(chunk.numbers[np.argmax(missing)]),
                                   "expected a JSON object with a string 'value'")
        types = decoded["type"]
        if types.is_null().any():
            if forced is None:
                at = int(chunk.numbers[np.argmax(types.is_null().to_numpy())])
                raise InvalidListError(path, at, "the object has no 'type'",
                                       hint=type_hint(path, "or add a type field"))
            types = types.fill_null(forced.name)
        deleted = decoded["deleted"].fill_null(False).to_numpy()
        yield from _group_by_type(path, chunk.numbers, types, values, deleted)


def _raise_first_bad_json(path: Path, chunk: _Lines) -> None:
    """Find the first line that is not an object with a string value (slow path, errors only).

    Strict JSON (RFC 8259): numbers that overflow a double (``1e999``) and ``NaN``/``Infinity``
    are errors, as they are for the vectorised decoder; any line that decoder refuses is named.
    """
    for number, line in zip(chunk.numbers, chunk.text, strict=True):
        try:
            obj = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            raise InvalidListError(path, int(number), "not valid JSON",
                                   hint="strict JSON: no NaN or Infinity, numbers within a "
                                        "double's range") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("value"), str):
            raise InvalidListError(path, int(number),
                                   "expected a JSON object with a string 'value'")
        if "type" in obj and not isinstance(obj["type"], str):
            raise InvalidListError(path, int(number), "'type' must be a string")
        if "deleted" in obj and not isinstance(obj["deleted"], bool):
            raise InvalidListError(path, int(number), "'deleted' must be true or false")
    # Python accepts every line: find the one the vectorised decoder refuses, by halving.
    lo, hi = 0, len(chunk.text)
    if hi == 0 or _decodes(chunk.text):
        return
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _decodes(chunk.text.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    raise InvalidListError(path, int(chunk.numbers[lo]), "not valid JSON")


def _decodes(lines: pl.Series) -> bool:
    try:
        lines.str.json_decode(_JSON_SCHEMA)
    except pl.exceptions.PolarsError:
        return False
    return True


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _chunk_lines(path: Path, data: bytes, first_line: int) -> _Lines:
    if b"\x00" in data:
        line = first_line + data[: data.index(b"\x00")].count(b"\n")
        raise InvalidListError(path, line, "binary content (NUL byte); expected a text list")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data[: exc.start].count(b"\n")
        raise InvalidListError(path, line, "not valid UTF-8", hint="save the list as UTF-8") \
            from None
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == 10) + 1
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    if offsets[-1] != len(data):
        offsets = np.concatenate((offsets, [len(data)]))
    count = len(offsets) - 1
    array = pa.LargeStringArray.from_buffers(count, pa.py_buffer(offsets.tobytes()),
                                             pa.py_buffer(data))
    text = pl.Series("line", array).str.strip_chars()
    keep = (text.str.len_bytes() > 0).to_numpy()
    numbers = np.arange(first_line, first_line + count, dtype=np.int64)[keep]
    return _Lines(numbers=numbers, text=text.filter(pl.Series(keep)))


def _typed_from_text_blocks(path: Path, blocks: Iterator[tuple[bytes, int]],
                            forced: type[KeyType] | None) -> Iterator[_TypedChunk | _Decoded]:
    """A text list block by block: a block of fixed-width hex lines decoded at once
    (:func:`~scrub.lists._records.fixed_width_hex`), after any leading comment and blank
    lines (a header); any other block through the line parser, with its errors."""
    by_length = inferable_by_width()
    for data, first_line in blocks:
        head = _header_bytes(data)
        decoded = fixed_width_hex(data[head:], forced, by_length) if head < len(data) else None
        parsed = data[:head] if decoded is not None else data
        if parsed:  # the header (no entries, but checked as lines), or the whole block
            yield from _typed_from_text(
                path, iter([_chunk_lines(path, parsed, first_line)]), forced)
        if decoded is not None:
            yield decoded


def _header_bytes(data: bytes) -> int:
    """The length of the block's leading whole-line ``#`` comments and empty lines."""
    at = 0
    while at < len(data) and data[at] in b"#\n":
        end = data.find(b"\n", at)
        if end < 0:
            return len(data)
        at = end + 1
    return at


def _typed_from_text(path: Path, chunks: Iterator[_Lines],
                     forced: type[KeyType] | None) -> Iterator[_TypedChunk]:
    by_length = inferable_by_width()
    for chunk in chunks:
        values = _strip_comments(chunk.text)
        keep = (values.str.len_bytes() > 0).to_numpy()
        numbers, values = chunk.numbers[keep], values.filter(pl.Series(keep))
        if len(values) == 0:
            continue
        if forced is not None:
            yield forced, numbers, values, False
            continue
        yield from _infer_types(path, numbers, values, by_length)


def _strip_comments(text: pl.Series) -> pl.Series:
    """Remove ``#`` comments; the regex runs only on the (few) lines that hold a ``#``."""
    rows = text.str.contains("#", literal=True).arg_true()
    if len(rows) == 0:
        return text
    cleaned = text.gather(rows).str.replace(_COMMENT, "").str.strip_chars()
    return text.scatter(rows, cleaned)


def _infer_types(path: Path, numbers: np.ndarray, values: pl.Series,
                 by_length: dict[int, list[type[KeyType]]]) -> Iterator[_TypedChunk]:
    lengths = values.str.strip_prefix("0x").str.strip_prefix("0X").str.len_bytes().to_numpy()
    known = np.isin(lengths, list(by_length))
    if not known.all():
        forms = ", ".join(
            f"{length} hex digits ({'/'.join(t.name for t in types)})"
            for length, types in sorted(by_length.items()))
        raise InvalidListError(path, int(numbers[np.argmin(known)]),
                               f"unrecognised value form; expected {forms}",
                               hint=type_hint(path, "to read other kinds of list"))
    for length, types in sorted(by_length.items()):
        rows = lengths == length
        if not rows.any():
            continue
        if len(types) > 1:
            names = " or ".join(t.name for t in types)
            raise InvalidListError(path, int(numbers[np.argmax(rows)]),
                                   f"ambiguous value form: {length} hex digits may be {names}",
                                   hint=type_hint(path, "to say which"))
        yield types[0], numbers[rows], values.filter(pl.Series(rows)), False
