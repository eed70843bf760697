"""Security tests of ``scrub serve`` (issue 25), the limits: the lockout after 20 wrong
passwords, the per-address sign-in limit, oversized bodies and images (refused before they are
read whole), the image never reaching a disk, and a status page that does not tell whether a
code exists."""

from __future__ import annotations

import socket
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from scrub.ledger.service import Ledger
from scrub.ledger.staff import LOCK_AFTER, Staff
from scrub.web.app import create_app
from scrub.web.config import Limits, ServeConfig
from tests.security.ledger_setup import cli
from tests.web.conftest import ADMIN, PASSWORD, REVIEWER, Server, csrf_of, file_request, photo
from tests.web.test_web_security import counts


@pytest.fixture()
def limits() -> Limits:
    """The default limits, but enough sign-ins per address that the lockout is what stops
    them."""
    return Limits(sign_in_per_10_minutes=1000)


def try_password(client: TestClient, name: str, password: str) -> int:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "name": name, "password": password},
                       follow_redirects=False).status_code


def account_events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [(str(a), str(b)) for a, b in connection.execute(text(
            "SELECT action, body FROM events WHERE request_id IS NULL ORDER BY seq"))]


# ---- the lockout


def test_twenty_wrong_passwords_lock_the_account(client: TestClient, staff: Staff,
                                                 engine: Engine, tmp_path: Path,
                                                 database: tuple[str, dict]) -> None:
    before = len(account_events(engine))
    for attempt in range(LOCK_AFTER):
        assert try_password(client, REVIEWER, f"wrong password number {attempt}") == 401
    assert try_password(client, REVIEWER, PASSWORD[REVIEWER]) == 401  # the right one
    assert "scrub_session" not in client.cookies
    events = account_events(engine)[before:]
    actions = [action for action, _ in events]
    assert actions == ["sign_in_failed"] * LOCK_AFTER + ["account_locked", "sign_in_failed"]
    assert all('"wrong password"' in body for _, body in events[:LOCK_AFTER])
    assert '"locked"' in events[-1][1]
    for _, body in events:
        assert "wrong password number" not in body and PASSWORD[REVIEWER] not in body
    assert {u["name"]: u["locked"] for u in staff.users()} == {ADMIN: False, REVIEWER: True}
    assert try_password(client, ADMIN, PASSWORD[ADMIN]) == 303  # only bob is locked
    unlocked = cli(tmp_path, database, "users", "unlock", REVIEWER)
    assert unlocked.exit_code == 0, unlocked.output
    assert account_events(engine)[-1][0] == "account_unlocked"
    assert try_password(client, REVIEWER, PASSWORD[REVIEWER]) == 303
    assert client.get("/console").status_code == 200


def test_the_sign_in_limit_per_address(ledger: Ledger, staff: Staff, engine: Engine) -> None:
    config = ServeConfig(ledger, Limits(sign_in_per_10_minutes=3))
    with TestClient(create_app(config), base_url="http://testserver") as client:
        for _ in range(3):
            assert try_password(client, "nobody", "not the password at all") == 401
        before = counts(engine)
        token = csrf_of(client.get("/login").text)
        response = client.post("/login", data={"csrf": token, "name": ADMIN,
                                               "password": PASSWORD[ADMIN]},
                               follow_redirects=False)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "600"
        assert "scrub_session" not in client.cookies
        assert counts(engine) == before
    assert Limits().sign_in_per_10_minutes == 10  # < 20: one address cannot lock at once


# ---- oversized bodies


