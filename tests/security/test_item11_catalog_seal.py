"""Item 11: the list store's catalog is authenticated, checked before use, and never names a
path the store will act on outside itself.

The attacker can write every file of the store (``catalog.json``, ``data/``) but does not hold
the data key. A store written with the key is sealed (HMAC under a key derived from the data
key); every use given the key checks the seal and the stored files' digests; without the key a
sealed store is neither used nor changed. A store from before seals is refused until sealed once
(``scrub lists seal``, recorded). A store that never had a key is not authenticated, and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scrub.crypto import KeyFileError, write_key_file
from scrub.errors import ScrubError
from scrub.lists.store import ListStore
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_exit, expect_ok, run_cli

DECOY = hashlib.md5(b"decoy").hexdigest()


def entries(doc: dict) -> dict:
    """The lists of a catalog document, in either layout (flat, or under ``lists``)."""
    return doc["lists"] if isinstance(doc.get("format"), str) else doc


def edit_catalog(store: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = store / "catalog.json"
    doc = json.loads(path.read_text())
    doc = change(doc) or doc
    path.write_text(json.dumps(doc, indent=2))


def public_decoy(folder: Path, type_name: str = "md5") -> str:
    """What the attacker writes in place of a list: a public parquet with one md5 (as the store
    writes one), returning its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{type_name}.parquet"
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), 1,
                                                  [None, pa.py_buffer(bytes.fromhex(DECOY))])
    pq.write_table(pa.table({"key": column}), target)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def make_public_decoy(store: Path, name: str, version: str) -> None:
    """Point ``name@version`` at a public decoy, as someone without the key would."""
    for old in (store / "data" / name / version).glob("*.enc"):
        old.unlink()
    digest = public_decoy(store / "data" / name / version)

    def change(doc: dict) -> None:
        for meta in entries(doc)[name]:
            if meta["version"] == version:
                meta.update(sensitive=False, key_id=None, files={"md5": digest},
                            counts={"md5": 1}, entries=1)
                meta["stored_sha256"] = hashlib.sha256(
                    json.dumps(meta["files"], sort_keys=True).encode()).hexdigest()
    edit_catalog(store, change)


@pytest.fixture
def sealed(tmp_path: Path) -> dict:
    """A store written with the data key: ``partner`` v1, v2 (sensitive md5s of rows of a small
    dataset) and ``optout`` v1 (public URLs)."""
    data = generate_dataset(tmp_path / "data", rows=1_200, shards=2, seed=7, embeddings=False)
    md5s = read_column(data, "md5").to_list()
    urls = read_column(data, "URL").to_list()
    key_path = tmp_path / "data.key"
    key = write_key_file(key_path)
    store = ListStore(tmp_path / "store")
    for version, rows in (("1", md5s[:10]), ("2", md5s[:20])):
        listing = tmp_path / f"p{version}.txt"
        listing.write_text("\n".join(rows) + "\n")
        store.import_list(listing, name="partner", source="ncmec", version=version, key=key)
    optout = tmp_path / "optout.csv"
    optout.write_text("type,value\n" + "".join(f'url,"{u}"\n' for u in urls[100:105]))
    store.import_list(optout, name="optout", source="registry", version="1", key=key)
    return {"root": tmp_path, "data": data, "store": store, "key": key, "key_path": key_path,
            "md5s": md5s[:20]}


def test_a_sensitive_list_swapped_for_a_public_decoy_is_caught(sealed: dict) -> None:
    store, root = sealed["store"], sealed["root"]
    make_public_decoy(store.root, "partner", "2")
    verify = run_cli("lists", "verify", "--store", store.root, "--key-file", sealed["key_path"])
    assert verify.exit_code != 0 and "store OK" not in verify.stdout, verify.output
    with pytest.raises(ScrubError) as info:
        store.load("partner", key=sealed["key"])
    assert info.value.exit_code == 3
    out = root / "out"
    applied = run_cli("apply", sealed["data"], out, "--list", "partner", "--store", store.root,
                     "--key-file", sealed["key_path"], "--workers", "1", "--json", "--quiet")
    assert applied.exit_code == 3, applied.output  # no silent miss: nothing was scrubbed
    assert not list(out.glob("*.parquet"))
    for value in sealed["md5s"]:
        assert value not in applied.output


