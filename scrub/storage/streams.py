"""A file written straight into object storage while it is produced: parts are uploaded as
they fill (a multipart upload), and the object appears only when :meth:`UploadSlot.complete`
is called; anything else (an error, :meth:`UploadSlot.discard`) aborts the upload, so no
partial object ever appears. Memory: at most ``IN_FLIGHT + 1`` parts.

Used for apply's output shards (the parquet writer writes into :meth:`UploadSlot.open`), so a
shard's upload overlaps its filtering instead of following it (figures:
docs/design/object-storage.md).
"""

from __future__ import annotations

import io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scrub.storage import writes
from scrub.storage.failures import translated
from scrub.storage.paths import ObjectPath

#: Parts being uploaded at once per stream (each holds one part in memory).
IN_FLIGHT = 2


class UploadStream(io.RawIOBase):
    """The writable side of an :class:`UploadSlot` (what a parquet writer writes into)."""

    def __init__(self, slot: UploadSlot) -> None:
        super().__init__()
        self._slot = slot

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._slot.append(data)

    def tell(self) -> int:
        return self._slot.size

    def close(self) -> None:
        """Closing the stream publishes nothing (:meth:`UploadSlot.complete` does)."""
        super().close()


class UploadSlot:
    """Object ``final``, being written: :meth:`open` the stream, write, :meth:`complete`."""

    def __init__(self, final: ObjectPath) -> None:
        self.final = final
        self.size = 0
        self.part = writes.part_bytes()
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: deque[Future[dict[str, Any]]] = deque()
        self._done: list[dict[str, Any]] = []
        self._pool: ThreadPoolExecutor | None = None
        self.completed = False

    def __str__(self) -> str:
        return str(self.final)

    def open(self) -> UploadStream:
        return UploadStream(self)

    def append(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self.size += len(view)
        while len(self._buffer) >= self.part:
            self._send(bytes(self._buffer[:self.part]))
            del self._buffer[:self.part]
        return len(view)

    def _send(self, body: bytes) -> None:
        client = writes.client()
        pool = self._pool
        if self._upload_id is None or pool is None:
            with translated(self.final):
                self._upload_id = client.create_multipart_upload(
                    Bucket=self.final.bucket, Key=self.final.key)["UploadId"]
            pool = self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="scrub-upload")
        number = len(self._done) + len(self._parts) + 1
        self._parts.append(pool.submit(self._upload_part, client, number, body))
        while len(self._parts) >= IN_FLIGHT:
            self._done.append(self._wait(self._parts.popleft()))

    def _upload_part(self, client: Any, number: int, body: bytes) -> dict[str, Any]:
        answer = client.upload_part(Bucket=self.final.bucket, Key=self.final.key,
                                    PartNumber=number, UploadId=self._upload_id, Body=body)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _wait(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        with translated(self.final):
            return future.result()

    def complete(self) -> None:
        """Publish the object: one PutObject for a small one, else the last part and the
        completion of the multipart upload."""
        if self.completed:
            return
        if self._upload_id is None:
            writes.put_bytes(self.final, bytes(self._buffer))
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            while self._parts:
                self._done.append(self._wait(self._parts.popleft()))
            with translated(self.final):
                writes.client().complete_multipart_upload(
                    Bucket=self.final.bucket, Key=self.final.key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": sorted(self._done, key=lambda p: p["PartNumber"])})
        self._buffer = bytearray()
        self.completed = True
        self._shutdown()

    def discard(self) -> None:
        """Abort the upload (no object appears); nothing when already complete."""
        if self.completed:
            return
        upload, self._upload_id = self._upload_id, None
        for future in self._parts:
            future.cancel()
        self._shutdown()
        self._buffer = bytearray()
        if upload is not None:
            with translated(self.final):
                writes.client().abort_multipart_upload(
                    Bucket=self.final.bucket, Key=self.final.key, UploadId=upload)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._parts.clear()

    def unlink(self, missing_ok: bool = True) -> None:
        """What a staged local file's cleanup does: here, discard an unfinished upload."""
        self.discard()


def open_staged(tmp: Path | UploadSlot) -> Any:
    """A binary file to write a staged output into: the local file, or the upload stream."""
    return tmp.open() if isinstance(tmp, UploadSlot) else open(tmp, "wb")  # noqa: SIM115


def finish_staged(handle: Any) -> int:
    """Make what was written durable (fsync of a local file; an upload is completed by the
    commit) and return its size."""
    import os

    handle.flush()
    if not isinstance(handle, UploadStream):
        os.fsync(handle.fileno())
    return int(handle.tell())
