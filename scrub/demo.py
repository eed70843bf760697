"""``scrub demo``: generate a LAION-like sample, plant matches for two hash lists, scrub it.

Everything lands under one work folder: ``dataset/`` (the sample), ``lists/`` (a partner-style
md5 list and a CSV of URL digests, each with planted hits among random decoys) and ``scrubbed/``
(the output of ``scrub apply``: its shards only, its report in ``scrubbed.scrub/``). The same
arguments give the same bytes; a rerun reuses the sample and resumes the job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scrub.apply import ApplyResult, apply
from scrub.atomic import atomic_path
from scrub.engine.plan import plan_from_hashlists
from scrub.lists.hashlist import read_hashlist
from scrub.synthetic import generate_dataset, random_md5s, read_column, write_hashlist

if TYPE_CHECKING:  # imported when the release demo runs
    from scrub.ledger.service import Ledger
    from scrub.lists.store import ListStore


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


@dataclass
class ReleaseDemo:
    """Where the demo's release went, and what it did."""

    release_id: str
    variants: dict[str, Path]
    rows_out: dict[str, int]
    request: int
    public_key: Path


def run_release_demo(demo: DemoResult, *, seed: int = 0, workers: int | None = None,
                     progress: bool = True) -> ReleaseDemo:
    """The rest of the path on the demo's sample: both lists imported into a store (the partner
    list encrypted), a takedown request recorded and verified in a SQLite ledger, and the
    research and research-safe variants built, signed and audited under ``release/``."""
    import shutil

    from scrub.crypto import load_signing_key
    from scrub.release.build import build, plan_release
    from scrub.release.ledger import mark_release_applied
    from scrub.release.manifest import Finisher
    from scrub.release.policy import load_policy
    from scrub.release.publish import BuildResult
    from scrub.release.signed import release_secret

    work = demo.workdir
    key, signing, public = _demo_keys(work)
    store = _demo_store(demo, key)
    ledger, request = _demo_ledger(demo, key, seed)
    policies = [load_policy("research"), load_policy("research-safe")]  # the stock policies
    release = plan_release(policies, store=store, key=key, ledger=ledger)
    private = load_signing_key(signing)
    output = work / "release"
    shutil.rmtree(output, ignore_errors=True)  # the demo's own folder: a fresh release each run
    secret = release_secret(private)

    def mark_applied(done: BuildResult) -> None:
        """The ledger learns of the release, with the rows each item removed per variant,
        before the staging folder goes (a killed run finishes it): as `release build` does."""
        mark_release_applied(ledger, done, private.public_key())

    result = build(demo.dataset, output, release, secret=secret, workers=workers,
                   progress=progress,
                   finish=Finisher(release, demo.dataset, private, dataset="scrub-demo"),
                   published=mark_applied)
    folders = {n: f for n, f in result.variants.items() if isinstance(f, Path)}  # all: local
    return ReleaseDemo(result.release_id, folders,
                       {n: sum(s.rows_out for s in st) for n, st in result.stats.items()},
                       request, public)


def _demo_keys(work: Path) -> tuple[bytes, Path, Path]:
    """(data key, signing key file, public key file) of the demo, made on its first run."""
    from scrub.crypto import load_key, public_key_path, write_key_file, write_signing_keypair

    key_path, signing = work / "data.key", work / "signing.pem"
    public = public_key_path(signing)  # as scrub keygen --signing -o signing.pem names it
    key = load_key(key_path) if key_path.is_file() else write_key_file(key_path)
    if not signing.is_file():
        write_signing_keypair(signing, public, force=True)
    return key, signing, public


def _demo_store(demo: DemoResult, key: bytes) -> ListStore:
    """The demo's list store, holding both of its lists (the partner list encrypted)."""
    from scrub.lists.store import ListStore

    store = ListStore(demo.workdir / "store")
    catalog = store.catalog()
    for path, name, source in ((demo.lists[0], "partner-md5", "partner"),
                               (demo.lists[1], "takedown-urls", "registry")):
        if name not in catalog:
            store.import_list(path, name=name, source=source, version="1", key=key)
    return store


def _demo_ledger(demo: DemoResult, key: bytes, seed: int) -> tuple[Ledger, int]:
    """The demo's SQLite ledger and its one verified takedown request (made on the first run:
    the URL of a row drawn with ``seed``)."""
    from scrub.ledger import db
    from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec

    engine = db.make_engine(f"sqlite:///{demo.workdir / 'ledger.db'}")
    db.upgrade(engine)
    ledger = Ledger(engine, seal=IdentitySeal(key))
    existing = ledger.list()
    if existing:
        return ledger, existing[0].id
    rows = read_column(demo.dataset, "URL")
    url = rows[int(np.random.default_rng([seed, 11]).integers(0, len(rows)))]
    request, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
        "requester": {"name": "Demo Requester", "email": "requester@example.org"},
        "items": [{"type": "url", "value": url}]}, where="demo request"), "demo")
    ledger.transition(request, "verify", "demo")
    return ledger, request
