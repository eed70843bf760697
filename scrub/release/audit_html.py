"""The audit as one self-contained HTML page (``V.scrub/audit.html``), rendered from its JSON
with the ``audit.html.j2`` template: semantic headings and tables, inline SVG charts each with
a text alternative and a data table, a colour-blind-safe palette (Okabe-Ito), CSS for print
(headers repeated, no row cut, page numbers), and an inline script that makes the per-shard
table sortable and filterable (without scripts it is a plain table). Thousands of shards stay
readable: removals per shard as a histogram and the 20 heaviest shards, not a bar per shard.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scrub.templates import render

#: The heaviest shards shown as a chart.
HEAVIEST = 20
#: Bins of the removals-per-shard histogram (at most).
BINS = 20
#: Width of a bar chart's bars area, in SVG units.
BAR_WIDTH = 360
#: What a CSS string of the page may not hold from a value (see :func:`css_text`).
_CSS_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/+-]")


def bars(data: Mapping[str, int], *, limit: int | None = None) -> list[dict[str, Any]]:
    """Horizontal bars, largest first: label, value, width and y of each."""
    items = sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    top = max((v for _, v in items), default=0) or 1
    return [{"label": label, "value": value, "width": round(BAR_WIDTH * value / top, 1),
             "y": 5 + 24 * i} for i, (label, value) in enumerate(items)]


def histogram(values: list[int]) -> list[dict[str, Any]]:
    """Shards per range of removals: ``low``, ``high`` (inclusive), ``count``, bar height and
    x; at most :data:`BINS` ranges of equal width over 0..max."""
    if not values:
        return []
    top = max(values)
    width = max(1, -(-(top + 1) // BINS))
    counts = [0] * (top // width + 1)
    for value in values:
        counts[value // width] += 1
    tallest = max(counts) or 1
    step = 640 / len(counts)
    return [{"low": i * width, "high": min(top, (i + 1) * width - 1), "count": count,
             "height": round(180 * count / tallest, 1), "x": round(40 + i * step, 1),
             "w": round(step * 0.9, 1)} for i, count in enumerate(counts)]


def view(audit: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows, worked out from the audit."""
    shards = list(audit.get("per_shard") or [])
    removed = {str(s["shard"]): int(s["rows_in"]) - int(s["rows_out"]) for s in shards}
    heaviest = bars({k: v for k, v in removed.items() if v}, limit=HEAVIEST)
    reasons = bars(audit.get("removed_by_reason") or {})
    return {"a": audit, "missing": audit.get("missing") or {},
            "reasons": reasons, "sources": bars(audit.get("removed_by_source") or {}),
            "heaviest": heaviest, "histogram": histogram(list(removed.values())),
            "shards": shards, "empty_shards": sum(1 for v in removed.values() if v == 0),
            "max_removed": max(removed.values(), default=0),
            "page_label": css_text(f"Audit {audit.get('release_id')} / {audit.get('variant')}")}


def css_text(text: str, limit: int = 80) -> str:
    """``text`` safe inside a double-quoted CSS string of an inline stylesheet, where HTML
    escaping does not apply: letters, digits and ``._:/+-`` kept, anything else (a quote, a
    backslash, a line break, ``(``, ``@``, ``<``) as ``_``, at most ``limit`` characters."""
    return _CSS_UNSAFE.sub("_", text)[:limit]


def render_html(audit: Mapping[str, Any]) -> str:
    """The audit as one self-contained HTML page."""
    return render("audit.html.j2", **view(audit))


__all__ = ["bars", "css_text", "histogram", "render_html", "view"]
