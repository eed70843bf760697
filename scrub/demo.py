"""``scrub demo``: generate a LAION-like sample, plant matches for two hash lists, scrub it.

Everything lands under one work folder: ``dataset/`` (the sample), ``lists/`` (a partner-style
md5 list and a CSV of URL digests, each with planted hits among random decoys) and ``scrubbed/``
(the output of ``scrub apply``). The same arguments give the same bytes; a rerun reuses the sample
and resumes the job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scrub.atomic import atomic_path
from scrub.engine.apply import ApplyResult, apply
from scrub.engine.plan import plan_from_hashlists
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import generate_dataset, random_md5s, read_column, write_hashlist


@dataclass
class DemoResult:
    """Where the demo wrote things, how many rows were planted, and the apply result."""

    workdir: Path
    dataset: Path
    output: Path
    lists: list[Path]
    planted_rows: int
    result: ApplyResult


def run_demo(workdir: Path | str, *, rows: int = 50_000, shards: int = 4, seed: int = 0,
             workers: int | None = None, progress: bool = True) -> DemoResult:
    """Generate, plant, scrub. Returns what was done; raises ScrubError on failure."""
    work = Path(workdir)
    dataset = generate_dataset(work / "dataset", rows=rows, shards=shards, seed=seed)
    lists_dir = work / "lists"
    lists_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(rows)
    md5_rows = np.sort(order[: max(1, rows // 1000)])
    url_rows = np.sort(order[len(md5_rows): len(md5_rows) + max(1, rows // 2000)])

    md5s = read_column(dataset, "md5").gather(md5_rows).to_numpy().astype(str)
    md5_list = write_hashlist(
        lists_dir / "partner-md5.txt",
        np.concatenate([md5s, random_md5s(max(1000, 10 * len(md5s)), seed)]),
        header="demo partner list: md5 of image bytes (planted hits + random decoys)")

    urls = read_column(dataset, "URL").gather(url_rows).to_list()
    decoys = [f"https://decoy{i}.example/{seed}.jpg" for i in range(100)]
    url_csv = lists_dir / "takedown-urls.csv"
    body = "type,value\n" + "".join(
        f"url_sha256,{hashlib.sha256(u.encode()).hexdigest()}\n" for u in urls + decoys)
    with atomic_path(url_csv) as tmp:
        tmp.write_text(body, encoding="utf-8")

    lists = [read_hashlist(md5_list), read_hashlist(url_csv)]
    plan = plan_from_hashlists(lists)
    output = work / "scrubbed"
    result = apply(plan, dataset, output, workers=workers, force=True, progress=progress)
    return DemoResult(workdir=work, dataset=dataset, output=output, lists=[md5_list, url_csv],
                      planted_rows=len(md5_rows) + len(url_rows), result=result)
