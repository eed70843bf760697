"""The HTML documents scrub writes (the audit report, the data subject's letter) as Jinja2
templates shipped beside this module (``*.j2``, package data). Autoescape is always on and an
undefined name is an error, so a value reaches a page only escaped and never silently blank;
the templates load no external resource (inline CSS and scripts only). Plain-text templates
(``*.txt.j2``) are the one exception to escaping: HTML entities would garble them."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

FOLDER = Path(__file__).resolve().parent


@cache
def environment() -> jinja2.Environment:
    """The one environment every document renders with."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(FOLDER), autoescape=_escaped,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              finalize=_inert)


#: Characters a value may not carry into a page: C0/C1 controls (terminal escapes) and the
#: bidirectional overrides and isolates that make text read otherwise than it is stored.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _inert(value: Any) -> Any:
    """A value as a template shows it: a string with :data:`_UNSAFE` characters replaced by
    U+FFFD (markup a macro already built is left as it is: its values went through here)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return _UNSAFE.sub("\ufffd", value)
    return value


def _escaped(name: str | None) -> bool:
    """Every template is autoescaped but plain text (``*.txt.j2``)."""
    return name is None or not name.endswith(".txt.j2")


def render(name: str, **context: Any) -> str:
    """The template ``name`` (e.g. ``audit.html.j2``) rendered with ``context``."""
    return environment().get_template(name).render(**context)
