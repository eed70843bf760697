"""``scrub release build`` (and ``--from``), ``release verify`` and ``release diff`` with INPUT
and OUT in object storage, on a real S3 server (SeaweedFS): each release byte-identical to a
local build of the same input made in the same test (same ledger and keys); a build killed
mid-way publishes nothing and its rerun ends with the same bytes; a bucket holding another
build's half is resumed from or refused with a clear message.

Every build here passes ``--no-ledger-update`` (the ledger's state is in each manifest), and
the release's removal key derives from the job, which names where the input lies: a build from
an S3 input and one from the local folder differ in the removal list, the manifests and their
signatures (as two builds of two local copies of the input do), and in the private inputs
record; everything else is compared byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import Result

from tests.helpers import expect_exit, expect_ok, run_cli
from tests.release.planted import POLICIES, add_verified, setup  # noqa: F401 (a fixture)
from tests.s3server import local_tree

pytestmark = pytest.mark.slow

VARIANTS = ("research", "research-safe")
#: What depends on the removal key (see the module's docstring), and the private record of the
#: input shards' modification times.
KEYED = ("removals.parquet", "manifest.json", "manifest.sig", ".scrub-probe/inputs.json")


def _args(setup: dict, source: object, out: object, *extra: str,
          variants: tuple[str, ...] = VARIANTS, workers: int = 2) -> list[str]:
    root = setup["root"]
    return ["release", "build", str(source), str(out),
            *[a for name in variants for a in ("--policy", str(POLICIES / f"{name}.toml"))],
            "--signing-key", str(root / "sign.pem"), "--store", str(setup["store"]),
            "--key-file", str(setup["key"]), "--db", setup["db"], "--workers", str(workers),
            "--release-id", "r-test", "--no-ledger-update", "--quiet", "--json", *extra]


def _build(setup: dict, source: object, out: object, *extra: str,
           variants: tuple[str, ...] = VARIANTS) -> Result:
    return run_cli(*_args(setup, source, out, *extra, variants=variants))


def _objects(s3, prefix: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The objects under ``prefix/`` by key relative to it."""
    found = s3.server.objects(s3.bucket, prefix + "/")
    return {key[len(prefix) + 1:]: data for key, data in found.items()}


def _clean(s3, tree: dict[str, bytes]) -> None:  # type: ignore[no-untyped-def]
    """No staging, no temporary object, no incomplete upload is left."""
    assert not [k for k in tree if ".scrub-release" in k or "partial" in k], sorted(tree)
    assert not s3.server.uploads(s3.bucket)


def _unkeyed(tree: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in tree.items() if not k.endswith(KEYED)}


def _manifest_sans_key(data: bytes) -> dict:
    """A manifest without what its removal key decides: the key, the removal list's sha256."""
    manifest = json.loads(data)
    manifest["removals"] = {k: v for k, v in manifest["removals"].items()
                            if k not in ("key", "sha256")}
    del manifest["companion_files"]["removals.parquet"]
    return manifest


@pytest.fixture
def local(setup: dict, tmp_path: Path) -> dict[str, bytes]:  # noqa: F811
    """A local build of the local input, this test's reference."""
    expect_ok(_build(setup, setup["data"], tmp_path / "local"))
    return local_tree(tmp_path / "local")


def test_local_input_to_s3_writes_the_local_bytes(setup: dict, s3,  # noqa: F811
                                                  local: dict[str, bytes]) -> None:
    summary = json.loads(expect_ok(_build(setup, setup["data"], s3.uri("rel"))).stdout)
    assert summary["variants"]["research"]["folder"] == s3.uri("rel/research")
    written = _objects(s3, "rel")
    assert written == local
    assert "research.scrub/manifest.sig" in written
    assert any(k.startswith(".scrub-state/research/") for k in written)
    _clean(s3, written)


