"""Peer of ``scrub release build`` with the research and research-safe policies: polars reads
each shard once and writes both variants.

``polars_release.py DATASET LIST KEYWORDS OUTPUT --workers N``: per shard (N spawned processes,
each loading the list and keywords once), ``read_parquet`` then drop the rows whose ``md5`` is on
the list or whose ``punsafe`` > 0.95 with a keyword (whole word, any case) in ``TEXT``: that
frame is ``OUTPUT/research/<shard>``; dropping also ``punsafe`` > 0.45 gives
``OUTPUT/research-safe/<shard>``. zstd level 3, scrub's row-group size (``--cheapest``: zstd
level 1 without column statistics, the least a tool that writes both variants spends). Prints
the rows written per variant as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import polars as pl

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.peers.parallel import cores, over_shards, read_list, shard_jobs  # noqa: E402

VARIANTS = ("research", "research-safe")
_LIST: pl.Series | None = None
_KEYWORDS = ""
_CHEAPEST = False


def load(hashlist: str, keywords: str, cheapest: bool = False) -> None:
    global _LIST, _KEYWORDS, _CHEAPEST
    _CHEAPEST = cheapest
    _LIST = read_list(hashlist).to_series()
    terms = [line.strip().lower() for line in Path(keywords).read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    _KEYWORDS = r"(?:^|\W)(?:" + "|".join(re.escape(t) for t in terms) + r")(?:\W|$)"


def release_shard(job: tuple[str, str]) -> int:
    """Write both variants of one shard; the rows of research-safe (research's are counted from
    the files by main)."""
    from scrub.dataset import BATCH_ROWS, WRITER_COMPRESSION_LEVEL

    source, target = job
    assert _LIST is not None
    frame = pl.read_parquet(source)
    drop = frame["md5"].is_in(_LIST.implode()).to_numpy().copy()
    unsafe = (frame["punsafe"] > 0.95).fill_null(False).arg_true()
    flagged = frame["TEXT"].gather(unsafe).str.to_lowercase().str.contains(_KEYWORDS)
    drop[unsafe.filter(flagged.fill_null(False)).to_numpy()] = True
    research = frame.filter(pl.Series(~drop))
    safe = research.filter((pl.col("punsafe") > 0.45).fill_null(False).not_())
    name = Path(target).name
    for variant, rows in zip(VARIANTS, (research, safe), strict=True):
        rows.write_parquet(Path(target).parent / variant / name,
                           compression="zstd", statistics=not _CHEAPEST,
                           compression_level=1 if _CHEAPEST else WRITER_COMPRESSION_LEVEL,
                           row_group_size=BATCH_ROWS)
    return safe.height


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("hashlist", type=Path)
    parser.add_argument("keywords", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=cores())
    parser.add_argument("--cheapest", action="store_true",
                        help="write zstd level 1 without column statistics (the floor)")
    args = parser.parse_args()
    jobs = shard_jobs(args.dataset, args.output)
    for variant in VARIANTS:
        (args.output / variant).mkdir(parents=True, exist_ok=True)
    safe = over_shards(release_shard, jobs, args.workers, initializer=load,
                       initargs=(str(args.hashlist), str(args.keywords), args.cheapest))
    research = sum(pl.scan_parquet(p).select(pl.len()).collect().item()
                   for p in sorted((args.output / "research").glob("*.parquet")))
    print(json.dumps({"research": research, "research-safe": safe}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
