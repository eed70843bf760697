"""Incremental rebuilds read only what a new URL request can touch: keyed host and last-segment
probe sets rule shards out, changed probe sets are not trusted, and input shards changed since
the previous release are refused (``--verify-inputs`` hashes same-size, same-mtime ones)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from scrub.urls import canonical_url
from tests.helpers import expect_exit, expect_ok
from tests.release.planted import add_verified, build_from, built, setup  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


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
    expect_ok(base)
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
    expect_ok(inc)
    for shard, body in originals.items():
        shard.write_bytes(body)
    full = build_from(setup, data, tmp_path / "full", "--release-id", "inc")
    expect_ok(full)
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
    expect_ok(again)
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
    expect_ok(base)
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
    expect_ok(base)
    record = tmp_path / "base" / ".scrub-probe" / "inputs.json"
    assert sorted(json.loads(record.read_text())["inputs"]) == [s.name for s in shards]
    # touched, same bytes: hashed, found unchanged, reused
    os.utime(shards[0])
    touched = build_from(setup, data, tmp_path / "touched", "--release-id", "t",
                         "--from", str(tmp_path / "base"))
    expect_ok(touched)
    # one byte of a value changed, same size, same mtime: only --verify-inputs hashes it
    times = shards[1].stat()
    body = bytearray(shards[1].read_bytes())
    body[len(body) // 2] ^= 0x01
    shards[1].write_bytes(bytes(body))
    os.utime(shards[1], ns=(times.st_atime_ns, times.st_mtime_ns))
    verified = build_from(setup, data, tmp_path / "verified", "--release-id", "v",
                          "--from", str(tmp_path / "base"), "--verify-inputs")
    expect_exit(verified, 2)
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
        expect_exit(refused, 2)
        assert f"input shard {shards[1]} changed" in refused.output
        assert not (tmp_path / out).exists()
        if then is not None:
            then()
