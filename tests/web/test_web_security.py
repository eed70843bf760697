"""Security tests of ``scrub serve`` (issue 25), as an attacker would try them: forged forms,
payloads in every field, a reviewer reaching for admin pages, secrets in logs, edited account
rows and malformed addresses. Each checks the refusal and that nothing was recorded.

Body limits, rate limits, the lockout and the status page are in test_web_security_limits.py."""

from __future__ import annotations

import re

import httpx
import markupsafe
import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from scrub.ledger.receipts import Intake
from scrub.ledger.service import Ledger
from scrub.ledger.specs import normalize_item
from scrub.ledger.staff import Staff
from tests.security.ledger_setup import tamper, text_of_database
from tests.web.conftest import (
    ADMIN,
    PASSWORD,
    REVIEWER,
    Server,
    csrf_of,
    file_request,
    sign_in,
)

PAYLOADS = ["'; DROP TABLE requests; --", "<script>alert(1)</script>",
            '"><img src=x onerror=alert(1)>', "{{7*7}}"]


def counts(engine: Engine) -> dict[str, int]:
    """Rows of the tables an accepted form would add to."""
    tables = ("events", "requests", "request_items", "intake_receipts", "staff_users",
              "staff_sessions")
    with engine.connect() as connection:
        return {t: int(connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in tables}


def actions_of(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [str(a) for a in connection.execute(
            text("SELECT action FROM events ORDER BY seq")).scalars()]


# ---- CSRF


def forms(request_id: int) -> list[tuple[str, dict[str, str]]]:
    """Every kind of form the site takes, filled in as a legitimate user would."""
    return [
        ("/request", {"name": "Mallory", "email": "m@example.org", "kind": "gdpr_erasure",
                      "urls": "https://img.example.com/m.jpg", "caption_term": "",
                      "statement": "forged", "consent": "yes"}),
        ("/status", {"code": "0000-0000-0000-0000-0000", "email": "m@example.org"}),
        ("/login", {"name": ADMIN, "password": PASSWORD[ADMIN]}),
        (f"/console/requests/{request_id}/verify", {"reason": "forged"}),
        ("/logout", {}),
        ("/console/users", {"name": "mallory", "role": "admin",
                            "password": "mallory's long passphrase"}),
    ]


def test_forms_without_a_valid_csrf_token_are_refused(
        admin: TestClient, reviewer: TestClient, engine: Engine) -> None:
    request_id = 1
    assert file_request(admin) and admin.get(f"/console/requests/{request_id}").status_code == 200
    bobs_token = csrf_of(reviewer.get(f"/console/requests/{request_id}").text)
    alices_token = csrf_of(admin.get(f"/console/requests/{request_id}").text)
    assert bobs_token != alices_token
    before = counts(engine)
    for path, data in forms(request_id):
        for token in (None, "0" * 64, "", bobs_token):
            posted = dict(data) if token is None else {**data, "csrf": token}
            response = admin.post(path, data=posted, follow_redirects=False)
            assert response.status_code == 403, (path, token, response.status_code)
            assert "did not come from this site" in response.text
    assert counts(engine) == before
    assert admin.get("/console").status_code == 200  # the forged sign-out ended nothing
    assert reviewer.get("/console").status_code == 200
    assert admin.post(f"/console/requests/{request_id}/verify",
                      data={"csrf": alices_token}, follow_redirects=False).status_code == 303


def test_a_token_without_its_cookie_is_refused(admin: TestClient, engine: Engine) -> None:
    token = csrf_of(admin.get("/console").text)
    before = counts(engine)
    admin.cookies.delete("scrub_csrf")
    response = admin.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 403
    assert counts(engine) == before


# ---- payloads


def check_shown_escaped(html: str, payload: str) -> None:
    escaped = str(markupsafe.escape(payload))
    assert escaped in html, payload
    if escaped != payload:
        assert payload not in html, payload


def test_payloads_are_stored_literally_and_shown_escaped(
        admin: TestClient, reviewer: TestClient, ledger: Ledger, engine: Engine) -> None:
    for number, payload in enumerate(PAYLOADS):
        url = f"https://img.example.com/{number}/{payload}"
        email = f"x{number}'\"<b>--@example.org"
        code = file_request(admin, name=payload, email=email, statement=payload,
                            caption_term=payload, urls=url)
        assert code
        request_id = number + 1
        view = ledger.show(request_id, items=True, identity=True)
        assert view.requester == {"name": payload, "email": email}
        values = {(i["type"], i["value"]) for i in view.items}
        canonical = normalize_item({"type": "url", "value": url}, "x")
        assert canonical in values
        assert ("caption_term", payload.lower()) in values
        assert [s["statement"] for s in Intake(ledger).statements(request_id)] == [payload]
        html = admin.get(f"/console/requests/{request_id}").text
        for shown in (payload, email, payload.lower(), canonical[1]):
            check_shown_escaped(html, shown)
        seen_by_reviewer = reviewer.get(f"/console/requests/{request_id}").text
        check_shown_escaped(seen_by_reviewer, payload.lower())
        assert str(markupsafe.escape(email)) not in seen_by_reviewer
    assert ledger.verify().problem is None
    assert counts(engine)["requests"] == len(PAYLOADS)


@pytest.mark.parametrize("payload", PAYLOADS[:2])
def test_an_extend_reason_with_a_payload(admin: TestClient, ledger: Ledger,
                                         payload: str) -> None:
    file_request(admin)
    token = csrf_of(admin.get("/console/requests/1").text)
    response = admin.post("/console/requests/1/extend",
                          data={"csrf": token, "days": "10", "reason": payload},
                          follow_redirects=False)
    assert response.status_code == 303
    assert ledger.show(1).extension_reason == payload
    assert ledger.show(1).history[-1]["reason"] == payload
    check_shown_escaped(admin.get("/console/requests/1").text, payload)


# ---- roles


def test_a_reviewer_cannot_reach_admin_pages(admin: TestClient, reviewer: TestClient,
                                             engine: Engine) -> None:
    file_request(admin)
    token = csrf_of(reviewer.get("/console").text)
    before = counts(engine)
    for path in ("/console/users", "/console/ledger",
                 "/console/requests/1/letter?format=html&identity=1",
                 "/console/requests/1/letter?format=text&identity=1"):
        assert reviewer.get(path).status_code == 403, path
    added = reviewer.post("/console/users", data={
        "csrf": token, "name": "mallory", "role": "admin",
        "password": "mallory's long passphrase"}, follow_redirects=False)
    assert added.status_code == 403
    unlocked = reviewer.post(f"/console/users/{REVIEWER}/unlock", data={"csrf": token},
                             follow_redirects=False)
    assert unlocked.status_code == 403
    assert counts(engine) == before
    page = reviewer.get("/console/requests/1")
    assert page.status_code == 200
    assert "Jane Roe" not in page.text and "jane@example.org" not in page.text
    assert "identity=1" not in page.text
    letter = reviewer.get("/console/requests/1/letter?format=text")
    assert letter.status_code == 200 and "Jane Roe" not in letter.text
    assert "Jane Roe" in admin.get("/console/requests/1").text  # the admin does see it


CONSOLE_GETS = ["/console", "/console?status=received", "/console/requests/1",
                "/console/requests/1/letter", "/console/users", "/console/ledger"]
CONSOLE_POSTS = ["/logout", "/console/requests/1/verify", "/console/requests/1/extend",
                 "/console/users", "/console/users/alice/unlock"]


def test_anonymous_users_are_sent_to_sign_in(client: TestClient, engine: Engine) -> None:
    file_request(client)
    token = csrf_of(client.get("/login").text)
    before = counts(engine)
    for path in CONSOLE_GETS:
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers.get("location")) == (303, "/login"), path
    for path in CONSOLE_POSTS:
        response = client.post(path, data={"csrf": token, "reason": "x", "days": "5"},
                               follow_redirects=False)
        assert (response.status_code, response.headers.get("location")) == (303, "/login"), path
    client.cookies.set("scrub_session", "forged.0123")
    assert client.get("/console", follow_redirects=False).status_code == 303
    assert counts(engine) == before


# ---- secrets in logs and in the database


def test_no_identity_password_or_token_in_logs_or_database(server: Server,
                                                           engine: Engine) -> None:
    secrets = {"name": "Quintessa Marblewood", "email": "quintessa.k9x2@example.org",
               "statement": "Statement-marker-XYZZY-9931 about my photos"}
    wrong_password = "typed-into-the-name-field-7Q"
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=True) as browser:
        token = csrf_of(browser.get("/request").text)
        filed = browser.post("/request", data={
            "csrf": token, "kind": "gdpr_erasure", "consent": "yes", "caption_term": "",
            "urls": "https://img.example.com/q.jpg", **secrets})
        assert filed.status_code == 200 and 'id="reference-code"' in filed.text
        token = csrf_of(browser.get("/login").text)
        failed = browser.post("/login", data={"csrf": token, "name": wrong_password,
                                              "password": PASSWORD[ADMIN]})
        assert failed.status_code == 401
        signed = browser.post("/login", data={"csrf": token, "name": ADMIN,
                                              "password": PASSWORD[ADMIN]})
        assert signed.status_code == 200 and signed.url.path == "/console"
        session_cookie = browser.cookies["scrub_session"]
        page = browser.get("/console/requests/1")
        assert secrets["name"] in page.text  # the admin sees it: it was recorded
        token = csrf_of(page.text)
        for action, data in (("verify", {}), ("extend", {"days": "10", "reason": "busy"})):
            done = browser.post(f"/console/requests/1/{action}", data={"csrf": token, **data})
            assert (done.status_code, done.url.path) == (200, "/console/requests/1"), action
        assert browser.post("/logout", data={"csrf": token}).url.path == "/login"
    logged, stored = server.output(), text_of_database(engine)
    assert "POST /login" in logged  # the log is the server's
    session_token = session_cookie.rpartition(".")[0]
    for secret in [*secrets.values(), wrong_password, PASSWORD[ADMIN], PASSWORD[REVIEWER],
                   session_cookie, session_token]:
        assert secret not in logged, secret
        assert secret not in stored, secret
    assert re.search("created sign_in_failed sign_in verify extend sign_out$",
                     " ".join(actions_of(engine)))


