"""sha256 of the files a release build writes and reads: hashed as written (never read back),
or read once."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from scrub.atomic import file_sha256
from scrub.storage import ObjectPath

#: Bytes written between two background syncs of a file being written.
SYNC_EVERY = 8 << 20

# One thread per process syncs files in the background (waiting on the disk, not the CPU).
_SYNCER: ThreadPoolExecutor | None = None


def _syncer() -> ThreadPoolExecutor:
    global _SYNCER
    if _SYNCER is None:
        _SYNCER = ThreadPoolExecutor(1, thread_name_prefix="scrub-sync")
    return _SYNCER


class HashingFile:
    """A write-only file for the parquet writer that hashes (sha256) what it writes.

    Every ``SYNC_EVERY`` bytes it syncs what it holds so far on a background thread
    (``fdatasync``), so the disk works while the worker computes; the closing ``fsync`` is
    still what makes the file durable, and finds little left to write. ``sync=False`` syncs
    nothing: a local copy of an object that is uploaded once complete (the store makes it
    durable)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._handle = open(path, "wb")  # noqa: SIM115 - closed by finish() or abandon()
        self._durable = sync
        self._digest = hashlib.sha256()
        self._size = 0
        self._synced = 0  # bytes handed to a background sync
        self._sync: Future[None] | None = None
        self.closed = False

    def write(self, data: bytes) -> int:
        self._handle.write(data)
        self._digest.update(data)
        self._size += len(data)
        if self._durable and self._size - self._synced >= SYNC_EVERY and self._idle():
            self._handle.flush()
            self._sync = _syncer().submit(os.fdatasync, self._handle.fileno())
            self._synced = self._size
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
        if self._sync is not None:  # its error first: the kernel reports a failed write-back
            self._sync.result()     # once per file, so the fsync below might not see it again
        if self._durable:
            os.fsync(self._handle.fileno())
        self._handle.close()
        self.closed = True
        return self._digest.hexdigest()

    def abandon(self) -> None:
        if self._sync is not None:
            wait([self._sync])  # never close a file a sync still uses
        if not self._handle.closed:
            self._handle.close()
        self.closed = True

    def _idle(self) -> bool:
        """No background sync running, and none failed (a failed one is raised by finish)."""
        return self._sync is None or (self._sync.done() and self._sync.exception() is None)


def fsync_and_hash(path: Path | ObjectPath, *, sync: bool = True) -> str:
    """The sha256 of ``path`` (synced to disk first with ``sync``; an object in object storage
    is read once, in ranged requests, and never synced)."""
    if isinstance(path, ObjectPath):
        return file_sha256(path)
    digest = hashlib.sha256()
    with open(path, "rb+" if sync else "rb") as handle:
        if sync:
            os.fsync(handle.fileno())
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
