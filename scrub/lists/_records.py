"""Chunks of list lines and the record formats: CSV/TSV with a header, and JSON Lines.

Each parser yields ``(type, line numbers, values, tombstone)`` per type, validated as whole
columns; a bad record is an :class:`~scrub.errors.InvalidListError` naming its line."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from scrub.errors import InvalidListError
from scrub.lists.types import KeyType, registered_types

_VALUE_COLUMNS = ("value", "hash")
_JSON_SCHEMA = pl.Struct({"type": pl.String, "value": pl.String, "deleted": pl.Boolean})


@dataclass
class _Lines:
    """One chunk of non-blank, comment-free lines."""

    numbers: np.ndarray  # 1-based line numbers
    text: pl.Series      # stripped line text


_TypedChunk = tuple[type[KeyType], np.ndarray, pl.Series, bool]


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