def test_s3_input_builds_the_same_release_to_s3_and_to_local(
        setup: dict, s3, tmp_path: Path, local: dict[str, bytes]) -> None:  # noqa: F811
    s3.server.upload_folder(setup["data"], s3.bucket, "data")  # named as the local folder
    expect_ok(_build(setup, s3.uri("data"), s3.uri("rel")))
    expect_ok(_build(setup, s3.uri("data"), tmp_path / "out"))
    remote, here = _objects(s3, "rel"), local_tree(tmp_path / "out")
    assert remote == here  # the same input: every byte
    _clean(s3, remote)
    assert remote.keys() == local.keys()
    assert _unkeyed(remote) == _unkeyed(local)  # shards, embeddings, audits, states, probes
    for variant in VARIANTS:
        manifest = f"{variant}.scrub/manifest.json"
        assert _manifest_sans_key(remote[manifest]) == _manifest_sans_key(local[manifest])
        removals = f"{variant}.scrub/removals.parquet"
        assert (pq.read_metadata(tmp_path / "out" / removals).num_rows
                == json.loads(local[manifest])["removals"]["rows"])


def test_a_rebuild_from_an_s3_release_equals_the_local_one(
        setup: dict, s3, tmp_path: Path) -> None:  # noqa: F811
    expect_ok(_build(setup, setup["data"], tmp_path / "base"))
    expect_ok(_build(setup, setup["data"], s3.uri("base")))
    shards = sorted(p.name for p in setup["data"].glob("*.parquet"))
    add_verified(setup, "safety", "s3@example.org",
                 pq.read_table(setup["data"] / shards[1])["URL"][5].as_py())
    again = ("--release-id", "r-next")
    local = json.loads(expect_ok(_build(setup, setup["data"], tmp_path / "next", *again,
                                        "--from", str(tmp_path / "base"))).stdout)
    assert 1 <= local["variants"]["research"]["shards_reused"] < len(shards)
    remote = json.loads(expect_ok(_build(setup, setup["data"], s3.uri("next"), *again,
                                         "--from", s3.uri("base"))).stdout)
    assert remote["variants"] == {
        name: {**info, "folder": s3.uri(f"next/{name}")}
        for name, info in local["variants"].items()}
    assert _objects(s3, "next") == local_tree(tmp_path / "next")
    _clean(s3, _objects(s3, "next"))
    mixed = tmp_path / "mixed"  # the previous release in the bucket, the new one here
    expect_ok(_build(setup, setup["data"], mixed, *again, "--from", s3.uri("base")))
    assert local_tree(mixed) == local_tree(tmp_path / "next")


def test_verify_an_s3_release_and_its_tampered_shard(setup: dict, s3) -> None:  # noqa: F811
    expect_ok(_build(setup, setup["data"], s3.uri("rel")))
    pub = str(setup["root"] / "sign.pub")
    expect_ok(run_cli("release", "verify", s3.uri("rel"), "--pubkey", pub, "-q"),
              "signed by", "the folder holds nothing else")
    expect_ok(run_cli("release", "verify", s3.uri("rel/research"), "--pubkey", pub, "-q",
                      "--store", str(setup["store"]), "--key-file", str(setup["key"]),
                      "--db", setup["db"]),
              "shard(s) and their row counts verify", "no row matches the lists or requests")
    client = s3.server.client()
    shard = next(k for k in _objects(s3, "rel") if k.startswith("research/"))
    data = client.get_object(Bucket=s3.bucket, Key=f"rel/{shard}")["Body"].read()
    client.put_object(Bucket=s3.bucket, Key=f"rel/{shard}", Body=data[:-9] + b"X" + data[-8:])
    result = run_cli("release", "verify", s3.uri("rel"), "--pubkey", pub, "-q")
    expect_exit(result, 3, f"{s3.uri('rel/' + shard)}: sha256 differs from the manifest")
    client.put_object(Bucket=s3.bucket, Key="rel/research/extra.parquet", Body=data)
    expect_exit(run_cli("release", "verify", s3.uri("rel/research"), "--pubkey", pub, "-q"),
                3, f"{s3.uri('rel/research/extra.parquet')}: not in the manifest")


