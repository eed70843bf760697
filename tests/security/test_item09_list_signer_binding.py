"""Item 9: trust is bound to the list, not to the ``--source`` string.

Once a version of a list was imported signed, every later version must verify under the same key,
whatever source it claims and whether or not it is ``--public``; ``--allow-unsigned`` (accept one
unsigned version) and ``--retrust`` (bind the list to the source's newly registered key) are the
only ways around, and both are recorded in the version. A sensitive list never gets a public
version (that would store its entries in clear).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scrub.crypto import write_key_file
from scrub.errors import ExternalSourceError
from scrub.lists.store import ListStore
from tests.helpers import expect_exit, expect_ok, run_cli

MD5S = [hashlib.md5(f"item09-{i}".encode()).hexdigest() for i in range(60)]


def public_pem(private: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def signed(path: Path, private: Ed25519PrivateKey | None) -> Path:
    sig = path.with_name(path.name + ".sig")
    if private is not None:
        sig.write_bytes(base64.b64encode(private.sign(path.read_bytes())))
    return sig


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A store whose list ``partner`` v1 came signed by ncmec's key; the data key is given to
    every command through SCRUB_KEY_FILE."""
    store, key = tmp_path / "store", tmp_path / "data.key"
    write_key_file(key)
    monkeypatch.setenv("SCRUB_KEY_FILE", str(key))
    ncmec = Ed25519PrivateKey.generate()
    assert run_cli("lists", "trust", "--source", "ncmec", "--key",
                  public_pem(ncmec, tmp_path / "ncmec.pub"), "--store", store).exit_code == 0
    v1 = tmp_path / "v1.txt"
    v1.write_text("\n".join(MD5S[:30]) + "\n")
    result = run_cli("lists", "import", v1, "--name", "partner", "--source", "ncmec",
                    "--version", "1", "--signature", signed(v1, ncmec), "--store", store,
                    "--key-file", key)
    expect_ok(result)
    v2 = tmp_path / "v2.txt"
    v2.write_text("\n".join(MD5S[30:]) + "\n")  # different entries: a swap would show
    return {"root": tmp_path, "store": store, "key": key, "ncmec": ncmec, "v2": v2}


def latest(env: dict) -> dict:
    result = run_cli("lists", "show", "partner", "--json", "--store", env["store"])
    expect_ok(result)
    return json.loads(result.stdout)


def import_v2(env: dict, *extra: object, version: str = "2"):
    return run_cli("lists", "import", env["v2"], "--name", "partner", "--version", version,
                  "--store", env["store"], "--key-file", env["key"], *extra)


@pytest.mark.parametrize("extra", [
    ("--source", "other"),                      # another source string, with no key at all
    ("--source", "other", "--public"),          # ... and stored in clear
    ("--source", "ncmec"),                      # the same source, just no signature
    ("--source", "other", "--sensitive"),
    ("--source", "OTHER.v2"),                   # a source that merely resembles nothing trusted
], ids=["other-source", "other-source-public", "same-source", "sensitive", "odd-source"])
def test_an_unsigned_version_of_a_signed_list_is_refused(env: dict, extra: tuple) -> None:
    result = import_v2(env, *extra)
    expect_exit(result, 3)
    assert "bound to signer" in result.stderr and "nothing was stored" in result.stderr
    meta = latest(env)
    assert meta["version"] == "1" and meta["signed_by"]
    assert not (env["store"] / "data" / "partner" / "2").exists()


def test_a_version_signed_by_another_registered_key_is_refused(env: dict) -> None:
    """Someone with the data key registers their own key under a new source name and signs v2
    with it: the list is bound to ncmec's key, so it is refused."""
    mallory = Ed25519PrivateKey.generate()
    assert run_cli("lists", "trust", "--source", "mallory", "--key",
                  public_pem(mallory, env["root"] / "m.pub"),
                  "--store", env["store"]).exit_code == 0
    result = import_v2(env, "--source", "mallory", "--signature", signed(env["v2"], mallory))
    expect_exit(result, 3)
    assert "is bound to" in result.stderr and "nothing was stored" in result.stderr
    assert latest(env)["version"] == "1"