MUTATIONS = {
    "rollback-latest": lambda d: entries(d)["partner"].pop(),
    "reorder-versions": lambda d: entries(d)["partner"].reverse(),
    "counts": lambda d: entries(d)["partner"][-1].update(counts={"md5": 1}),
    "to-allow-list": lambda d: entries(d)["optout"][-1].update(kind="allow",
                                                               suppresses=["partner"]),
    "drop-a-list": lambda d: entries(d).pop("optout"),
    "signer": lambda d: entries(d)["partner"][-1].update(signed_by="ed25519:" + "0" * 32),
    "seal-removed": lambda d: d.update(seal=None),
    "flat-layout": lambda d: entries(d),
    "seal-key-id": lambda d: d["seal"].update(key_id="0" * 16),
    "mac-zeroed": lambda d: d["seal"].update(mac="0" * 64),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_any_edit_of_a_sealed_catalog_is_refused_with_the_key(sealed: dict,
                                                              mutation: str) -> None:
    store = sealed["store"]
    edit_catalog(store.root, MUTATIONS[mutation])
    for ref in ("partner", "optout"):
        with pytest.raises(ScrubError) as info:
            store.load(ref, key=sealed["key"])
        assert info.value.exit_code in (2, 3), (mutation, ref)
    verify = run_cli("lists", "verify", "--store", store.root, "--key-file", sealed["key_path"])
    assert verify.exit_code != 0 and "store OK" not in verify.stdout, (mutation, verify.output)


def test_without_the_key_a_sealed_store_is_neither_used_nor_changed(sealed: dict,
                                                                  tmp_path: Path) -> None:
    store = sealed["store"]
    before = (store.root / "catalog.json").read_bytes()
    with pytest.raises(KeyFileError):
        store.load("optout")  # public, but its catalog entry cannot be checked
    listing = tmp_path / "more.csv"
    listing.write_text("type,value\nhost,more.example\n")
    pub = tmp_path / "k.pub"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    pub.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for args in (("lists", "rm", "optout"), ("lists", "rm", "partner@1"),
                 ("lists", "import", listing, "--name", "more", "--source", "x", "--version",
                  "1"),
                 ("lists", "trust", "--source", "mallory", "--key", pub),
                 ("lists", "verify"),
                 ("apply", sealed["data"], tmp_path / "o", "--list", "optout", "--workers", "1")):
        result = run_cli(*args, "--store", store.root)
        assert result.exit_code == 2, (args, result.output)
        assert "key file" in result.stderr and "store OK" not in result.stdout, args
    assert (store.root / "catalog.json").read_bytes() == before
    assert (store.root / "data" / "optout" / "1").is_dir()


def test_a_swapped_data_file_is_refused_on_use(sealed: dict) -> None:
    store = sealed["store"]
    public_decoy(store.root / "data" / "optout" / "1", "url")
    with pytest.raises(ScrubError, match="altered") as info:
        store.load("optout", key=sealed["key"])
    assert info.value.exit_code == 3


def test_metadata_read_unchecked_must_be_the_catalog_then_checked(sealed: dict) -> None:
    """plan building resolves names first, then loads with the key: a catalog swapped in
    between (here an older, genuinely sealed one: a rollback) is refused."""
    store = sealed["store"]
    older = (store.root / "catalog.json").read_bytes()
    extra = sealed["root"] / "p3.txt"
    extra.write_text(sealed["md5s"][0] + "\n")
    store.import_list(extra, name="partner", source="ncmec", version="3", key=sealed["key"])
    assert store.resolve("partner").version == "3"  # shown to the operator, unchecked
    (store.root / "catalog.json").write_bytes(older)
    with pytest.raises(ScrubError, match="changed while") as info:
        store.load("partner@3", key=sealed["key"])
    assert info.value.exit_code == 3


def flatten_to_legacy(store: Path) -> None:
    """Rewrite a store as scrub wrote it before seals: a flat catalog (and trust.json)."""
    edit_catalog(store, lambda doc: {name: [{k: v for k, v in meta.items()
                                             if k not in ("signer_key", "trust_change")}
                                            for meta in versions]
                                     for name, versions in entries(doc).items()})


def test_a_store_from_before_seals_is_refused_until_sealed_once(sealed: dict) -> None:
    store, key_path = sealed["store"], sealed["key_path"]
    flatten_to_legacy(store.root)
    with pytest.raises(ScrubError, match="not sealed") as info:
        store.load("partner", key=sealed["key"])
    assert info.value.exit_code == 3 and "scrub lists seal" in (info.value.hint or "")
    verify = run_cli("lists", "verify", "--store", store.root, "--key-file", key_path)
    assert verify.exit_code == 1 and "not sealed" in verify.stdout
    sealed_now = run_cli("lists", "seal", "--store", store.root, "--key-file", key_path)
    expect_ok(sealed_now)
    assert "recorded" in sealed_now.stdout
    doc = json.loads((store.root / "catalog.json").read_text())
    assert [r["event"] for r in doc["seals"]][-1] == "sealed a catalog written by an older scrub"
    assert len(store.load("partner", key=sealed["key"]).keys["md5"]) == 20
    assert "store OK" in run_cli("lists", "verify", "--store", store.root,
                                "--key-file", key_path).stdout
    again = run_cli("lists", "seal", "--store", store.root, "--key-file", key_path)
    assert again.exit_code == 0 and "already sealed" in again.stdout
    assert json.loads((store.root / "catalog.json").read_text())["seals"] == doc["seals"]


def test_sealing_checks_every_file_first(sealed: dict) -> None:
    store, key_path = sealed["store"], sealed["key_path"]
    flatten_to_legacy(store.root)
    make_public_decoy(store.root, "partner", "2")  # files match the edited entry ...
    (store.root / "data" / "optout" / "1" / "url.parquet").write_bytes(b"junk")  # ... not this
    refused = run_cli("lists", "seal", "--store", store.root, "--key-file", key_path)
    expect_exit(refused, 3)
    assert "seal" not in json.loads((store.root / "catalog.json").read_text())


def test_without_the_key_a_sensitive_list_turned_public_is_refused(sealed: dict) -> None:
    """An unsealed (pre-seal) store: the attacker turns the latest version of a sensitive list
    into a public decoy; without the key that change cannot be checked, so it is refused."""
    store = sealed["store"]
    flatten_to_legacy(store.root)
    make_public_decoy(store.root, "partner", "2")
    with pytest.raises(KeyFileError, match="sensitive"):
        store.load("partner")
    result = run_cli("apply", sealed["data"], sealed["root"] / "o", "--list", "partner",
                    "--store", store.root, "--workers", "1")
    expect_exit(result, 2)


@pytest.mark.parametrize("where", ["relative", "absolute", "symlinked-folder"])
def test_lists_rm_never_deletes_outside_the_store(tmp_path: Path, where: str) -> None:
    root = tmp_path / "store"
    listing = tmp_path / "optout.csv"
    listing.write_text("type,value\nhost,example.org\n")
    store = ListStore(root)
    store.import_list(listing, name="optout", source="registry", version="1")  # no key
    victim = tmp_path / "victim"
    (victim / "1").mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    (victim / "1" / "precious.txt").write_text("keep me")
    if where == "symlinked-folder":
        shutil.rmtree(root / "data" / "optout")
        os.symlink(victim, root / "data" / "optout")
    else:
        target = os.path.relpath(victim, root) if where == "relative" else str(victim)
        edit_catalog(root, lambda d: entries(d)["optout"][0].update(stored=target))
    for ref in ("optout@1", "optout"):
        result = run_cli("lists", "rm", ref, "--store", root)
        assert (victim / "precious.txt").read_text() == "keep me", ref
        assert (victim / "1" / "precious.txt").read_text() == "keep me", ref
        assert result.exit_code == 3, (ref, result.output)
    with pytest.raises(ScrubError):
        store.load("optout")


def test_a_store_without_a_key_is_not_authenticated_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "store"
    listing = tmp_path / "optout.csv"
    listing.write_text("type,value\nhost,example.org\n")
    ListStore(root).import_list(listing, name="optout", source="registry", version="1")
    verify = run_cli("lists", "verify", "--store", root)
    assert verify.exit_code == 0 and "NOT authenticated" in verify.stdout
    assert len(ListStore(root).load("optout").keys["host"]) == 1
    key_path = tmp_path / "data.key"
    key = write_key_file(key_path)
    with pytest.raises(ScrubError, match="not sealed"):  # a keyed use asks for the sealing
        ListStore(root).load("optout", key=key)
    assert run_cli("lists", "seal", "--store", root, "--key-file", key_path).exit_code == 0
    assert len(ListStore(root).load("optout", key=key).keys["host"]) == 1


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_deleted_or_emptied_catalog_does_not_pass_for_an_empty_store(sealed: dict,
                                                                       how: str) -> None:
    """A policy taking every list (``*``) would silently take none."""
    store = sealed["store"]
    if how == "deleted":
        (store.root / "catalog.json").unlink()
    else:
        (store.root / "catalog.json").write_text("{}\n")
    for key in (None, sealed["key"]):
        with pytest.raises(ScrubError, match="names no list") as info:
            store.catalog(key=key) if key else store.catalog()
        assert info.value.exit_code == 3


def test_verify_reports_a_catalog_rolled_back_to_an_older_sealed_one(sealed: dict) -> None:
    """An older, genuinely sealed catalog passes the seal (the seal does not prove freshness);
    the data of the versions it does not name gives it away to `lists verify`."""
    store = sealed["store"]
    older = (store.root / "catalog.json").read_bytes()
    extra = sealed["root"] / "p3.txt"
    extra.write_text(sealed["md5s"][0] + "\n")
    store.import_list(extra, name="partner", source="ncmec", version="3", key=sealed["key"])
    (store.root / "catalog.json").write_bytes(older)
    verify = run_cli("lists", "verify", "--store", store.root, "--key-file", sealed["key_path"])
    expect_exit(verify, 1)
    assert "data/partner/3: stored data the catalog does not name" in verify.stdout