# ---- edited account rows


@pytest.mark.parametrize("edit", ["role", "hash"])
def test_an_edited_staff_row_no_longer_signs_in(client: TestClient, reviewer: TestClient,
                                                staff: Staff, engine: Engine,
                                                edit: str) -> None:
    assert reviewer.get("/console", follow_redirects=False).status_code == 200
    if edit == "role":
        tamper(engine, "UPDATE staff_users SET role = 'admin' WHERE name = :n", n=REVIEWER)
        password = PASSWORD[REVIEWER]
    else:
        tamper(engine, "UPDATE staff_users SET password_hash = (SELECT password_hash FROM "
               "(SELECT password_hash FROM staff_users WHERE name = :a) AS h) WHERE name = :n",
               a=ADMIN, n=REVIEWER)
        password = PASSWORD[ADMIN]
    intact = {u["name"]: u["intact"] for u in staff.users()}
    assert intact == {ADMIN: True, REVIEWER: False}
    assert reviewer.get("/console", follow_redirects=False).status_code == 303  # session ends
    assert reviewer.get("/console/users", follow_redirects=False).status_code == 303
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "name": REVIEWER,
                                           "password": password}, follow_redirects=False)
    assert response.status_code == 401
    assert "scrub_session" not in response.headers.get("set-cookie", "")
    assert actions_of(engine)[-1] == "sign_in_failed"
    assert sign_in(client, ADMIN).get("/console").status_code == 200


# ---- malformed addresses


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "not a url", "http://"])
def test_a_malformed_url_names_its_line_and_keeps_the_form(client: TestClient, engine: Engine,
                                                           bad: str) -> None:
    typed = f"https://img.example.com/good.jpg\n{bad}\nhttps://img.example.com/c.jpg"
    data = {"csrf": csrf_of(client.get("/request").text), "name": "Jane <Roe>",
            "email": "jane@example.org", "kind": "copyright", "urls": typed,
            "caption_term": "Jane Roe", "statement": "Mine & only mine.", "consent": "yes"}
    before = counts(engine)
    response = client.post("/request", data=data)
    assert response.status_code == 400
    error = re.search(r'id="urls-error"[^>]*>([^<]+)<', response.text)
    assert error is not None
    assert error.group(1) == "line 2 is not a web address (http:// or https://)"
    html = response.text
    assert f">{markupsafe.escape(typed)}</textarea>" in html
    assert 'value="Jane &lt;Roe&gt;"' in html and 'value="Jane Roe"' in html
    assert ">Mine &amp; only mine.</textarea>" in html
    assert re.search(r'<option value="copyright"\s+selected>', html)
    assert counts(engine) == before