def test_a_version_signed_by_the_bound_key_is_accepted_under_any_source(env: dict) -> None:
    result = import_v2(env, "--source", "ncmec-mirror",
                       "--signature", signed(env["v2"], env["ncmec"]))
    expect_ok(result)
    meta = latest(env)
    assert meta["version"] == "2" and meta["signed_by"] and not meta["trust_change"]


def test_a_rotated_source_key_needs_retrust_which_is_recorded(env: dict) -> None:
    """The source's key is re-registered (rotation, or someone with the data key): a version
    signed with the new key needs --retrust; after it, the old key no longer verifies."""
    new = Ed25519PrivateKey.generate()
    assert run_cli("lists", "trust", "--source", "ncmec", "--key",
                  public_pem(new, env["root"] / "new.pub"),
                  "--store", env["store"]).exit_code == 0
    sig = signed(env["v2"], new)
    first = latest(env)["signed_by"]
    refused = import_v2(env, "--source", "ncmec", "--signature", sig)
    expect_exit(refused, 3)
    assert "--retrust" in refused.stderr
    assert latest(env)["version"] == "1"
    accepted = import_v2(env, "--source", "ncmec", "--signature", sig, "--retrust")
    expect_ok(accepted)
    meta = latest(env)
    assert meta["version"] == "2" and "re-trusted" in meta["trust_change"]
    assert meta["signed_by"].startswith("ed25519:") and meta["signed_by"] != first
    old_signed = run_cli("lists", "import", env["v2"], "--name", "partner", "--version", "3",
                        "--source", "ncmec", "--signature", signed(env["v2"], env["ncmec"]),
                        "--store", env["store"], "--key-file", env["key"])
    expect_exit(old_signed, 3)


def test_allow_unsigned_is_recorded_and_keeps_the_binding(env: dict) -> None:
    result = import_v2(env, "--source", "other", "--allow-unsigned")
    expect_ok(result)
    meta = latest(env)
    assert meta["version"] == "2" and meta["signed_by"] is None
    assert "--allow-unsigned" in meta["trust_change"]
    shown = run_cli("lists", "ls", "--store", env["store"])
    assert "--allow-unsigned" in shown.stdout
    again = import_v2(env, "--source", "other", version="3")
    expect_exit(again, 3)
    assert latest(env)["version"] == "2"


def test_the_binding_holds_in_the_library_too(tmp_path: Path) -> None:
    store = ListStore(tmp_path / "store")
    key = write_key_file(tmp_path / "data.key")
    signer = Ed25519PrivateKey.generate()
    store.trust("ncmec", public_pem(signer, tmp_path / "n.pub"))  # before the store is sealed
    v1 = tmp_path / "v1.txt"
    v1.write_text("\n".join(MD5S[:5]) + "\n")
    store.import_list(v1, name="p", source="ncmec", version="1", key=key,
                      signature=signed(v1, signer))
    v2 = tmp_path / "v2.txt"
    v2.write_text("\n".join(MD5S[5:10]) + "\n")
    with pytest.raises(ExternalSourceError, match="bound to signer"):
        store.import_list(v2, name="p", source="anyone", version="2", key=key, sensitive=True)
    assert store.load("p", key=key).meta.version == "1"


def test_a_sensitive_list_never_gets_a_public_version(tmp_path: Path) -> None:
    """Unsigned lists too: a --public v2 of a sensitive list would store its entries (and, as a
    delta, all earlier ones) in clear."""
    store, key = tmp_path / "store", tmp_path / "data.key"
    write_key_file(key)
    v1 = tmp_path / "v1.txt"
    v1.write_text("\n".join(MD5S[:10]) + "\n")
    assert run_cli("lists", "import", v1, "--name", "p", "--source", "s", "--version", "1",
                  "--store", store, "--key-file", key).exit_code == 0
    delta = tmp_path / "d.txt"
    delta.write_text(MD5S[10] + "\n")
    for extra in (("--public",), ("--public", "--delta")):
        result = run_cli("lists", "import", delta, "--name", "p", "--source", "s", "--version",
                        "2", "--store", store, "--key-file", key, *extra)
        expect_exit(result, 2)
        assert not list(store.rglob("*.parquet")), extra  # nothing written in clear
    inherited = run_cli("lists", "import", delta, "--name", "p", "--source", "s", "--version",
                       "2", "--delta", "--store", store, "--key-file", key, "--json")
    assert inherited.exit_code == 0 and json.loads(inherited.stdout)["sensitive"] is True
