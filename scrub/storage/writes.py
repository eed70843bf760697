"""Writes to object storage: every object appears complete or not at all.

pyarrow's S3 output stream completes its multipart upload when closed, also when closed by an
exception (a partial object would appear under its final name), and pyarrow cannot list or abort
uploads; so S3 writes go through boto3 (the ``s3`` extra): small objects in one ``PutObject``,
larger ones as a multipart upload from a finished local file, aborted when any part fails. A
process killed mid-upload leaves an incomplete upload, which is never visible as an object and
is aborted by the job's next run (:func:`abort_uploads`). Other schemes write through pyarrow:
under a temporary name, then moved (that store's rename or copy).
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scrub.errors import UserInputError
from scrub.storage import filesystems
from scrub.storage.failures import translated
from scrub.storage.filesystems import ObjectPath

#: Part size of multipart uploads (S3's minimum is 5 MiB); files up to it go in one request.
#: ``SCRUB_S3_PART_MIB`` sets another (at least 5).
PART_BYTES = 8 << 20
#: Parts of one file in flight at once.
UPLOAD_THREADS = 4

_LOCK = threading.Lock()
_CLIENT: dict[int, Any] = {}


def client() -> Any:
    """This process's boto3 S3 client (endpoint and region from the environment, credentials
    from AWS's default chain)."""
    pid = os.getpid()
    with _LOCK:
        found = _CLIENT.get(pid)
        if found is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise UserInputError("writing to s3:// needs boto3, which is not installed",
                                     hint="pip install 'scrub[s3]'") from None
            config = Config(retries={"max_attempts": 4, "mode": "standard"},
                            connect_timeout=5, read_timeout=60,
                            request_checksum_calculation="when_required",
                            response_checksum_validation="when_required")
            found = _CLIENT[pid] = boto3.session.Session().client(
                "s3", endpoint_url=filesystems.endpoint(), region_name=filesystems.region(),
                config=config)
        return found


def reset() -> None:
    """Forget the client (the environment changed)."""
    with _LOCK:
        _CLIENT.clear()


def put_bytes(path: ObjectPath, data: bytes) -> None:
    """Write ``data`` as object ``path`` in one request (atomic by nature)."""
    if path.scheme != "s3":
        _pyarrow_write(path, lambda out: out.write(data))
        return
    with translated(path):
        client().put_object(Bucket=path.bucket, Key=path.key, Body=data)


def upload_file(path: ObjectPath, local: Path) -> None:
    """Make object ``path`` a copy of the finished file ``local``; a failed multipart upload
    is aborted (by boto3's transfer manager), never completed."""
    if path.scheme != "s3":
        _pyarrow_write(path, lambda out: _copy_into(local, out))
        return
    from boto3.s3.transfer import TransferConfig

    part = part_bytes()
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                            max_concurrency=UPLOAD_THREADS, use_threads=True)
    with translated(path):
        client().upload_file(str(local), path.bucket, path.key, Config=config)


def copy_object(source: ObjectPath, target: ObjectPath) -> None:
    """Server-side copy of ``source`` to ``target`` (same store)."""
    if target.scheme != "s3" or source.scheme != "s3":
        with translated(target):
            target.filesystem.copy_file(source.fs_path, target.fs_path)
        return
    with translated(target):
        client().copy({"Bucket": source.bucket, "Key": source.key}, target.bucket, target.key)


def delete_objects(where: ObjectPath, paths: Iterable[ObjectPath]) -> None:
    """Delete the objects ``paths`` (in batches of 1,000; missing ones are no error)."""
    keys = [p for p in paths if p.key]
    if where.scheme != "s3":
        with translated(where):
            for path in keys:
                where.filesystem.delete_file(path.fs_path)
        return
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        with translated(where):
            client().delete_objects(Bucket=where.bucket, Delete={
                "Objects": [{"Key": p.key} for p in batch], "Quiet": True})


def abort_uploads(prefix: ObjectPath) -> int:
    """Abort the incomplete multipart uploads under ``prefix`` (a killed run's); how many."""
    if prefix.scheme != "s3":
        return 0
    count = 0
    with translated(prefix):
        pages = client().get_paginator("list_multipart_uploads").paginate(
            Bucket=prefix.bucket, Prefix=prefix.key + "/" if prefix.key else "")
        for page in pages:
            for upload in page.get("Uploads") or []:
                client().abort_multipart_upload(Bucket=prefix.bucket, Key=upload["Key"],
                                                UploadId=upload["UploadId"])
                count += 1
    return count


def part_bytes() -> int:
    """The multipart part size: ``SCRUB_S3_PART_MIB`` MiB (at least 5), else PART_BYTES."""
    text = os.environ.get("SCRUB_S3_PART_MIB", "")
    if not text:
        return PART_BYTES
    if not text.isdigit() or int(text) < 5:
        raise UserInputError(f"SCRUB_S3_PART_MIB={text!r}: expected a whole number >= 5 "
                             "(S3's smallest part is 5 MiB)")
    return int(text) << 20


def _copy_into(local: Path, out: Any) -> None:
    with open(local, "rb") as handle:
        for block in iter(lambda: handle.read(PART_BYTES), b""):
            out.write(block)


def _pyarrow_write(path: ObjectPath, write: Any) -> None:
    """Write through pyarrow under a temporary name, then move into place (a partial
    temporary object left by a failure is deleted)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    filesystem = path.filesystem
    with translated(path):
        try:
            with filesystem.open_output_stream(temporary.fs_path) as out:
                write(out)
            filesystem.move(temporary.fs_path, path.fs_path)
        except BaseException:
            with contextlib.suppress(OSError):
                filesystem.delete_file(temporary.fs_path)
            raise
