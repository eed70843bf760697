"""``scrub release build|verify`` on a generated dataset: Re-LAION thresholds on planted rows,
variants nested, signed manifests, audits without sensitive values, removal lists that
reproduce the removals on a copy, resume, and bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from scrub.cli.main import app
from scrub.crypto import load_key, write_key_file, write_signing_keypair
from scrub.ledger import db
from scrub.layout import companion
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from scrub.lists.store import ListStore
from scrub.synthetic import generate_dataset
from scrub.urls import canonical_url

runner = CliRunner()
POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEYWORD = "nude"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 4-shard dataset with embeddings and planted rows; a store with a sensitive md5 list
    and a public URL opt-out list; a ledger with a verified and a pending request."""
    root = tmp_path_factory.mktemp("release")
    data = generate_dataset(root / "data", rows=4_000, shards=4, seed=8, embeddings=True)
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
    for path, frame in zip(shards, frames):
        whole.slice(start, frame.height).write_parquet(path)
        start += frame.height
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


def build(setup: dict, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    root = setup["root"]
    return runner.invoke(app, [
        "release", "build", str(setup["data"]), str(out),
        "--policy", str(POLICIES / "research.toml"),
        "--policy", str(POLICIES / "research-safe.toml"),
        "--signing-key", str(root / "sign.pem"), "--store", str(setup["store"]),
        "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "2",
        "--release-id", "r-test", "--quiet", "--json", *extra])


@pytest.fixture(scope="module")
def built(setup: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "release"
    result = build(setup, out)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["release_id"] == "r-test" and summary["requests_marked_applied"] == 1
    return out


def kept_keys(folder: Path) -> list[str]:
    return pl.read_parquet(sorted(folder.glob("part-*.parquet")))["key"].to_list()


def test_variants_keep_exactly_the_expected_rows_in_order(setup: dict, built: Path) -> None:
    keys = setup["whole"]["key"].to_list()
    for variant in ("research", "research-safe"):
        gone = expected_gone(setup, variant)
        assert kept_keys(built / variant) == [k for i, k in enumerate(keys) if i not in gone]
        for shard in sorted(setup["data"].glob("*.parquet")):
            assert pq.read_schema(built / variant / shard.name).equals(pq.read_schema(shard))
    safe, research = set(kept_keys(built / "research-safe")), set(kept_keys(built / "research"))
    assert safe < research < set(keys)


def test_embeddings_stay_row_aligned(setup: dict, built: Path) -> None:
    for variant in ("research", "research-safe"):
        for index, shard in enumerate(sorted(setup["data"].glob("*.parquet"))):
            source_keys = pl.read_parquet(shard)["key"].to_list()
            kept = pl.read_parquet(built / variant / shard.name)["key"].to_list()
            rows = [source_keys.index(k) for k in kept]
            original = np.load(setup["data"] / "img_emb" / f"img_emb_{index}.npy")
            filtered = np.load(companion(built / variant) / "img_emb" / f"img_emb_{index}.npy")
            assert np.array_equal(filtered, original[rows])


def test_manifests_verify_and_catch_tampering(setup: dict, built: Path, tmp_path: Path) -> None:
    root = setup["root"]
    ok = runner.invoke(app, ["release", "verify", str(built / "research"), "--pubkey",
                             str(root / "sign.pub"), "--store", str(setup["store"]),
                             "--key-file", str(setup["key"]), "--db", setup["db"]])
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((companion(built / "research") / "manifest.json").read_text())
    assert manifest["release_id"] == "r-test" and manifest["variant"] == "research"
    assert {e["name"] for e in manifest["lists"]} == {"partner-md5", "optout"}
    assert manifest["ledger"]["events"] == 3 and len(manifest["ledger"]["head"]) == 64
    assert len(manifest["input_shards"]) == 4 and len(manifest["shards"]) == 4
    for case in ("shard", "rows", "signature", "state"):
        copy = tmp_path / case / "research"
        for folder in (copy, companion(copy)):
            shutil.copytree(built / folder.name, folder)
        shard = copy / "part-00001.parquet"
        if case == "shard":
            table = pq.read_table(shard)
            pq.write_table(table.set_column(1, "TEXT", pa.array(["x"] * table.num_rows)), shard)
        elif case == "rows":
            pq.write_table(pq.read_table(shard).slice(1), shard)
        elif case == "state":  # build state is never part of a release
            (copy / "_state").mkdir()
            (copy / "_state" / "part-00001.json").write_text("{}\n")
        else:
            body = json.loads((companion(copy) / "manifest.json").read_text())
            body["totals"]["removed"] += 1
            (companion(copy) / "manifest.json").write_text(json.dumps(body, indent=2,
                                                                      sort_keys=True))
        bad = runner.invoke(app, ["release", "verify", str(copy), "--pubkey",
                                  str(root / "sign.pub")])
        assert bad.exit_code == 3, (case, bad.output)
        expected = {"shard": "part-00001.parquet: sha256 differs",
                    "rows": "part-00001.parquet", "signature": "signature does not verify",
                    "state": "_state: a folder the manifest does not list"}
        assert expected[case] in bad.output


def test_reports_hold_no_sensitive_value(setup: dict, built: Path) -> None:
    audit = json.loads((companion(built / "research-safe") / "audit.json").read_text())
    assert audit["removed"] == len(expected_gone(setup, "research-safe"))
    assert audit["removed_by_reason"]["nsfw"] == 15 + 15 + 15 + 10
    assert "ledger requests" in audit["removed_by_source"]
    blobs = [(companion(built / v) / name).read_bytes() for v in ("research", "research-safe")
             for name in ("audit.json", "audit.html", "manifest.json", "removals.parquet")]
    html = (companion(built / "research") / "audit.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    secrets = setup["md5s"] + setup["urls"] + ["Ada Requester", "ada@example.org"]
    secrets += [canonical_url(u) for u in setup["urls"]]
    for secret in secrets:
        assert all(secret.encode() not in blob for blob in blobs), secret


def test_the_removal_list_reproduces_the_removals_on_a_copy(setup: dict, built: Path,
                                                             tmp_path: Path) -> None:
    for variant in ("research", "research-safe"):
        out = tmp_path / variant
        result = runner.invoke(app, ["apply", str(setup["data"]), str(out), "--hashlist",
                                     str(companion(built / variant) / "removals.parquet"),
                                     "--workers",
                                     "1", "--quiet"])
        assert result.exit_code == 0, result.output
        assert kept_keys(out) == kept_keys(built / variant)


def test_the_ledger_marks_the_verified_request_applied(setup: dict, built: Path) -> None:
    from scrub.ledger.db import make_engine

    ledger = Ledger(make_engine(setup["db"]))
    assert ledger.show(setup["first"]).status == "applied"
    assert ledger.show(setup["first"]).releases == ["r-test"]
    assert ledger.show(setup["pending"]).status == "received"


def test_an_interrupted_build_resumes_to_the_same_bytes(setup: dict, built: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "again"
    staged = out / ".scrub-release"
    first = build(setup, out, "--no-ledger-update")
    assert first.exit_code == 0
    reference = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    shutil.rmtree(out)
    # a build stopped after two shards: its staging folder holds them and their markers
    from scrub.release import build as build_module

    calls = []
    original = build_module.build_shard

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    build_module.build_shard = failing  # type: ignore[assignment]
    try:
        stopped = runner.invoke(app, [
                "release", "build", str(setup["data"]), str(out), "--policy",
                str(POLICIES / "research.toml"), "--policy",
                str(POLICIES / "research-safe.toml"), "--signing-key",
                str(setup["root"] / "sign.pem"), "--store", str(setup["store"]),
                "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "1",
                "--release-id", "r-test", "--no-ledger-update", "-q"])
        assert stopped.exit_code == 130, stopped.output  # Ctrl-C
    finally:
        build_module.build_shard = original  # type: ignore[assignment]
    assert staged.is_dir() and not (out / "research").exists()
    assert len(list((staged / ".done").glob("*.json"))) == 2
    resumed = build(setup, out, "--no-ledger-update")
    assert resumed.exit_code == 0, resumed.output
    again = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert again.keys() == reference.keys()
    different = [str(p) for p in again if again[p] != reference[p]]
    assert different == [], different


def test_bad_policies_and_keys_are_refused(setup: dict, tmp_path: Path) -> None:
    root = setup["root"]
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[policy]\nname = "x"\n[lists]\nnames = ["no-such-list"]\n')
    result = runner.invoke(app, ["release", "build", str(setup["data"]), str(tmp_path / "o"),
                                 "--policy", str(unknown), "--signing-key",
                                 str(root / "sign.pem"), "--store", str(setup["store"])])
    assert result.exit_code == 2 and "unknown.toml: lists.names: no list named" in result.output
    high = tmp_path / "high.toml"
    high.write_text('[policy]\nname = "x"\n[[nsfw.rules]]\nabove = 1.5\n')
    result = runner.invoke(app, ["release", "build", str(setup["data"]), str(tmp_path / "o"),
                                 "--policy", str(high), "--signing-key", str(root / "sign.pem")])
    assert result.exit_code == 2 and "nsfw.rules[0].above must be a number from 0 to 1" \
        in result.output
    everything = tmp_path / "all.toml"
    everything.write_text('[policy]\nname = "all"\n[[nsfw.rules]]\nabove = 0.0\n')
    result = runner.invoke(app, ["release", "build", str(setup["data"]), str(tmp_path / "o"),
                                 "--policy", str(everything), "--signing-key",
                                 str(root / "sign.pem"), "-q"])
    assert result.exit_code == 2 and "removes every row" in result.output
    assert not (tmp_path / "o" / "all").exists()
    result = runner.invoke(app, ["release", "build", str(setup["data"]), str(tmp_path / "o"),
                                 "--policy", str(everything), "--signing-key",
                                 str(setup["key"])])
    assert result.exit_code == 2 and "not a PEM private key" in result.output


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


def test_diff_names_the_rows_a_new_request_removed(setup: dict, built: Path,
                                                   tmp_path: Path) -> None:

    before = build(setup, tmp_path / "a", "--no-ledger-update", "--release-id", "a")
    assert before.exit_code == 0, before.output
    whole = setup["whole"]
    target = whole["URL"][int(setup["plan"]["pending"][0]) + 1]
    add_verified(setup, "copyright", "cy@example.org", target)
    after = build(setup, tmp_path / "b", "--no-ledger-update", "--release-id", "b")
    assert after.exit_code == 0, after.output
    same = [u for u in whole["URL"].to_list() if canonical_url(u) == canonical_url(target)]
    result = runner.invoke(app, ["release", "diff", str(tmp_path / "a" / "research"),
                                 str(tmp_path / "b" / "research"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["old"], report["new"]) == ("a", "b")
    assert report["removed"] == len(same) and report["added"] == 0
    assert report["by_reason"]["copyright"] == {"old": 0, "new": len(same)}


def test_an_incremental_rebuild_reuses_untouched_shards_and_equals_a_full_one(
        setup: dict, built: Path, tmp_path: Path) -> None:

    base = build(setup, tmp_path / "base", "--no-ledger-update", "--release-id", "base")
    assert base.exit_code == 0, base.output
    shards = sorted(p.name for p in setup["data"].glob("*.parquet"))
    in_shard_2 = pl.read_parquet(setup["data"] / shards[2])["URL"][17]
    ledger, new = add_verified(setup, "safety", "di@example.org", in_shard_2)
    incremental = build(setup, tmp_path / "inc", "--no-ledger-update", "--release-id", "inc",
                        "--from", str(tmp_path / "base"))
    assert incremental.exit_code == 0, incremental.output
    full = build(setup, tmp_path / "full", "--no-ledger-update", "--release-id", "inc")
    assert full.exit_code == 0, full.output
    for variant in ("research", "research-safe"):
        inc, whole, before = (tmp_path / d / variant for d in ("inc", "full", "base"))
        for index, name in enumerate(shards):
            for relative in (name, f"../{variant}.scrub/img_emb/img_emb_{index}.npy"):
                assert (inc / relative).read_bytes() == (whole / relative).read_bytes()
                reused = (inc / relative).stat().st_ino == (before / relative).stat().st_ino
                assert reused == (name != shards[2]), (variant, relative)
        audit_inc = json.loads((companion(inc) / "audit.json").read_text())
        audit_full = json.loads((companion(whole) / "audit.json").read_text())
        for field in ("rows_out", "removed", "removed_by_reason", "removed_by_source"):
            assert audit_inc[field] == audit_full[field]
        ok = runner.invoke(app, ["release", "verify", str(inc), "--pubkey",
                                 str(setup["root"] / "sign.pub")])
        assert ok.exit_code == 0, ok.output
        copy = tmp_path / f"copy-{variant}"
        applied = runner.invoke(app, ["apply", str(setup["data"]), str(copy), "--hashlist",
                                      str(companion(inc) / "removals.parquet"), "--workers",
                                      "1", "-q"])
        assert applied.exit_code == 0 and kept_keys(copy) == kept_keys(inc)
    # nothing new since: every file linked from the previous release (no worker started)
    same = build(setup, tmp_path / "same", "--no-ledger-update", "--release-id", "same",
                 "--from", str(tmp_path / "inc"))
    assert same.exit_code == 0, same.output
    for variant in ("research", "research-safe"):
        for index, name in enumerate(shards):
            for relative in (name, f"../{variant}.scrub/img_emb/img_emb_{index}.npy"):
                linked = tmp_path / "same" / variant / relative
                assert linked.stat().st_ino == (tmp_path / "inc" / variant / relative).stat().st_ino
        ok = runner.invoke(app, ["release", "verify", str(tmp_path / "same" / variant),
                                 "--pubkey", str(setup["root"] / "sign.pub")])
        assert ok.exit_code == 0, ok.output
    # a request applied before and withdrawn since: no incremental path, a clear error
    ledger.transition(new, "withdraw", "alice")
    refused = build(setup, tmp_path / "again", "--no-ledger-update", "--from",
                    str(tmp_path / "inc"))
    assert refused.exit_code == 2 and "no longer verified" in refused.output


def build_from(setup: dict, data: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    root = setup["root"]
    return runner.invoke(app, [
        "release", "build", str(data), str(out),
        "--policy", str(POLICIES / "research.toml"),
        "--policy", str(POLICIES / "research-safe.toml"),
        "--signing-key", str(root / "sign.pem"), "--store", str(setup["store"]),
        "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", "2",
        "--no-ledger-update", "--quiet", "--json", *extra])


def test_an_incremental_rebuild_reads_only_the_shards_on_the_new_hosts(
        setup: dict, built: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    shards = sorted(data.glob("*.parquet"))
    # one row of shard 1 on a host no other row is on, spelled as a request will not spell it
    stored = "HTTPS://Probe-Only.Example.NET./gallery/Photo-1.jpg"
    requested = "https://probe-only.example.net/gallery/Photo-1.jpg"
    assert canonical_url(stored) == canonical_url(requested)
    frame = pl.read_parquet(shards[1])
    urls = frame["URL"].to_list()
    urls[5] = stored
    pq.write_table(frame.with_columns(pl.Series("URL", urls)).to_arrow()
                   .cast(pq.read_schema(shards[1])), shards[1])
    base = build_from(setup, data, tmp_path / "base", "--release-id", "base")
    assert base.exit_code == 0, base.output
    probes = sorted((tmp_path / "base" / ".scrub-probe").glob("*.probe"))
    assert [p.stem for p in probes] == [s.stem for s in shards]
    # keyed: the plain digests of the shard's hosts are not in its probe set
    import hashlib

    plain = int.from_bytes(hashlib.sha256(b"probe-only.example.net").digest()[:8], "big")
    assert plain not in np.frombuffer(probes[1].read_bytes(), dtype="<u8")
    ledger, request = add_verified(setup, "gdpr_erasure", "pr@example.org", requested)
    try:
        _rebuild_reading_one_shard(setup, data, tmp_path, shards, 1, requested, "probe")
    finally:
        ledger.transition(request, "withdraw", "alice")


def _rebuild_reading_one_shard(setup: dict, data: Path, tmp_path: Path, shards: list[Path],
                               read: int, requested: str, kind: str) -> None:
    """An incremental rebuild from ``tmp_path/base`` after a request for ``requested`` (on a
    row of shard ``read``) reads that shard only, and equals a full build byte for byte; with
    that shard's probe set of ``kind`` changed, it reads the shard again."""
    # the shards the new request cannot touch are not read: spoil them (same size, and the
    # same mtime, or the input check would hash them and refuse the build)
    originals = {s: s.read_bytes() for s in shards}
    for index, shard in enumerate(shards):
        if index != read:
            times = shard.stat()
            shard.write_bytes(b"\0" * len(originals[shard]))
            os.utime(shard, ns=(times.st_atime_ns, times.st_mtime_ns))
    inc = build_from(setup, data, tmp_path / "inc", "--release-id", "inc",
                     "--from", str(tmp_path / "base"))
    assert inc.exit_code == 0, inc.output
    for shard, body in originals.items():
        shard.write_bytes(body)
    full = build_from(setup, data, tmp_path / "full", "--release-id", "inc")
    assert full.exit_code == 0, full.output
    for variant in ("research", "research-safe"):
        new, whole, before = (tmp_path / d / variant for d in ("inc", "full", "base"))
        kept = pl.read_parquet(new / shards[read].name)["URL"].to_list()
        assert kept and not any(canonical_url(u) == canonical_url(requested) for u in kept)
        for index, shard in enumerate(shards):
            assert (new / shard.name).read_bytes() == (whole / shard.name).read_bytes()
            reused = (new / shard.name).stat().st_ino == (before / shard.name).stat().st_ino
            assert reused == (index != read), (variant, shard.name)
    # a probe set that was changed is not trusted: the shard is read (and the request met)
    (tmp_path / "base" / ".scrub-probe" / f"{shards[read].stem}.{kind}").write_bytes(b"")
    again = build_from(setup, data, tmp_path / "again", "--release-id", "inc",
                       "--from", str(tmp_path / "base"))
    assert again.exit_code == 0, again.output
    for variant in ("research", "research-safe"):
        assert ((tmp_path / "again" / variant / shards[read].name).read_bytes()
                == (tmp_path / "full" / variant / shards[read].name).read_bytes())


def test_an_incremental_rebuild_skips_shards_without_the_requested_urls_last_segment(
        setup: dict, tmp_path: Path) -> None:
    """A URL request on a host every shard has: the tail probe sets rule out the shards
    whose URLs never end (canonically) with the request's last path segment."""
    from scrub.release.probe import _xxh3
    from scrub.urls import canonical_hosts

    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    shards = sorted(data.glob("*.parquet"))
    frames = [pl.read_parquet(shard) for shard in shards]
    common = set.intersection(*(set(canonical_hosts(f["URL"]).drop_nulls().to_list())
                                for f in frames))
    host = sorted(common)[0]
    # stored with an escaped unreserved character, requested plainly: one canonical URL
    stored = f"https://{host}/gallery/%50robe-Tail-7.jpg?size=large#top"
    requested = f"https://{host}/gallery/Probe-Tail-7.jpg?size=large"
    assert canonical_url(stored) == canonical_url(requested)
    urls = frames[2]["URL"].to_list()
    urls[3] = stored
    pq.write_table(frames[2].with_columns(pl.Series("URL", urls)).to_arrow()
                   .cast(pq.read_schema(shards[2])), shards[2])
    base = build_from(setup, data, tmp_path / "base", "--release-id", "base")
    assert base.exit_code == 0, base.output
    tails = sorted((tmp_path / "base" / ".scrub-probe").glob("*.tails"))
    assert [p.stem for p in tails] == [s.stem for s in shards]
    # keyed: the plain fingerprint of the segment is not in the probe set
    plain = int(_xxh3(pl.Series(["Probe-Tail-7.jpg"]))[0])
    stored = np.frombuffer(tails[2].read_bytes(), dtype="<u4")
    # 4 bytes a distinct segment (the file names of this data are nearly all distinct)
    rows = pq.read_metadata(shards[2]).num_rows
    assert rows // 2 < len(stored) <= rows
    assert plain & 0xFFFFFFFF not in stored and plain >> 32 not in stored
    ledger, request = add_verified(setup, "gdpr_erasure", "tail@example.org", requested)
    try:
        _rebuild_reading_one_shard(setup, data, tmp_path, shards, 2, requested, "tails")
    finally:
        ledger.transition(request, "withdraw", "alice")


def test_an_incremental_rebuild_refuses_an_input_shard_changed_at_the_same_size(
        setup: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    shards = sorted(data.glob("*.parquet"))
    alone = build_from(setup, data, tmp_path / "alone", "--verify-inputs")
    assert alone.exit_code == 2 and "--verify-inputs checks the inputs of a --from" \
        in alone.output
    base = build_from(setup, data, tmp_path / "base", "--release-id", "base")
    assert base.exit_code == 0, base.output
    record = tmp_path / "base" / ".scrub-probe" / "inputs.json"
    assert sorted(json.loads(record.read_text())["inputs"]) == [s.name for s in shards]
    # touched, same bytes: hashed, found unchanged, reused
    os.utime(shards[0])
    touched = build_from(setup, data, tmp_path / "touched", "--release-id", "t",
                         "--from", str(tmp_path / "base"))
    assert touched.exit_code == 0, touched.output
    # one byte of a value changed, same size, same mtime: only --verify-inputs hashes it
    times = shards[1].stat()
    body = bytearray(shards[1].read_bytes())
    body[len(body) // 2] ^= 0x01
    shards[1].write_bytes(bytes(body))
    os.utime(shards[1], ns=(times.st_atime_ns, times.st_mtime_ns))
    verified = build_from(setup, data, tmp_path / "verified", "--release-id", "v",
                          "--from", str(tmp_path / "base"), "--verify-inputs")
    assert verified.exit_code == 2, verified.output
    assert f"input shard {shards[1]} changed since the previous release" in verified.output
    assert not (tmp_path / "verified").exists()
    # written as usual (a new mtime): refused without the option; so it is with a record
    # edited to claim the new mtime (its tag fails), and with no record (all are hashed)
    os.utime(shards[1])

    def forge() -> None:
        stored = json.loads(record.read_text())
        stored["inputs"][shards[1].name][1] = shards[1].stat().st_mtime_ns
        record.write_text(json.dumps(stored))

    for out, then in (("changed", forge), ("forged", record.unlink), ("unrecorded", None)):
        refused = build_from(setup, data, tmp_path / out, "--release-id", "c",
                             "--from", str(tmp_path / "base"))
        assert refused.exit_code == 2, refused.output
        assert f"input shard {shards[1]} changed" in refused.output
        assert not (tmp_path / out).exists()
        if then is not None:
            then()
