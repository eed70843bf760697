"""The planted release of ``tests/release/test_release_*.py``: a 4-shard dataset with embeddings
and planted rows, a store with a sensitive md5 list and a public URL opt-out list, a ledger with
a verified and a pending request, and ``scrub release build`` over it with the shipped policies.

Import the fixtures into a test module (``from tests.release.planted import built, setup``) for
pytest to find them there; each module gets its own (module scope), since tests add requests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import Result

from scrub.crypto import load_key, write_key_file, write_signing_keypair
from scrub.ledger import db
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from scrub.lists.store import ListStore
from scrub.synthetic import generate_dataset
from scrub.urls import canonical_url
from tests.helpers import expect_ok, run_cli

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEYWORD = "nude"


def _plant(data: Path) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
    """Rewrite the shards of ``data`` with planted NSFW scores and keyword captions; the plan
    of planted global rows per kind and the whole rewritten table."""
    rng = np.random.default_rng(1)
    order = rng.permutation(4_000)
    plan = {"md5": order[:7], "url": order[7:12], "request": order[12:14],
            "pending": order[14:15], "hot_kw": order[15:30], "hot": order[30:45],
            "warm": order[45:60], "warm_kw": order[60:70]}
    shards = sorted(data.glob("*.parquet"))
    frames = [pl.read_parquet(p) for p in shards]
    whole = pl.concat(frames)
    punsafe = whole["punsafe"].to_numpy().copy()
    punsafe = np.minimum(punsafe, 0.3)  # nothing above the thresholds but the planted rows
    text = whole["TEXT"].to_list()
    punsafe[plan["hot_kw"]] = punsafe[plan["hot"]] = 0.97
    punsafe[plan["warm"]] = punsafe[plan["warm_kw"]] = 0.6
    for row in np.concatenate([plan["hot_kw"], plan["warm_kw"]]):
        text[row] = f"photo {KEYWORD.upper()} beach"
    whole = whole.with_columns(pl.Series("punsafe", punsafe, dtype=pl.Float32),
                               pl.Series("TEXT", text))
    start = 0
    for path, frame in zip(shards, frames, strict=True):
        whole.slice(start, frame.height).write_parquet(path)
        start += frame.height
    return plan, whole


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 4-shard dataset with embeddings and planted rows; a store with a sensitive md5 list
    and a public URL opt-out list; a ledger with a verified and a pending request."""
    root = tmp_path_factory.mktemp("release")
    data = generate_dataset(root / "data", rows=4_000, shards=4, seed=8, embeddings=True)
    plan, whole = _plant(data)
    store = ListStore(root / "store")
    key = write_key_file(root / "data.key")
    md5s = whole["md5"].gather(plan["md5"]).to_list()
    (root / "partner.txt").write_text("\n".join(md5s + [f"{i:032x}" for i in range(50)]) + "\n")
    store.import_list(root / "partner.txt", name="partner-md5", source="partner",
                      version="1", key=key)
    urls = whole["URL"].gather(plan["url"]).to_list()
    (root / "optout.csv").write_text("type,value\n" + "".join(f"url,{u}\n" for u in urls))
    store.import_list(root / "optout.csv", name="optout", source="registry", version="1",
                      key=key)  # the store is sealed with the key: every change needs it
    url = f"sqlite:///{root / 'ledger.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    ledger = Ledger(engine, seal=IdentitySeal(key))
    requested = [whole["URL"][int(r)] for r in plan["request"]]
    first, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
        "requester": {"name": "Ada Requester", "email": "ada@example.org"},
        "items": [{"type": "url", "value": u} for u in requested]}, where="r"), "alice")
    ledger.transition(first, "verify", "alice")
    pending, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-02T10:00:00Z",
        "requester": {"name": "Bo", "email": "bo@example.org"},
        "items": [{"type": "url", "value": whole["URL"][int(plan["pending"][0])]}]},
        where="r"), "alice")
    write_signing_keypair(root / "sign.pem", root / "sign.pub")
    return {"root": root, "data": data, "plan": plan, "whole": whole, "store": root / "store",
            "key": root / "data.key", "db": url, "first": first, "pending": pending,
            "md5s": md5s, "urls": urls + requested}


def canonical_set(urls: list[str]) -> set[str]:
    return {canonical_url(u) for u in urls}


def expected_gone(setup: dict, variant: str) -> set[int]:
    """The global rows ``variant`` removes: listed md5s and URLs, requested URLs, and the
    planted NSFW rows of its policy."""
    plan, whole = setup["plan"], setup["whole"]
    lists = set(plan["md5"]) | set(plan["request"])
    # every row whose URL or md5 equals a listed one (the sample repeats some URLs)
    urls = canonical_set(setup["urls"])
    canon = [canonical_url(u) for u in whole["URL"].to_list()]
    lists |= {i for i, u in enumerate(canon) if u in urls}
    lists |= {i for i, m in enumerate(whole["md5"].to_list()) if m in set(setup["md5s"])}
    gone = lists | set(plan["hot_kw"])
    if variant == "research-safe":
        gone |= set(plan["hot"]) | set(plan["warm"]) | set(plan["warm_kw"])
    return {int(i) for i in gone}


def build(setup: dict, out: Path, *extra: str) -> Result:
    """``scrub release build`` of the planted dataset into ``out`` (release id ``r-test``)."""
    root = setup["root"]
    return run_cli(
        "release", "build", str(setup["data"]), str(out),
        "--policy", str(POLICIES / "research.toml"),
        "--policy", str(POLICIES / "research-safe.toml"),
        "--signing-key", str(root / "sign.pem"), "--store", str(setup["store"]),
        "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "2",
        "--release-id", "r-test", "--quiet", "--json", *extra)


def build_from(setup: dict, data: Path, out: Path, *extra: str) -> Result:
    """``scrub release build`` of ``data`` (a changed copy of the planted dataset) into
    ``out``, without marking requests applied."""
    root = setup["root"]
    return run_cli(
        "release", "build", str(data), str(out),
        "--policy", str(POLICIES / "research.toml"),
        "--policy", str(POLICIES / "research-safe.toml"),
        "--signing-key", str(root / "sign.pem"), "--store", str(setup["store"]),
        "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "2",
        "--no-ledger-update", "--quiet", "--json", *extra)


@pytest.fixture(scope="module")
def built(setup: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted release, built once per module; it marks the verified request applied."""
    out = tmp_path_factory.mktemp("out") / "release"
    result = expect_ok(build(setup, out))
    summary = json.loads(result.stdout)
    assert summary["release_id"] == "r-test" and summary["requests_marked_applied"] == 1
    return out


def kept_keys(folder: Path) -> list[str]:
    return pl.read_parquet(sorted(folder.glob("part-*.parquet")))["key"].to_list()


def add_verified(setup: dict, kind: str, email: str, url: str) -> tuple[Ledger, int]:
    """A new verified request in the shared ledger naming one URL."""
    from scrub.ledger.db import make_engine

    ledger = Ledger(make_engine(setup["db"]), seal=IdentitySeal(load_key(setup["key"])))
    request, _ = ledger.add(RequestSpec.parse({
        "kind": kind, "received_at": "2026-11-20T10:00:00Z",
        "requester": {"name": email.split("@")[0], "email": email},
        "items": [{"type": "url", "value": url}]}, where="r"), "alice")
    ledger.transition(request, "verify", "alice")
    return ledger, request
