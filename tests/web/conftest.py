"""The web console's fixtures: a migrated ledger on SQLite and on PostgreSQL (``database``,
``engine``, ``key``, ``ledger`` from the ledger tests), staff accounts, the application and a
test client per role, and ``scrub serve`` as a real server on a free loopback port."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from scrub.ledger.service import Ledger
from scrub.ledger.staff import Staff
from scrub.web.app import create_app
from scrub.web.config import Limits, ServeConfig
from tests.helpers import stop_process
from tests.security.ledger_setup import (  # noqa: F401
    POSTGRES,
    cli_url,
    database,
    engine,
    key,
    ledger,
)

ADMIN, REVIEWER = "alice", "bob"
PASSWORD = {ADMIN: "alice's long passphrase", REVIEWER: "bob's long passphrase 2"}


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if found is None:
        raise AssertionError(f"no CSRF token on the page:\n{html[:2000]}")
    return found.group(1)


def photo(seed: int = 0, size: int = 96, fmt: str = "PNG") -> bytes:
    """A detailed random photo-like image (PDQ quality well above 50)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size, size, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture()
def staff(ledger: Ledger) -> Staff:
    accounts = Staff(ledger)
    accounts.add_user(ADMIN, "admin", PASSWORD[ADMIN], "setup")
    accounts.add_user(REVIEWER, "reviewer", PASSWORD[REVIEWER], "setup")
    return accounts


@pytest.fixture()
def limits() -> Limits:
    return Limits()


@pytest.fixture()
def client(ledger: Ledger, staff: Staff, limits: Limits) -> Iterator[TestClient]:
    """A client of the application (no one signed in)."""
    with TestClient(create_app(ServeConfig(ledger, limits)), base_url="http://testserver") as c:
        yield c


def sign_in(client: TestClient, name: str, password: str | None = None) -> TestClient:
    """Sign ``client`` in as ``name`` (the test's own client object, now with a session)."""
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "name": name,
                                           "password": password or PASSWORD[name]},
                           follow_redirects=False)
    if response.status_code != 303:
        raise AssertionError(f"sign-in as {name} failed: {response.status_code}")
    return client


@pytest.fixture()
def admin(client: TestClient) -> TestClient:
    return sign_in(client, ADMIN)


@pytest.fixture()
def reviewer(ledger: Ledger, staff: Staff, limits: Limits) -> Iterator[TestClient]:
    with TestClient(create_app(ServeConfig(ledger, limits)), base_url="http://testserver") as c:
        yield sign_in(c, REVIEWER)


def file_request(client: TestClient, **fields: object) -> str:
    """File a request through the form (defaults: two URLs, a caption term, consent); the
    reference code shown."""
    image = fields.pop("image", None)
    data = {"name": "Jane Roe", "email": "jane@example.org", "kind": "gdpr_erasure",
            "urls": "https://img.example.com/a.jpg\nhttps://img.example.com/b.jpg",
            "caption_term": "", "statement": "These are photos of me.", "consent": "yes"}
    data.update({k: str(v) for k, v in fields.items()})
    data["csrf"] = csrf_of(client.get("/request").text)
    files = {"image": ("photo.png", image, "image/png")} if image is not None else None
    response = client.post("/request", data=data, files=files)
    found = re.search(r'id="reference-code">([^<]+)<', response.text)
    if response.status_code != 200 or found is None:
        raise AssertionError(f"filing failed: {response.status_code}\n{response.text[:3000]}")
    return found.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """``scrub serve`` running in a process of its own; its output in ``log``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(tmp_path: Path, db_url: str, key_file: Path, *args: str) -> Server:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "SCRUB_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("SCRUB_KEY_FILE", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scrub", "serve", "--port", str(port), "--db", db_url,
             "--key-file", str(key_file), *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"scrub serve exited {process.returncode}:\n{server.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"scrub serve did not listen within 60 s:\n{server.output()}")


def stop_server(server: Server) -> None:
    stop_process(server.process)


@pytest.fixture()
def server(tmp_path: Path, database: tuple[str, dict], engine: object, staff: Staff
           ) -> Iterator[Server]:
    """``scrub serve`` on the test's ledger (accounts alice, admin, and bob, reviewer)."""
    running = start_server(tmp_path, cli_url(database), tmp_path / "ledger.key")
    try:
        yield running
    finally:
        stop_server(running)