def test_diff_between_an_s3_and_a_local_release(setup: dict, s3,  # noqa: F811
                                                tmp_path: Path) -> None:
    expect_ok(_build(setup, setup["data"], s3.uri("rel")))
    expect_ok(_build(setup, setup["data"], tmp_path / "rel"))
    here = run_cli("release", "diff", str(tmp_path / "rel" / "research"),
                   str(tmp_path / "rel" / "research-safe"), "--json", "-q")
    mixed = run_cli("release", "diff", s3.uri("rel/research"),
                    str(tmp_path / "rel" / "research-safe"), "--json", "-q")
    assert json.loads(expect_ok(mixed).stdout) == json.loads(expect_ok(here).stdout)
    assert json.loads(mixed.stdout)["removed"] > 0


def _killed_build(setup: dict, s3, source: str, out: str) -> None:  # type: ignore[no-untyped-def]
    """``scrub release build`` in its own process, SIGKILLed once its first shard objects are
    in the bucket."""
    scrub = Path(sys.executable).parent / "scrub"
    process = subprocess.Popen([str(scrub), *_args(setup, source, out, workers=1)],
                               env={**os.environ},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    client, key = s3.server.client(), out.split("/", 3)[3]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=f"{key}/research/")
            if listed.get("KeyCount", 0):
                break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_killed_build_publishes_nothing_and_its_rerun_ends_with_the_same_bytes(
        setup: dict, s3, local: dict[str, bytes]) -> None:  # noqa: F811
    _killed_build(setup, s3, str(setup["data"]), s3.uri("rel"))
    half = _objects(s3, "rel")
    assert any(k.startswith("research/") for k in half), sorted(half)
    assert ".scrub-release/job.json" in half
    assert not [k for k in half if k.endswith(("manifest.json", "manifest.sig"))]
    expect_exit(run_cli("release", "verify", s3.uri("rel"), "--pubkey",
                        str(setup["root"] / "sign.pub"), "-q"), 2, "not a release")
    # an upload a killed run left incomplete is aborted by the rerun
    client = s3.server.client()
    upload = client.create_multipart_upload(Bucket=s3.bucket, Key="rel/research/x.parquet")
    client.upload_part(Bucket=s3.bucket, Key="rel/research/x.parquet", PartNumber=1,
                       UploadId=upload["UploadId"], Body=b"partial")
    expect_ok(_build(setup, setup["data"], s3.uri("rel")))
    written = _objects(s3, "rel")
    assert written == local
    _clean(s3, written)


def test_a_half_written_build_of_another_job_is_replaced(setup: dict, s3,  # noqa: F811
                                                         tmp_path: Path) -> None:
    _killed_build(setup, s3, str(setup["data"]), s3.uri("rel"))
    assert any(k.startswith("research/") for k in _objects(s3, "rel"))
    # another job (one variant): the half-written one goes, with what it wrote
    expect_ok(_build(setup, setup["data"], s3.uri("rel"), variants=("research",)))
    expect_ok(_build(setup, setup["data"], tmp_path / "one", variants=("research",)))
    written = _objects(s3, "rel")
    assert written == local_tree(tmp_path / "one")
    assert not [k for k in written if k.startswith("research-safe")]
    _clean(s3, written)


def test_a_variant_prefix_holding_other_objects_is_refused(setup: dict, s3) -> None:  # noqa: F811
    s3.server.client().put_object(Bucket=s3.bucket, Key="rel/research/old.parquet", Body=b"x")
    expect_exit(_build(setup, setup["data"], s3.uri("rel")), 2,
                f"{s3.uri('rel/research')}: exists and is not an empty folder")
    assert set(_objects(s3, "rel")) == {"research/old.parquet"}
    expect_exit(_build(setup, setup["data"], "s3://no-such-bucket-scrub/rel"), 2,
                "no such bucket")


def test_a_build_on_ray_reads_and_writes_the_bucket(setup: dict, s3,  # noqa: F811
                                                    tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    s3.server.upload_folder(setup["data"], s3.bucket, "data")
    expect_ok(_build(setup, s3.uri("data"), tmp_path / "out"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": dict(s3.env)})
    try:
        expect_ok(_build(setup, s3.uri("data"), s3.uri("rel"), "--engine", "ray"))
    finally:
        ray.shutdown()
    written = _objects(s3, "rel")
    assert written == local_tree(tmp_path / "out")
    _clean(s3, written)
