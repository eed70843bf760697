"""Red-team tests of ``scrub serve``, continued (tests/web/test_web_redteam.py): what a
database writer can do to sessions and receipts, cookies over TLS, bidirectional text, and the
rate limiter's memory. Real application, SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.testclient import TestClient

from scrub.ledger.service import Ledger
from scrub.ledger.staff import Staff
from scrub.web.app import create_app
from scrub.web.config import ServeConfig
from tests.security.ledger_setup import tamper
from tests.web.conftest import (
    ADMIN,
    PASSWORD,
    REVIEWER,
    csrf_of,
    file_request,
)

# ---- a database writer may deny, not forge


def test_a_session_row_moved_to_another_account_or_expired_is_refused(
        reviewer: TestClient, engine: Engine) -> None:
    assert reviewer.get("/console/users").status_code == 403
    tamper(engine, "UPDATE staff_sessions SET user_id = (SELECT id FROM staff_users "
           "WHERE name = :n)", n=ADMIN)
    assert reviewer.get("/console/users", follow_redirects=False).status_code == 303
    tamper(engine, "UPDATE staff_sessions SET user_id = (SELECT id FROM staff_users "
           "WHERE name = :n)", n=REVIEWER)
    assert reviewer.get("/console").status_code == 200  # back as it was: it works again
    tamper(engine, "UPDATE staff_sessions SET expires_at = created_at")
    assert reviewer.get("/console", follow_redirects=False).headers["location"] == "/login"


def test_a_receipt_row_pointed_at_another_request_opens_nothing(
        client: TestClient, engine: Engine) -> None:
    code = file_request(client, email="first@example.org")
    file_request(client, email="second@example.org", urls="https://img.example.com/z.jpg",
                 caption_term="")

    def status() -> int:
        token = csrf_of(client.get("/status").text)
        return client.post("/status", data={"csrf": token, "code": code,
                                            "email": "first@example.org"}).status_code

    assert status() == 200
    tamper(engine, "UPDATE intake_receipts SET request_id = 2 WHERE request_id = 1")
    assert status() == 404


# ---- cookies over TLS, bidi text, the rate limiter's memory


def test_cookies_are_secure_and_hsts_is_sent_over_tls(ledger: Ledger, staff: Staff) -> None:
    with TestClient(create_app(ServeConfig(ledger)), base_url="https://testserver") as tls:
        page = tls.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert "secure" in page.headers["set-cookie"].lower()
        signed = tls.post("/login", data={"csrf": csrf_of(page.text), "name": ADMIN,
                                          "password": PASSWORD[ADMIN]}, follow_redirects=False)
        cookie = signed.headers["set-cookie"].lower()
        assert signed.status_code == 303
        for flag in ("secure", "httponly", "samesite=strict", "path=/"):
            assert flag in cookie, flag
    with TestClient(create_app(ServeConfig(ledger)), base_url="http://testserver") as plain:
        assert "strict-transport-security" not in plain.get("/login").headers


def test_bidi_overrides_in_a_reason_are_shown_inert(client: TestClient, admin: TestClient
                                                    ) -> None:
    file_request(client)
    token = csrf_of(admin.get("/console/requests/1").text)
    reason = "invoice\u202egnp.exe\u2066x\u200f"
    response = admin.post("/console/requests/1/extend",
                          data={"csrf": token, "days": "10", "reason": reason})
    assert response.status_code == 200
    for char in "\u202e\u2066\u200f":
        assert char not in response.text
    assert "invoice\ufffdgnp.exe" in response.text


def test_the_rate_limiter_forgets_the_oldest_addresses() -> None:
    from scrub.web.guards import RateLimit

    limit = RateLimit(1, 600, keys=50)
    for number in range(5_000):
        assert limit.allow(f"2001:db8::{number:x}")
    assert len(limit._seen) == 50
    assert not limit.allow("2001:db8::1387")  # a recent one is still counted
