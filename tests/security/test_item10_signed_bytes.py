"""Item 10: the bytes whose signature is checked are the bytes hashed, parsed and stored.

The attacker here can write the list file while scrub imports it: right after scrub first opens
the file, they swap it (an atomic rename) for a list the source never signed. Every later open
sees the attacker's file. A signed import must store what was signed (or refuse), never the
swapped-in list under the source's signature.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scrub.crypto import write_key_file
from scrub.errors import ScrubError
from scrub.keys import keys_to_hex
from scrub.lists.store import ListStore
from tests.helpers import expect_exit, run_cli

GOOD = [hashlib.md5(f"signed-{i}".encode()).hexdigest() for i in range(40)]
EVIL = [hashlib.md5(f"decoy-{i}".encode()).hexdigest() for i in range(3)]


class SwapAfterFirstOpen:
    """Every open of ``target`` (through ``open``/``io.open`` or ``os.open``) is counted; right
    after the first, ``target`` is atomically replaced by ``evil``'s bytes, as a racing writer
    would. A handle opened before the swap keeps reading the signed file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Path, evil: bytes) -> None:
        self.target, self.evil, self.opens = target.resolve(), evil, 0
        real_io_open, real_os_open = io.open, os.open

        def is_target(file: object) -> bool:
            try:
                return isinstance(file, (str, bytes, os.PathLike)) and \
                    Path(os.fsdecode(file)).resolve() == self.target
            except (OSError, ValueError):
                return False

        def hooked_io_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
            handle = real_io_open(file, *args, **kwargs)
            if is_target(file):
                self._opened()
            return handle

        def hooked_os_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
            fd = real_os_open(file, *args, **kwargs)
            if is_target(file):
                self._opened()
            return fd

        monkeypatch.setattr(io, "open", hooked_io_open)
        monkeypatch.setattr(builtins, "open", hooked_io_open)
        monkeypatch.setattr(os, "open", hooked_os_open)
        self._real_open = real_io_open

    def _opened(self) -> None:
        self.opens += 1
        if self.opens == 1:
            swap = self.target.with_name(self.target.name + ".swap")
            with self._real_open(swap, "wb") as handle:
                handle.write(self.evil)
            os.replace(swap, self.target)


def setup(tmp_path: Path, name: str) -> tuple[ListStore, bytes, Path, Path]:
    store = ListStore(tmp_path / "store")
    key = write_key_file(tmp_path / "data.key")
    private = Ed25519PrivateKey.generate()
    public = tmp_path / "ncmec.pub"
    public.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    store.trust("ncmec", public)  # before the first keyed write, which seals the store
    listing = tmp_path / name
    listing.write_text("# partner list\n" + "\n".join(GOOD) + "\n")
    sig = tmp_path / "list.sig"
    sig.write_bytes(base64.b64encode(private.sign(listing.read_bytes())))
    return store, key, listing, sig


@pytest.mark.parametrize("name", ["partner.txt", "partner"])  # by suffix, and sniffed
def test_a_file_swapped_after_its_signature_is_read_is_not_stored_as_signed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    store, key, listing, sig = setup(tmp_path, name)
    signed_digest = hashlib.sha256(listing.read_bytes()).hexdigest()
    race = SwapAfterFirstOpen(monkeypatch, listing, ("\n".join(EVIL) + "\n").encode())
    try:
        meta = store.import_list(listing, name="partner", source="ncmec", version="1",
                                 signature=sig, key=key)
    except ScrubError:
        meta = None
    monkeypatch.undo()
    assert race.opens >= 1 and listing.read_text().split() == EVIL  # the race did happen
    if meta is None:  # refusing is fine; storing the swapped list as signed is not
        return
    assert meta.signed_by and meta.file_sha256 == signed_digest
    stored = {v.decode() for v in keys_to_hex(store.load("partner", key=key).keys["md5"])}
    assert stored == set(GOOD)
    assert meta.counts == {"md5": len(GOOD)}


def test_the_cli_import_stores_what_was_signed(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, key, listing, sig = setup(tmp_path, "partner.txt")
    signed_digest = hashlib.sha256(listing.read_bytes()).hexdigest()
    SwapAfterFirstOpen(monkeypatch, listing, ("\n".join(EVIL) + "\n").encode())
    result = run_cli("lists", "import", str(listing), "--name", "partner",
                     "--source", "ncmec", "--version", "1", "--signature", str(sig),
                     "--store", str(store.root), "--key-file",
                     str(tmp_path / "data.key"), "--json")
    monkeypatch.undo()
    if result.exit_code != 0:
        expect_exit(result, 3)
        return
    meta = json.loads(result.stdout)
    assert meta["file_sha256"] == signed_digest and meta["counts"] == {"md5": len(GOOD)}