def raw_exchange(server: Server, head: str, body: bytes) -> tuple[bytes, float]:
    """Send a request's head and ``body`` on a socket; (what came back, seconds it took)."""
    host, port = server.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def test_a_declared_oversized_body_is_refused_unread(server: Server, engine: Engine) -> None:
    before = counts(engine)
    head = ("POST /request HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {50 * 2**20}\r\n\r\n")
    answer, seconds = raw_exchange(server, head, b"--xyz\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert seconds < 5  # answered without waiting for the 50 MB it was promised
    chunk = b"a=" + b"b" * 40_000
    chunks = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3))
    head = ("POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    answer, _ = raw_exchange(server, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert counts(engine) == before
    assert server.process.poll() is None


def test_a_body_growing_past_the_limit_is_refused(client: TestClient, engine: Engine) -> None:
    token = csrf_of(client.get("/login").text)
    before = counts(engine)

    def growing() -> Iterator[bytes]:
        yield f"csrf={token}&name={ADMIN}&password=".encode()
        for _ in range(100):
            yield b"x" * 4096

    response = client.post("/login", content=growing(),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413
    declared = client.post("/login", content=b"x" * (65 * 2**10), headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert declared.status_code == 413
    assert counts(engine) == before


def test_an_image_growing_past_the_body_limit(ledger: Ledger, staff: Staff,
                                              engine: Engine) -> None:
    config = ServeConfig(ledger, Limits(body=200_000))
    with TestClient(create_app(config), base_url="http://testserver") as client:
        token = csrf_of(client.get("/request").text)
        before = counts(engine)

        def growing() -> Iterator[bytes]:
            yield (f'--b\r\ncontent-disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'
                   '--b\r\ncontent-disposition: form-data; name="image"; filename="a.png"\r\n'
                   'content-type: image/png\r\n\r\n').encode()
            for _ in range(100):
                yield b"\x89" * 4096

        response = client.post("/request", content=growing(), headers={
            "content-type": "multipart/form-data; boundary=b"})
        assert response.status_code == 413
        assert counts(engine) == before


# ---- images


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A black 1-bit PNG of ``width`` x ``height`` pixels: 400 million pixels in a few kB."""
    def part(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + part(b"IHDR", header) + part(b"IDAT", pixels)
            + part(b"IEND", b""))


def post_intake(client: TestClient, image: bytes) -> tuple[int, str]:
    data = {"csrf": csrf_of(client.get("/request").text), "name": "Jane Roe",
            "email": "jane@example.org", "kind": "safety",
            "urls": "https://img.example.com/kept.jpg", "caption_term": "",
            "statement": "The statement I typed.", "consent": "yes"}
    response = client.post("/request", data=data,
                           files={"image": ("photo.png", image, "image/png")})
    return response.status_code, response.text


def test_an_image_over_the_pixel_limit(client: TestClient, engine: Engine) -> None:
    image = huge_png()
    assert len(image) < 2**20
    before = counts(engine)
    status, html = post_intake(client, image)
    assert status == 400
    assert 'id="image-error"' in html and "more than 40,000,000 pixels" in html
    assert counts(engine) == before


def test_a_file_that_is_not_an_image(client: TestClient, engine: Engine) -> None:
    before = counts(engine)
    status, html = post_intake(client, b"%PDF-1.4 this is not an image at all\n" * 20)
    assert status == 400
    assert 'id="image-error"' in html and "not an image" in html
    assert 'value="Jane Roe"' in html and 'value="jane@example.org"' in html
    assert ">https://img.example.com/kept.jpg</textarea>" in html
    assert ">The statement I typed.</textarea>" in html
    assert '<option value="safety" selected>' in html
    assert counts(engine) == before


def test_the_image_never_reaches_a_disk(client: TestClient, ledger: Ledger,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    image = photo(1, size=1000)
    assert len(image) > 2**20 * 2.5
    folder = tmp_path / "temporary"
    folder.mkdir()
    made: list[str] = []

    def recorded(name: str) -> None:
        original = getattr(tempfile, name)

        def spy(*args: object, **kwargs: object) -> object:
            made.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(tempfile, name, spy)

    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        recorded(name)
    status, html = post_intake(client, image)
    assert status == 200 and 'id="reference-code"' in html
    assert list(folder.iterdir()) == [] and made == []
    types = [item["type"] for item in ledger.show(1, items=True).items]
    assert sorted(types) == ["md5", "pdq", "sha256", "url"]


# ---- the status page


def test_the_status_page_does_not_tell_whether_a_code_exists(client: TestClient) -> None:
    code = file_request(client, email="jane@example.org")
    other = "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ"  # well-formed, and no request's (1 in 2**100)
    assert code != other
    answers = []
    for typed_code, email in ((other, "jane@example.org"), (code, "john@example.org"),
                              ("nonsense!", "jane@example.org"), ("nonsense!", "john@example.org")):
        token = csrf_of(client.get("/status").text)
        response = client.post("/status", data={"csrf": token, "code": typed_code,
                                                "email": email})
        body = response.text.replace(f'value="{typed_code}"', 'value="CODE"')
        body = body.replace(f'value="{email}"', 'value="EMAIL"')
        answers.append((response.status_code, body, sorted(
            k for k in response.headers if k not in ("content-length", "set-cookie"))))
    assert answers[0][0] == 404
    assert all(answer == answers[0] for answer in answers)
    token = csrf_of(client.get("/status").text)
    found = client.post("/status", data={"csrf": token, "code": code.lower(),
                                         "email": "jane@example.org"})
    assert found.status_code == 200 and 'id="status">received<' in found.text
