"""Red-team tests of ``scrub serve``: attacks on the promises of SECURITY.md's "Web console"
section that tests/web/test_web_security*.py do not already try. Each is run against the real
application (the test client, or ``scrub serve`` as a process) on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import re
import time

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from scrub.ledger.receipts import Intake
from scrub.ledger.service import Ledger
from scrub.ledger.staff import LOCK_AFTER, SignInError, Staff
from scrub.web.app import create_app
from scrub.web.config import Limits, ServeConfig
from scrub.web.guards import Cookies
from tests.security.ledger_setup import tamper, text_of_database
from tests.web.conftest import (
    ADMIN,
    PASSWORD,
    REVIEWER,
    Server,
    csrf_of,
    file_request,
    photo,
    sign_in,
)
from tests.web.test_web_security import actions_of, counts
from tests.web.test_web_security_limits import raw_exchange

# ---- names cannot be probed by timing


def _sign_in_seconds(staff: Staff, name: str, tries: int = 5) -> float:
    """The fastest of ``tries`` failed sign-ins as ``name`` (what an attacker measures)."""
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        with pytest.raises(SignInError):
            staff.sign_in(name, "not the password, sorry")
        best = min(best, time.perf_counter() - started)
    return best


def test_a_locked_account_costs_the_same_argon2_work_as_an_unknown_name(
        staff: Staff, engine: Engine) -> None:
    # An attacker sends 20 wrong passwords for a name, then times one more: a locked account
    # must not answer faster than a name that is no account (else the name exists).
    for _ in range(LOCK_AFTER):
        with pytest.raises(SignInError):
            staff.sign_in(REVIEWER, "wrong password number n")
    assert "account_locked" in actions_of(engine)
    unknown = _sign_in_seconds(staff, "nobody-here")
    locked = _sign_in_seconds(staff, REVIEWER)
    assert locked > 0.5 * unknown, (locked, unknown)
    tamper(engine, "UPDATE staff_users SET role = 'admin' WHERE name = :n", n=REVIEWER)
    tamper(engine, "UPDATE staff_users SET locked_until = NULL WHERE name = :n", n=REVIEWER)
    altered = _sign_in_seconds(staff, REVIEWER)
    assert altered > 0.5 * unknown, (altered, unknown)


# ---- sessions


def test_a_session_cookie_is_dead_after_sign_out_and_after_a_new_password(
        client: TestClient, staff: Staff) -> None:
    sign_in(client, ADMIN)
    old = client.cookies["scrub_session"]
    client.post("/logout", data={"csrf": csrf_of(client.get("/console").text)})
    client.cookies.set("scrub_session", old)
    assert client.get("/console", follow_redirects=False).headers["location"] == "/login"
    client.cookies.clear()
    sign_in(client, REVIEWER)
    assert client.get("/console").status_code == 200
    staff.add_user(REVIEWER, "reviewer", "a brand new passphrase", "setup", replace=True)
    assert client.get("/console", follow_redirects=False).headers["location"] == "/login"
    client.cookies.clear()
    sign_in(client, REVIEWER, "a brand new passphrase")
    tamper(staff.ledger.engine, "UPDATE staff_users SET name = 'bobby' WHERE name = :n",
           n=REVIEWER)  # a renamed row no longer checks: its session ends
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_forged_session_cookies_are_refused(client: TestClient, ledger: Ledger) -> None:
    sign_in(client, ADMIN)
    value = client.cookies["scrub_session"]
    token, _, mac = value.rpartition(".")
    seal = ledger.require_seal()
    other_key = Cookies(b"k" * 32, b"c" * 32)
    # what a reader of the database holds (the token's digest) signed with the right key
    with ledger.engine.connect() as connection:
        digest = connection.execute(text("SELECT token_digest FROM staff_sessions")).scalar()
    right_key = Cookies(seal.derived("web-session-cookie"), seal.derived("web-csrf"))
    flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")  # never the signature itself
    for forged in (token, f"{token}.", f"{token}.{flipped}", f"{token}x.{mac}",
                   other_key.session_value(token), right_key.session_value(str(digest)),
                   f"{token}.{mac}.{mac}", f".{mac}", mac.upper(), ""):
        client.cookies.clear()
        client.cookies.set("scrub_session", forged)
        response = client.get("/console", follow_redirects=False)
        assert response.status_code == 303, forged
    client.cookies.clear()
    client.cookies.set("scrub_session", value)
    assert client.get("/console").status_code == 200


# ---- CSRF


def test_a_valid_token_in_another_body_type_or_the_url_is_refused(
        admin: TestClient, engine: Engine) -> None:
    file_request(admin)
    token = csrf_of(admin.get("/console/requests/1").text)
    before = counts(engine)
    path = "/console/requests/1/verify"
    for kind, body in (("text/plain", f"csrf={token}"),
                       ("application/json", f'{{"csrf": "{token}"}}'),
                       ("multipart/form-data", f"csrf={token}"),
                       ("application/x-www-form-urlencoded; charset=utf-7", "csrf=+AAA-")):
        response = admin.post(path, content=body, headers={"content-type": kind},
                              follow_redirects=False)
        assert response.status_code in (400, 403), (kind, response.status_code)
    response = admin.post(f"{path}?csrf={token}", data={}, follow_redirects=False)
    assert response.status_code == 403
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = admin.request(method, path, follow_redirects=False)
        assert response.status_code == 405, method
    response = admin.post(path, data={"csrf": token, "_method": "GET"},
                          headers={"x-http-method-override": "GET"}, follow_redirects=False)
    assert response.status_code == 303  # an override header changes nothing: a post is a post
    assert counts(engine)["events"] == before["events"] + 1


def test_a_tossed_csrf_cookie_without_the_session_does_not_carry_a_console_form(
        admin: TestClient, ledger: Ledger, engine: Engine) -> None:
    # Mallory signs nothing in; she takes an anonymous seed and token of her own and plants
    # the seed in Alice's browser: the token is bound to a session she does not have.
    with TestClient(create_app(ServeConfig(ledger)), base_url="http://testserver") as mallory:
        seed_page = mallory.get("/login")
        mallory_seed, mallory_token = mallory.cookies["scrub_csrf"], csrf_of(seed_page.text)
    file_request(admin)
    before = counts(engine)
    admin.cookies.set("scrub_csrf", mallory_seed)
    response = admin.post("/console/requests/1/verify", data={"csrf": mallory_token},
                          follow_redirects=False)
    assert response.status_code == 403
    assert counts(engine) == before


# ---- authorization


def test_path_tricks_and_unknown_actions(admin: TestClient, reviewer: TestClient,
                                         engine: Engine) -> None:
    file_request(admin, caption_term="Sunset Beach")
    admin_token = csrf_of(admin.get("/console/requests/1").text)
    bob_token = csrf_of(reviewer.get("/console/requests/1").text)
    before = counts(engine)
    for path in ("/console/users/..%2falice/unlock", "/console/users/%2e%2e/unlock",
                 "/console/users/ALICE/unlock", "/console/requests/1/apply",
                 "/console/requests/1/letter", "/console/requests/1/verify%00",
                 "/console/requests/-1/verify", "/console/requests/1/Verify"):
        response = admin.post(path, data={"csrf": admin_token}, follow_redirects=False)
        assert response.status_code in (404, 405), (path, response.status_code)
    response = reviewer.post(f"/console/users/{REVIEWER}/unlock", data={"csrf": bob_token})
    assert response.status_code == 403
    assert counts(engine) == before
    for fmt in ("text", "html"):
        letter = reviewer.get(f"/console/requests/1/letter?format={fmt}&identity=0")
        assert letter.status_code == 200
        assert "jane@example.org" not in letter.text
        assert "Jane Roe" not in letter.text
    for query in ("identity=1", "identity=1&identity=0", "identity=true&identity=1"):
        refused = reviewer.get(f"/console/requests/1/letter?{query}")
        assert refused.status_code in (200, 403)
        assert "jane@example.org" not in refused.text, query
    page = reviewer.get("/console/requests/1?identity=1&items=1")
    assert "jane@example.org" not in page.text


# ---- malformed bodies


MALFORMED = [
    ("multipart/form-data", b"csrf=x"),  # no boundary
    ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx"),
    ("multipart/form-data; boundary=zz; charset=base64",
     b"--zz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n\xff\xfe\r\n--zz--\r\n"),
    ("application/x-www-form-urlencoded", b"name=%ff%fe&email=%C0%AF&csrf=%"),
    ("application/x-www-form-urlencoded", b"&".join([b"a=b"] * 5_000)),
    ("application/x-www-form-urlencoded", b"name=" + b"x" * 40_000),
    ("multipart/form-data; boundary=zz",
     b"".join(b"--zz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n"
              b"\r\nx\r\n" for _ in range(3)) + b"--zz--\r\n"),
]


@pytest.mark.parametrize("path", ["/request", "/status", "/login"])
def test_malformed_bodies_are_refused_without_an_internal_error(
        client: TestClient, engine: Engine, path: str) -> None:
    client.get(path)
    before = counts(engine)
    for kind, body in MALFORMED:
        response = client.post(path, content=body, headers={"content-type": kind})
        assert 400 <= response.status_code < 500, (kind, body[:40], response.status_code)
    assert counts(engine) == before


def _post_image(client: TestClient, data: bytes, name: str, kind: str) -> httpx.Response:
    form = {"name": "Jane Roe", "email": "jane@example.org", "kind": "gdpr_erasure",
            "urls": "", "caption_term": "", "statement": "", "consent": "yes",
            "csrf": csrf_of(client.get("/request").text)}
    return client.post("/request", data=form, files={"image": (name, data, kind)})


def _gif_frames(frames: int) -> bytes:
    images = [Image.new("RGB", (64, 64), (i % 256, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:])
    return out.getvalue()


def test_odd_images(client: TestClient, engine: Engine) -> None:
    before = counts(engine)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for data, name, kind in ((b"", "empty.png", "image/png"), (svg, "x.svg", "image/svg+xml"),
                             (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "trunc.png", "image/png")):
        response = _post_image(client, data, name, kind)
        assert response.status_code == 400, name
        assert "<script>alert(1)</script>" not in response.text
    assert counts(engine) == before
    many = _post_image(client, _gif_frames(300), 'x"\r\nSet-Cookie: a=b.gif', "image/gif")
    assert many.status_code == 200 and "set-cookie: a=b" not in str(many.headers).lower()
    assert _post_image(client, photo(3), "../../etc/passwd", "image/png").status_code == 200


# ---- the real server: lying lengths, spoofed addresses, internal errors


def _raw(server: Server, request: bytes) -> bytes:
    return raw_exchange(server, "", request)[0]


def test_lying_content_lengths(server: Server, engine: Engine) -> None:
    before = counts(engine)
    body = b"name=alice&password=x&csrf=y"
    for lengths in (["-1"], ["abc"], ["10", "20"], [" 5"], ["+5"], ["0x10"], ["1e3"]):
        head = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: " \
               b"application/x-www-form-urlencoded\r\n"
        head += b"".join(f"Content-Length: {n}\r\n".encode() for n in lengths)
        answer = _raw(server, head + b"\r\n" + body)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 400
        assert 400 <= status < 500 or not answer, (lengths, answer[:100])
    assert counts(engine) == before
    assert server.process.poll() is None
    assert httpx.get(server.url + "/login", timeout=10).status_code == 200


def test_a_forwarded_for_header_is_not_the_rate_limits_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        token = csrf_of(browser.get("/login").text)
        statuses = []
        for attempt in range(Limits().sign_in_per_10_minutes + 1):
            spoof = {"x-forwarded-for": f"10.0.{attempt}.1", "x-real-ip": f"10.1.{attempt}.1",
                     "forwarded": f"for=10.2.{attempt}.1"}
            statuses.append(browser.post("/login", headers=spoof, data={
                "csrf": token, "name": f"nobody{attempt}", "password": "x" * 12}).status_code)
    assert statuses[:-1] == [401] * Limits().sign_in_per_10_minutes
    assert statuses[-1] == 429
    assert "10.0." not in server.output()


def test_an_internal_error_is_logged_by_its_type_only(server: Server, engine: Engine) -> None:
    marker = {"name": "Zebulon Quartzfield", "email": "zeb.q7@example.org",
              "statement": "Statement-marker-PLUGH-4471"}
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        token = csrf_of(browser.get("/request").text)
        first = browser.post("/request", data={
            "csrf": token, "kind": "gdpr_erasure", "consent": "yes", "caption_term": "",
            "urls": "https://img.example.com/z1.jpg", **marker})
        code = re.search(r'id="reference-code">([^<]+)<', first.text)
        assert code is not None
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE intake_receipts"))
        failed = browser.post("/request", data={
            "csrf": token, "kind": "gdpr_erasure", "consent": "yes", "caption_term": "",
            "urls": "https://img.example.com/z2.jpg", **marker})
        assert failed.status_code == 500
        assert "intake_receipts" not in failed.text and marker["email"] not in failed.text
        status = browser.post("/status", data={"csrf": token, "code": code.group(1),
                                               "email": marker["email"]})
        assert status.status_code == 500
    time.sleep(0.5)
    logged = server.output()
    assert re.search(r"internal error \(\w+\) on POST /request", logged), logged[-2000:]
    for secret in [*marker.values(), code.group(1), token, "intake_receipts", "INSERT",
                   "Traceback"]:
        assert secret not in logged, secret
    assert code.group(1) not in text_of_database(engine)
    assert code.group(1).replace("-", "") not in text_of_database(engine)


# ---- the ledger after an attack


def test_the_ledger_verifies_after_an_attack_mix(client: TestClient, admin: TestClient,
                                                 ledger: Ledger, staff: Staff) -> None:
    file_request(client, caption_term="'; DROP TABLE events; --", image=photo(5))
    file_request(client, urls="https://img.example.com/a.jpg\nhttps://img.example.com/c.jpg")
    file_request(client, email="someone.else@example.org")
    for _ in range(LOCK_AFTER + 1):
        with pytest.raises(SignInError):
            staff.sign_in(REVIEWER, "guessing guessing")
    with pytest.raises(SignInError):
        staff.sign_in("' OR 1=1 --", "guessing guessing")
    token = csrf_of(admin.get("/console/users").text)
    assert admin.post(f"/console/users/{REVIEWER}/unlock", data={"csrf": token}).status_code \
        == 200
    for action, data in (("verify", {}), ("extend", {"days": "30", "reason": "<b>busy</b>"}),
                         ("extend", {"days": "9999999999999", "reason": "x"}),
                         ("extend", {"days": "-5", "reason": "x"}), ("close", {}),
                         ("reject", {}), ("withdraw", {"reason": "\u202egnp.exe"})):
        response = admin.post(f"/console/requests/1/{action}", data={"csrf": token, **data})
        assert response.status_code in (200, 409), action
    report = ledger.verify()
    assert report.ok, report
    with ledger.engine.connect() as connection:
        actors = set(connection.execute(text("SELECT DISTINCT actor FROM events")).scalars())
    assert actors <= {"setup", "web intake", "console", ADMIN, REVIEWER}, actors
    assert PASSWORD[REVIEWER] not in text_of_database(ledger.engine)


# ---- what a requester learns about someone else's requests


def test_filing_with_someone_elses_email_tells_nothing_about_their_requests(
        client: TestClient, ledger: Ledger) -> None:
    """Web filings never join an earlier request of the same email (it is not verified): the
    receipt says the same whatever the victim asked, its code opens only the new request, and
    the victim's request keeps its own items and statement."""
    file_request(client, email="victim@example.org",
                 urls="https://img.example.com/private.jpg")
    client.cookies.clear()
    token = csrf_of(client.get("/request").text)
    guessed = client.post("/request", data={
        "csrf": token, "name": "Mallory", "email": "victim@example.org", "kind": "other",
        "urls": "https://img.example.com/private.jpg", "caption_term": "", "statement": "",
        "consent": "yes"})
    missed = client.post("/request", data={
        "csrf": token, "name": "Mallory", "email": "victim@example.org", "kind": "other",
        "urls": "https://img.example.com/not-theirs.jpg", "caption_term": "", "statement": "",
        "consent": "yes"})
    assert guessed.status_code == missed.status_code == 200

    def shape(html: str) -> str:
        return re.sub(r'id="reference-code">[^<]+<', "", html)

    assert shape(guessed.text) == shape(missed.text)
    victim = ledger.show(1, items=True)
    assert [i["value"] for i in victim.items] == ["https://img.example.com/private.jpg"]
    assert len(Intake(ledger).statements(1)) == 1
    code = re.search(r'id="reference-code">([^<]+)<', guessed.text).group(1)  # type: ignore
    opened = Intake(ledger).status(code, "victim@example.org")
    assert opened is not None and opened.id != 1
    assert [v.id for v in ledger.list()] == [1, 2, 3]


