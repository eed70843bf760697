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


def test_a_resumed_runs_rate_counts_only_this_runs_rows() -> None:
    """Rows an earlier run completed move the totals, not the rate: 2.5 G rows/s was shown."""
    out = io.StringIO()
    meter = Progress("apply", 4, 4_000_000_000, stream=out, interval=0)
    meter.resume(3_000_000_000, shards=3)
    meter.advance(1_000)
    last = out.getvalue().splitlines()[-1]
    assert "apply: 4/4 shards · 3.0G/4.0G rows" in last
    rate = re.search(r"· ([\d.]+)([kMG]?) rows/s", last)
    assert rate is not None and rate.group(2) in ("", "k", "M")
