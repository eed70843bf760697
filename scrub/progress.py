"""Progress on stderr for long work: shards done, rows/s and an ETA.

On a terminal the line is redrawn in place; otherwise a line is printed at most every few seconds,
so logs of batch jobs stay short. Nothing but counts is printed. Work a resumed run finds done
(:meth:`Progress.resume`) counts towards the totals but not towards the rate, which measures
this run alone.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished shards and rows against known totals (``total_rows`` None: not known
    ahead, e.g. samples in tars; the ETA then follows the shards). ``units`` names the two
    counts for work that is not shards of rows (e.g. steps and entries of a list import)."""

    def __init__(self, label: str, total_shards: int, total_rows: int | None, *,
                 stream: TextIO | None = None, enabled: bool = True,
                 interval: float = 5.0, units: tuple[str, str] = ("shards", "rows")) -> None:
        self.label = label
        self.units = units
        self.total_shards = total_shards
        self.total_rows = total_rows
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.shards = 0
        self.rows = 0
        #: Rows an earlier run completed (in ``rows``, never in the rate).
        self.resumed_rows = 0
        self.resumed_shards = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def advance(self, rows: int, shards: int = 1) -> None:
        if shards == 0 and rows == 0:
            return
        self.shards += shards
        self.rows += rows
        now = time.monotonic()
        if self._tty or now - self._last >= self.interval or self.shards == self.total_shards:
            self._last = now
            self._draw(final=False)

    def resume(self, rows: int, shards: int) -> None:
        """Count work an earlier run completed: it moves the totals, not the rate or the ETA."""
        self.resumed_rows += rows
        self.resumed_shards += shards
        self.advance(rows, shards=shards)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.rows - self.resumed_rows) / elapsed
        parts, rows_unit = self.units
        if self.total_rows is None:
            rows = f"{_human(self.rows)} {rows_unit}"
            left_shards = max(self.total_shards - self.shards, 0)
            fresh = self.shards - self.resumed_shards
            eta = _clock(left_shards * elapsed / fresh) if fresh > 0 else "?"
        else:
            rows = f"{_human(self.rows)}/{_human(self.total_rows)} {rows_unit}"
            left = max(self.total_rows - self.rows, 0)
            eta = _clock(left / rate) if rate > 0 else "?"
        return (f"{self.label}: {self.shards}/{self.total_shards} {parts} · {rows} · "
                f"{_human(rate)} {rows_unit}/s · ETA {eta}")

    def finish(self) -> None:
        self._draw(final=True)

    def _draw(self, *, final: bool) -> None:
        if not self.enabled:
            return
        if self._tty:
            end = "\n" if final else ""
            self.stream.write("\r\x1b[2K" + self.line() + end)
        elif not final or self.shards != self.total_shards or self._last == 0.0:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
