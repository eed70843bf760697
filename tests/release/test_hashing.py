"""A variant shard's file is hashed as written and synced in the background as it grows: its
digest is that of the bytes written, and a background sync that failed fails the file."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from scrub.release import hashing
from scrub.release.hashing import HashingFile


def test_a_file_synced_while_written_holds_and_hashes_what_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "SYNC_EVERY", 1000)
    synced: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(hashing.os, "fdatasync", fdatasync)
    chunks = [bytes([i]) * 700 for i in range(10)]
    sink = HashingFile(tmp_path / "shard")
    for chunk in chunks:
        assert sink.write(chunk) == len(chunk)
    digest = sink.finish()
    written = (tmp_path / "shard").read_bytes()
    assert written == b"".join(chunks)
    assert digest == hashlib.sha256(written).hexdigest()
    assert synced and sink.closed


def test_a_failed_background_sync_fails_the_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel reports a failed write-back once per file: the closing fsync might not."""
    monkeypatch.setattr(hashing, "SYNC_EVERY", 1000)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(hashing.os, "fdatasync", failing)
    sink = HashingFile(tmp_path / "shard")
    sink.write(b"x" * 1500)
    sink.write(b"y" * 1500)  # no new sync after a failed one, and no error raised here
    with pytest.raises(OSError) as raised:
        sink.finish()
    assert raised.value.errno == errno.EIO
    sink.abandon()
    assert sink.closed
