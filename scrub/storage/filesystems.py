"""pyarrow filesystems for object storage, one per scheme and process, configured from the
standard AWS settings of the environment (never from a flag, never printed).

S3: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (an S3-compatible store), ``AWS_REGION`` /
``AWS_DEFAULT_REGION``, and the credentials of AWS's default chain (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and its files, an instance role). Other schemes
(``gs://``, ``hdfs://``, ...) come from :meth:`pyarrow.fs.FileSystem.from_uri`.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from scrub.errors import UserInputError
from scrub.storage.failures import translated


class ObjectPath(Protocol):
    """What this module and :mod:`scrub.storage.writes` read of a
    :class:`scrub.storage.paths.ObjectPath` (a protocol: that module imports these)."""

    scheme: str
    bucket: str
    key: str

    @property
    def name(self) -> str: ...

    @property
    def fs_path(self) -> str: ...

    @property
    def filesystem(self) -> Any: ...

    def with_name(self, name: str) -> Any: ...

_LOCK = threading.Lock()
_FILESYSTEMS: dict[str, Any] = {}
#: S3 filesystems for the first request of a job (:func:`bucket_exists`), one per process:
#: a store that accepts connections and never answers fails it in seconds (two tries of
#: :data:`PROBE_TIMEOUT` s without a byte) instead of four of a minute.
_PROBES: dict[str, Any] = {}
PROBE_TIMEOUT = 5.0
#: Concurrent requests of one process's reads (pyarrow's IO thread pool).
IO_THREADS = 16


def endpoint() -> str | None:
    """The S3 endpoint of an S3-compatible store, from the environment (None: AWS's)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    """The region from the environment; a custom endpoint without one gets ``us-east-1``."""
    found = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return found or ("us-east-1" if endpoint() else None)


def for_scheme(scheme: str, uri: str) -> Any:
    """The pyarrow filesystem of ``scheme`` (built on first use in this process)."""
    with _LOCK:
        found = _FILESYSTEMS.get(scheme)
        if found is None:
            found = _FILESYSTEMS[scheme] = _build(scheme, uri)
        return found


def reset() -> None:
    """Forget the filesystems (the environment changed: tests, a new credential)."""
    with _LOCK:
        _FILESYSTEMS.clear()
        _PROBES.clear()


def _probe(path: ObjectPath) -> Any:
    """The filesystem :func:`bucket_exists` asks: for S3, one with short timeouts."""
    if path.scheme != "s3":
        return path.filesystem
    with _LOCK:
        found = _PROBES.get(path.scheme)
        if found is None:
            found = _PROBES[path.scheme] = _build("s3", str(path), timeout=PROBE_TIMEOUT,
                                                  attempts=2)
        return found


def _build(scheme: str, uri: str, *, timeout: float = 60.0, attempts: int = 4) -> Any:
    import pyarrow as pa
    import pyarrow.fs as pafs

    if pa.io_thread_count() < IO_THREADS:
        pa.set_io_thread_count(IO_THREADS)
    if scheme == "s3":
        options: dict[str, Any] = {
            "region": region(), "connect_timeout": 5.0, "request_timeout": timeout,
            "allow_bucket_creation": False, "allow_bucket_deletion": False,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)}
        if endpoint():
            options["endpoint_override"] = endpoint()
        try:
            return pafs.S3FileSystem(**{k: v for k, v in options.items() if v is not None})
        except (OSError, ValueError) as exc:
            raise UserInputError(f"{uri}: cannot set up S3 ({type(exc).__name__})",
                                 hint="check AWS_ENDPOINT_URL and AWS_REGION") from None
    with translated(uri):
        try:
            filesystem, _ = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UserInputError(f"{uri}: no filesystem for {scheme}:// in this pyarrow "
                                 f"({type(exc).__name__})",
                                 hint="use s3://, or a local path") from None
    return filesystem


def listing(path: ObjectPath, *, recursive: bool) -> list[Any]:
    """pyarrow's file infos under ``path`` (empty when nothing lies there; a missing bucket
    or refused credentials raise the translated error)."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(path.fs_path, recursive=recursive, allow_not_found=True)
    with translated(path):
        infos = path.filesystem.get_file_info(selector)
    return sorted(infos, key=lambda info: info.path)


def bucket_exists(path: ObjectPath) -> bool:
    """Whether ``path``'s bucket exists (a listing of its top level: pyarrow's file info of a
    bucket name says "folder" for a bucket that is not there). A job's first request: an
    endpoint that does not answer fails it in seconds (:data:`PROBE_TIMEOUT`)."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(path.bucket, recursive=False, allow_not_found=False)
    try:
        with translated(path):
            _probe(path).get_file_info(selector)
    except UserInputError as exc:
        if getattr(exc, "missing_bucket", False):
            return False
        raise
    return True