# ---- the sign-in page tells nothing either


def _failed_sign_in(client: TestClient, name: str) -> tuple[int, str, str]:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "name": name,
                                           "password": "not the password, sorry"})
    body = response.text.replace(f'value="{name}"', 'value="NAME"').replace(token, "TOKEN")
    cookies = sorted(k for k in response.headers if k.lower() == "set-cookie")
    return response.status_code, body, repr(cookies)


def test_the_sign_in_page_answers_a_known_a_locked_and_an_unknown_name_alike(
        client: TestClient, staff: Staff) -> None:
    for _ in range(LOCK_AFTER):
        with pytest.raises(SignInError):
            staff.sign_in(REVIEWER, "wrong password number n")
    known, locked, unknown = (_failed_sign_in(client, name)
                              for name in (ADMIN, REVIEWER, "nobody"))
    assert known == locked == unknown
    assert known[0] == 401
    assert client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                       "name": REVIEWER, "password": PASSWORD[REVIEWER]}
                       ).status_code == 401  # the right password does not open a lock


def test_the_letter_shows_payloads_as_text(client: TestClient, admin: TestClient) -> None:
    file_request(client, caption_term="<script>alert(1)</script>",
                 urls='https://img.example.com/"><img src=x onerror=alert(1)>.jpg')
    letter = admin.get("/console/requests/1/letter?format=html&identity=1")
    assert letter.status_code == 200
    assert "<script>alert(1)" not in letter.text and "<img src=x" not in letter.text
    assert "script-src" not in letter.headers["content-security-policy"]
    assert letter.headers["content-disposition"].startswith("attachment;")
    assert letter.headers["x-content-type-options"] == "nosniff"


def test_concurrent_wrong_passwords_still_lock(staff: Staff, engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def attempt(_: int) -> bool:
        try:
            staff.sign_in(REVIEWER, "a wrong password in parallel")
        except SignInError:
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        assert not any(pool.map(attempt, range(LOCK_AFTER + 4)))
    assert actions_of(engine).count("account_locked") == 1
    with pytest.raises(SignInError):
        staff.sign_in(REVIEWER, PASSWORD[REVIEWER])
