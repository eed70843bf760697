"""The HTML documents scrub writes (the audit report, the data subject's letter) as Jinja2
templates shipped beside this module (``*.j2``, package data). Autoescape is always on and an
undefined name is an error, so a value reaches a page only escaped and never silently blank;
the templates load no external resource (inline CSS and scripts only). Plain-text templates
(``*.txt.j2``) are the one exception to escaping: HTML entities would garble them."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

FOLDER = Path(__file__).resolve().parent


@cache
def environment() -> jinja2.Environment:
    """The one environment every document renders with."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(FOLDER), autoescape=_escaped,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def _escaped(name: str | None) -> bool:
    """Every template is autoescaped but plain text (``*.txt.j2``)."""
    return name is None or not name.endswith(".txt.j2")


def render(name: str, **context: Any) -> str:
    """The template ``name`` (e.g. ``audit.html.j2``) rendered with ``context``."""
    return environment().get_template(name).render(**context)
