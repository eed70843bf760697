"""Site opt-out files (a TDMRep ``tdmrep.json`` or a robots.txt-style file of one site) as
URL-prefix and exact-URL entries on that site."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from scrub.errors import InvalidListError
from scrub.lists._records import _Lines, _TypedChunk
from scrub.lists.types import get_type
from scrub.urls import canonical_url


def _typed_from_site_file(path: Path, chunks: Iterator[_Lines], tdmrep: bool,
                          site: str | None) -> Iterator[_TypedChunk]:
    """Prefix (and exact URL) rules of one site from a TDMRep (``tdmrep``) or robots-style
    file."""
    origin = _site_origin(path, site)
    numbers: list[int] = []
    lines: list[str] = []
    for chunk in chunks:
        numbers.extend(chunk.numbers.tolist())
        lines.extend(chunk.text.to_list())
    rules = (_tdmrep_rules if tdmrep else _robots_rules)(path, numbers, lines)
    prefix_rows = [(n, origin + p) for n, p, exact in rules if not exact]
    exact_rows = [(n, origin + p) for n, p, exact in rules if exact]
    for key_type, rows in ((get_type("url_prefix"), prefix_rows), (get_type("url"), exact_rows)):
        if rows:
            yield (key_type, np.array([n for n, _ in rows], dtype=np.int64),
                   pl.Series([v for _, v in rows], dtype=pl.String), False)


def _site_origin(path: Path, site: str | None) -> str:
    if not site:
        raise InvalidListError(path, None, "a site file needs the site it belongs to",
                               hint="pass --site https://host")
    canonical = canonical_url(site)
    if canonical is None:
        raise InvalidListError(path, None, "--site is not a URL",
                               hint="pass --site https://host")
    scheme, _, rest = canonical.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _checked_path(path: Path, number: int, location: str) -> tuple[str, bool]:
    """A location as a prefix: a trailing ``*`` is dropped, ``$`` makes it exact."""
    exact = location.endswith("$")
    location = location[:-1] if exact else location.rstrip("*")
    if not location.startswith("/"):
        raise InvalidListError(path, number, "expected a path starting with /")
    if "*" in location or "$" in location:
        raise InvalidListError(path, number,
                               "wildcards are supported only at the end of a path")
    return location, exact


def _tdmrep_rules(path: Path, numbers: list[int],
                  lines: list[str]) -> list[tuple[int, str, bool]]:
    try:
        document = json.loads("\n".join(lines))
    except json.JSONDecodeError as exc:
        raise InvalidListError(path, None, f"not valid JSON ({exc.msg} at line "
                               f"{numbers[exc.lineno - 1] if lines else 1})") from None
    if not isinstance(document, list):
        raise InvalidListError(path, None, "expected a JSON array of TDMRep rules")
    rules: list[tuple[int, str, bool]] = []
    for index, entry in enumerate(document, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("location"), str):
            raise InvalidListError(path, None, f"rule {index}: expected an object with a "
                                               "string 'location'")
        reservation = entry.get("tdm-reservation")
        if reservation not in (0, 1):
            raise InvalidListError(path, None, f"rule {index}: 'tdm-reservation' must be 0 or 1")
        if reservation == 1:
            location, exact = _checked_path(path, index, entry["location"])
            rules.append((index, location, exact))
    return rules


def _robots_rules(path: Path, numbers: list[int],
                  lines: list[str]) -> list[tuple[int, str, bool]]:
    rules: list[tuple[int, str, bool]] = []
    for number, line in zip(numbers, lines, strict=True):
        text = line.split("#", 1)[0].strip()
        field, sep, value = text.partition(":")
        if not sep:
            if text:
                raise InvalidListError(path, number, "expected 'Field: value'")
            continue
        if field.strip().lower() == "disallow" and value.strip():
            location, exact = _checked_path(path, number, value.strip())
            rules.append((number, location, exact))
    return rules
