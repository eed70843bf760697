"""Progress lines on stderr: shards, rows, rate and an ETA."""

from __future__ import annotations

import io
import re

from scrub.progress import Progress


def test_known_totals_give_rows_out_of_the_total() -> None:
    out = io.StringIO()
    meter = Progress("apply", 4, 4_000, stream=out, interval=0)
    meter.advance(1_000)
    assert re.search(r"apply: 1/4 shards · 1\.0k/4\.0k rows · .* rows/s · ETA \d",
                     out.getvalue())


def test_unknown_row_totals_count_rows_and_estimate_from_shards() -> None:
    out = io.StringIO()
    meter = Progress("hash", 4, None, stream=out, interval=0)
    meter.advance(250)
    line = out.getvalue()
    assert "hash: 1/4 shards · 250 rows · " in line
    assert "/0" not in line and re.search(r"ETA \d+:\d\d:\d\d", line)
