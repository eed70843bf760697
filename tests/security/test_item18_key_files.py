"""Item 18 (key files): secret key files others may read are refused (as ssh refuses them), a
key file must have its format's framing (a file cut to 32 bytes is not a raw key), and
``scrub lists trust`` refuses Ed25519 public keys of small order, under which anyone can forge
a signature over any list.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scrub.crypto import load_signing_key, write_key_file, write_signing_keypair
from scrub.errors import UserInputError
from scrub.synthetic import random_md5s
from tests.helpers import expect_exit, run_cli

P = 2**255 - 19
# y of the order-8 points (little-endian encoding from RFC 8032's torsion subgroup)
Y8 = int.from_bytes(bytes.fromhex(
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little")


def invoke(*args: object, env: dict[str, str] | None = None):
    return run_cli(*args, env={"SCRUB_DEBUG": "", **(env or {})})


@pytest.fixture
def hash_list(tmp_path: Path) -> Path:
    path = tmp_path / "partner.txt"
    path.write_text("".join(f"{v}\n" for v in random_md5s(20, seed=18)))
    return path


def import_args(hash_list: Path, store: Path, *extra: object) -> list[object]:
    return ["lists", "import", hash_list, "--name", "partner", "--source", "ncmec",
            "--version", "1", "--store", store, *extra]


# ----------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o666])
def test_data_key_others_may_read_is_refused(tmp_path: Path, hash_list: Path,
                                             mode: int) -> None:
    key_path = tmp_path / "data.key"
    key = write_key_file(key_path)
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert invoke(*import_args(hash_list, tmp_path / "ok-store", "--key-file",
                               key_path)).exit_code == 0
    key_path.chmod(mode)
    for how in ("flag", "env"):
        args = import_args(hash_list, tmp_path / "store")
        env = {"SCRUB_KEY_FILE": str(key_path)} if how == "env" else {}
        result = invoke(*args, *(("--key-file", key_path) if how == "flag" else ()), env=env)
        expect_exit(result, 2)
        assert f"{key_path}: " in result.stderr and f"{mode:04o}" in result.stderr
        assert "chmod 600" in result.stderr
        text = result.stdout + result.stderr
        assert base64.b64encode(key).decode() not in text and key.hex() not in text
        assert not (tmp_path / "store" / "catalog.json").exists()


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604])
def test_signing_key_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    private = tmp_path / "signing.pem"
    write_signing_keypair(private, tmp_path / "signing.pub")
    load_signing_key(private)  # 0600 as written
    private.chmod(mode)
    with pytest.raises(UserInputError, match=f"{mode:04o}") as caught:
        load_signing_key(private)
    assert str(private) in caught.value.message
    assert caught.value.exit_code == 2


# ----------------------------------------------------------------------- framing


def _damaged(key: bytes, damage: str) -> bytes:
    line = base64.b64encode(key)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return {
        "cut-32": (line + b"\n")[:32],  # 32 bytes of base64 text: used to be read as raw
        "raw-32": key,                   # the bare key: no framing at all
        "leading-space": b" " + line + b"\n",
        # the same 32 bytes in a non-canonical spelling (unused low bits of the last digit set)
        "padding-bits": line[:42] + alphabet[alphabet.index(line[42:43]) | 1:][:1] + b"=\n",
        "cut-43": line[:43],
        "cut-20": line[:20],
        "two-lines": line + b"\n" + line + b"\n",
        "trailing-junk": line + b"\nx",
        "empty": b"",
        "base64-of-31": base64.b64encode(key[:31]) + b"\n",
        "urlsafe": base64.urlsafe_b64encode(b"\xfb\xff" * 16) + b"\n",
    }[damage]


DAMAGES = ("cut-32", "raw-32", "leading-space", "padding-bits", "cut-43", "cut-20",
           "two-lines", "trailing-junk", "empty", "base64-of-31", "urlsafe")


def test_key_file_without_its_framing_is_refused(tmp_path: Path, hash_list: Path) -> None:
    key_path = tmp_path / "data.key"
    key = write_key_file(key_path)
    store = tmp_path / "store"
    for damage in DAMAGES:
        key_path.write_bytes(_damaged(key, damage))
        key_path.chmod(0o600)
        result = invoke(*import_args(hash_list, store, "--key-file", key_path))
        assert result.exit_code == 2, (damage, result.output)
        assert result.stderr.startswith(f"scrub: error: {key_path}: not a scrub key file"), \
            (damage, result.stderr)
        assert not (store / "catalog.json").exists(), damage
    # what `scrub keygen` (or `openssl rand -base64 32`) writes is read, with any line ending
    for ending in (b"\n", b"", b"\r\n"):
        key_path.write_bytes(base64.b64encode(key) + ending)
        result = invoke(*import_args(hash_list, tmp_path / f"store{len(ending)}",
                                     "--key-file", key_path))
        assert result.exit_code == 0, (ending, result.stderr)


# ----------------------------------------------------------------------- weak public keys


def _encoding(y: int, sign: int) -> bytes:
    return (y | (sign << 255)).to_bytes(32, "little")


# Every encoding of a small-order point (8 points; with the non-canonical y >= p, 14 strings).
SMALL_ORDER = {f"{name}-{sign}": _encoding(y, sign)
               for name, y in (("zero", 0), ("identity", 1), ("minus-one", P - 1), ("y8", Y8),
                               ("minus-y8", P - Y8), ("p", P), ("p+1", P + 1))
               for sign in (0, 1)}


def _pem(raw: bytes) -> bytes:
    """A SubjectPublicKeyInfo PEM around any 32 bytes (the Ed25519 OID, RFC 8410)."""
    der = bytes.fromhex("302a300506032b6570032100") + raw
    return (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(der)
            + b"-----END PUBLIC KEY-----\n")


def _forged_signature() -> bytes:
    """R = the identity, S = 0: valid over every message under the identity key."""
    return _encoding(1, 0) + bytes(32)


@pytest.mark.parametrize("form", ["raw", "pem"])
def test_lists_trust_refuses_small_order_keys(tmp_path: Path, form: str) -> None:
    key = tmp_path / "partner.pub"
    store = tmp_path / "store"
    for name, raw in sorted(SMALL_ORDER.items()):
        key.write_bytes(raw if form == "raw" else _pem(raw))
        result = invoke("lists", "trust", "--source", "ncmec", "--key", key, "--store", store)
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.startswith(f"scrub: error: {key}: "), (name, result.stderr)
        assert "internal error" not in result.stderr, name
        assert not (store / "trust.json").exists(), name
    # a real key, raw or PEM, is still trusted
    public = Ed25519PrivateKey.generate().public_key()
    key.write_bytes(public.public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw) if form == "raw"
                    else public.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    assert invoke("lists", "trust", "--source", "ncmec", "--key", key,
                  "--store", store).exit_code == 0


def test_forged_signature_cannot_get_a_list_in(tmp_path: Path, hash_list: Path) -> None:
    """The attack item 18 is about: trust the identity key, then sign nothing and import."""
    key = tmp_path / "partner.pub"
    key.write_bytes(SMALL_ORDER["identity-0"])
    store = tmp_path / "store"
    invoke("lists", "trust", "--source", "ncmec", "--key", key, "--store", store)
    signature = tmp_path / "partner.txt.sig"
    signature.write_bytes(base64.b64encode(_forged_signature()) + b"\n")
    data_key = tmp_path / "data.key"
    write_key_file(data_key)
    result = invoke(*import_args(hash_list, store, "--signature", signature,
                                 "--key-file", data_key))
    assert result.exit_code != 0, result.output
    assert "stored" not in result.stdout


def test_small_order_key_written_into_trust_json_fails_closed(tmp_path: Path,
                                                              hash_list: Path) -> None:
    """Someone who can write the store puts the identity key into its trusted keys by hand
    (``trust.json``, the layout ``lists trust`` wrote before seals): an import carrying the
    forged signature must still fail (exit 3), with nothing stored."""
    store = tmp_path / "store"
    store.mkdir()
    raw = SMALL_ORDER["identity-0"]
    (store / "trust.json").write_text(json.dumps({"ncmec": {
        "key": raw.hex(), "fingerprint": "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]}}))
    signature = tmp_path / "partner.txt.sig"
    signature.write_bytes(_forged_signature())
    data_key = tmp_path / "data.key"
    write_key_file(data_key)
    result = invoke(*import_args(hash_list, store, "--signature", signature,
                                 "--key-file", data_key))
    expect_exit(result, 3)
    assert "internal error" not in result.stderr
    assert not list(store.glob("data/partner/*"))


def test_pem_cut_to_32_bytes_is_not_a_raw_key(tmp_path: Path) -> None:
    key = tmp_path / "partner.pub"
    key.write_bytes(_pem(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw))[:32])
    result = invoke("lists", "trust", "--source", "ncmec", "--key", key,
                    "--store", tmp_path / "store")
    expect_exit(result, 2)
    assert result.stderr.startswith(f"scrub: error: {key}: ")


def test_many_random_keys_pass_the_weak_key_check() -> None:
    from scrub.crypto import weak_public_key

    for _ in range(64):
        raw = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert weak_public_key(raw) is None
    for raw in SMALL_ORDER.values():
        assert weak_public_key(raw) is not None
