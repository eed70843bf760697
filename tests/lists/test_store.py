"""The list store: versions, deltas, encryption at rest, signatures, allow-lists, concurrency."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scrub.crypto import KeyFileError, write_key_file
from scrub.errors import ExternalSourceError, InvalidListError, UserInputError
from scrub.keys import keys_to_hex
from scrub.lists.store import ListStore

MD5S = [hashlib.md5(str(i).encode()).hexdigest() for i in range(200)]


def write_list(path: Path, values: list[str]) -> Path:
    path.write_text("# partner list\n" + "\n".join(values) + "\n")
    return path


def hexes(keys: np.ndarray) -> set[str]:
    return {v.decode() for v in keys_to_hex(keys)}


def store_bytes(store: ListStore) -> bytes:
    return b"".join(p.read_bytes() for p in store.root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> ListStore:
    return ListStore(tmp_path / "store")


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    return write_key_file(tmp_path / "data.key")


def test_sensitive_list_round_trips_and_never_lies_in_clear(store: ListStore, key: bytes,
                                                            tmp_path: Path) -> None:
    source = write_list(tmp_path / "p.txt", MD5S)
    meta = store.import_list(source, name="partner", source="ncmec", version="2026.1", key=key)
    assert meta.sensitive and meta.counts == {"md5": 200}
    stored = store.root / meta.stored / "md5.parquet.enc"
    assert stored.is_file()
    assert hexes(store.load("partner", key=key).keys["md5"]) == set(MD5S)
    raw = store_bytes(store)
    for value in MD5S:
        assert value.encode() not in raw and value.upper().encode() not in raw
        assert bytes.fromhex(value) not in raw
    assert stored.stat().st_mode & 0o777 == 0o600


def test_a_sensitive_list_needs_a_key_and_the_right_one(store: ListStore, key: bytes,
                                                        tmp_path: Path) -> None:
    source = write_list(tmp_path / "p.txt", MD5S)
    with pytest.raises(KeyFileError, match="key file is needed"):
        store.import_list(source, name="partner", source="ncmec", version="1")
    assert store.catalog() == {}
    store.import_list(source, name="partner", source="ncmec", version="1", key=key)
    other = write_key_file(tmp_path / "other.key")
    with pytest.raises(KeyFileError, match="not the key"):
        store.load("partner", key=other)
    with pytest.raises(KeyFileError, match="key file is needed"):
        store.load("partner")


def test_tampered_ciphertext_is_detected(store: ListStore, key: bytes, tmp_path: Path) -> None:
    meta = store.import_list(write_list(tmp_path / "p.txt", MD5S), name="partner",
                             source="ncmec", version="1", key=key)
    path = store.root / meta.stored / "md5.parquet.enc"
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeyFileError, match="cannot decrypt"):
        store.load("partner@1", key=key)
    assert any("altered" in p for p in store.verify(key=key))


def test_public_opt_out_registry_keeps_digests_not_urls(store: ListStore,
                                                        tmp_path: Path) -> None:
    source = tmp_path / "optout.csv"
    source.write_text("type,value\nurl,https://Artist.example/Gallery/1.jpg\nhost,cdn.example.org\n"
                      "domain,example.net\nurl_prefix,https://x.example/private/\n")
    meta = store.import_list(source, name="optout", source="artists", version="1")
    assert not meta.sensitive
    assert meta.counts == {"domain": 1, "host": 1, "url": 1, "url_prefix": 1}
    raw = store_bytes(store)
    assert b"artist.example" not in raw.lower() and b"cdn.example.org" not in raw
    loaded = store.load("optout").keys
    assert loaded["url_prefix"].tolist() == ["https://x.example/private/"]
    assert bytes(loaded["host"][0]) == hashlib.sha256(b"cdn.example.org").digest()


def test_versions_full_and_delta_with_tombstones(store: ListStore, key: bytes,
                                                 tmp_path: Path) -> None:
    v1 = store.import_list(write_list(tmp_path / "a.txt", MD5S[:100]), name="p", source="s",
                           version="1", key=key)
    v2 = store.import_list(write_list(tmp_path / "b.txt", MD5S[50:150]), name="p", source="s",
                           version="2", key=key)
    assert (v1.added, v1.removed) == (100, 0)
    assert (v2.added, v2.removed, v2.delta) == (50, 50, False)
    delta = tmp_path / "delta.csv"
    delta.write_text("type,value,deleted\n" + "".join(f"md5,{v},1\n" for v in MD5S[50:60])
                     + "".join(f"md5,{v},\n" for v in MD5S[150:155]))
    v3 = store.import_list(delta, name="p", source="s", version="3", key=key)
    assert (v3.delta, v3.added, v3.removed) == (True, 5, 10)
    assert hexes(store.load("p@3", key=key).keys["md5"]) == set(MD5S[60:155])
    assert hexes(store.load("p@1", key=key).keys["md5"]) == set(MD5S[:100])
    assert store.resolve("p").version == "3"
    with pytest.raises(UserInputError, match="already has a version"):
        store.import_list(delta, name="p", source="s", version="3", key=key)
    with pytest.raises(UserInputError, match="a delta needs an earlier version"):
        store.import_list(delta, name="new", source="s", version="1", key=key)


def test_unknown_lists_and_versions_are_clear_errors(store: ListStore, key: bytes,
                                                     tmp_path: Path) -> None:
    store.import_list(write_list(tmp_path / "a.txt", MD5S), name="p", source="s", version="1",
                      key=key)
    with pytest.raises(UserInputError, match="no list named 'q'"):
        store.resolve("q")
    with pytest.raises(UserInputError, match=r"no version '9' \(versions: 1\)"):
        store.resolve("p@9")


def test_malformed_import_stores_nothing(store: ListStore, key: bytes, tmp_path: Path) -> None:
    with pytest.raises(InvalidListError, match=r"bad\.txt:3:"):
        store.import_list(write_list(tmp_path / "bad.txt", [MD5S[0], "nope"]), name="p",
                          source="s", version="1", key=key)
    assert store.catalog() == {} and not (store.root / "data").exists()


def signing_pair(tmp_path: Path, raw: bool = False) -> tuple[Ed25519PrivateKey, Path]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    path = tmp_path / ("partner.raw" if raw else "partner.pub")
    path.write_bytes(public.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw) if raw else
                     public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, path


@pytest.mark.parametrize("raw_key", [False, True])
def test_trusted_sources_need_a_valid_signature(store: ListStore, key: bytes, tmp_path: Path,
                                                raw_key: bool) -> None:
    private, public = signing_pair(tmp_path, raw=raw_key)
    store.trust("ncmec", public)
    source = write_list(tmp_path / "p.txt", MD5S)
    with pytest.raises(ExternalSourceError, match="no signature was given"):
        store.import_list(source, name="p", source="ncmec", version="1", key=key)
    forged = tmp_path / "forged.sig"
    forged.write_bytes(Ed25519PrivateKey.generate().sign(source.read_bytes()))
    with pytest.raises(ExternalSourceError, match="does not verify") as info:
        store.import_list(source, name="p", source="ncmec", version="1", key=key,
                          signature=forged)
    assert info.value.exit_code == 3
    assert store.catalog() == {}
    good = tmp_path / "good.sig"
    good.write_bytes(base64.b64encode(private.sign(source.read_bytes())))
    meta = store.import_list(source, name="p", source="ncmec", version="1", key=key,
                             signature=good)
    assert meta.signed_by and meta.signed_by.startswith("ed25519:")
    raw_sig = tmp_path / "raw.sig"
    raw_sig.write_bytes(private.sign(source.read_bytes()))
    store.import_list(source, name="p", source="ncmec", version="2", key=key, signature=raw_sig)


def test_signature_for_an_untrusted_source_is_refused(store: ListStore, key: bytes,
                                                      tmp_path: Path) -> None:
    source = write_list(tmp_path / "p.txt", MD5S)
    sig = tmp_path / "s.sig"
    sig.write_bytes(Ed25519PrivateKey.generate().sign(source.read_bytes()))
    with pytest.raises(ExternalSourceError, match="no registered key"):
        store.import_list(source, name="p", source="x", version="1", key=key, signature=sig)


def test_rm_and_verify(store: ListStore, key: bytes, tmp_path: Path) -> None:
    for version in ("1", "2"):
        store.import_list(write_list(tmp_path / "p.txt", MD5S), name="p", source="s",
                          version=version, key=key)
    assert store.verify(key=key) == []
    assert [m.ref for m in store.remove("p@1", key=key)] == ["p@1"]  # a sealed store: the key
    assert [m.version for m in store.catalog()["p"]] == ["2"]
    (store.root / store.resolve("p").stored / "md5.parquet.enc").unlink()
    assert store.verify(key=key) == ["p@2: stored md5 file is missing"]
    store.remove("p", key=key)
    assert store.catalog() == {}


def _import_one(args: tuple[str, str, str, bytes]) -> str:
    root, name, listing, key = args
    return ListStore(root).import_list(Path(listing), name=name, source="s", version="1",
                                       key=key).ref


@pytest.mark.slow
def test_concurrent_imports_never_corrupt_the_store(store: ListStore, key: bytes,
                                                    tmp_path: Path) -> None:
    listing = write_list(tmp_path / "p.txt", MD5S)
    jobs = [(str(store.root), f"list{i}", str(listing), key) for i in range(6)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        refs = pool.map(_import_one, jobs)
    assert sorted(refs) == sorted(f"list{i}@1" for i in range(6))
    assert sorted(store.catalog()) == sorted(f"list{i}" for i in range(6))
    assert store.verify(key=key) == []


def test_a_wrong_key_leaves_the_store_untouched(store: ListStore, key: bytes,
                                                tmp_path: Path) -> None:
    store.import_list(write_list(tmp_path / "a.txt", MD5S[:10]), name="p", source="s",
                      version="1", key=key)
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}
    other = write_key_file(tmp_path / "other.key")
    with pytest.raises(KeyFileError, match="not the key"):
        store.import_list(write_list(tmp_path / "b.txt", MD5S[10:20]), name="p", source="s",
                          version="2", key=other)
    after = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}
    assert after == before
