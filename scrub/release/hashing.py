"""sha256 of the files a release build writes and reads: hashed as written (never read back),
or read once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class HashingFile:
    """A write-only file for the parquet writer that hashes (sha256) what it writes."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 - closed by finish() or abandon()
        self._digest = hashlib.sha256()
        self._size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self._digest.update(data)
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:  # the parquet writer's close: the file stays open to be synced
        self.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def finish(self) -> str:
        """Sync and close the file; its sha256."""
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.closed = True
        return self._digest.hexdigest()

    def abandon(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self.closed = True


def fsync_and_hash(path: Path, *, sync: bool = True) -> str:
    """The sha256 of ``path`` (synced to disk first with ``sync``)."""
    digest = hashlib.sha256()
    with open(path, "rb+" if sync else "rb") as handle:
        if sync:
            os.fsync(handle.fileno())
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
