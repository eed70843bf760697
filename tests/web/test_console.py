"""The intake page and the staff console at the HTTP level (Starlette's test client), on SQLite
and PostgreSQL: every route, every action, every role, and what the ledger records."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from scrub.ledger.models import Event
from scrub.ledger.receipts import Intake, normal_code
from scrub.ledger.service import Ledger
from tests.web.conftest import (  # noqa: F401
    ADMIN,
    REVIEWER,
    admin,
    client,
    csrf_of,
    database,
    engine,
    file_request,
    key,
    ledger,
    limits,
    photo,
    reviewer,
    staff,
)


def events(ledger: Ledger, request_id: int | None = None) -> list[tuple[str, str]]:
    """(actor, action) of the events, all or one request's."""
    with Session(ledger.engine) as session:
        query = select(Event.actor, Event.action).order_by(Event.seq)
        if request_id is not None:
            query = query.where(Event.request_id == request_id)
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]


def test_a_request_filed_on_the_form_is_in_the_ledger_with_its_image_hashes(
        client: TestClient, ledger: Ledger) -> None:
    import hashlib

    image = photo(3)
    code = file_request(client, image=image, caption_term="Jane Roe", kind="copyright")
    assert normal_code(code) is not None and len(code) == 24
    (view,) = ledger.list()
    shown = ledger.show(view.id, items=True, identity=True)
    assert shown.kind == "copyright" and shown.status == "received"
    assert shown.requester == {"name": "Jane Roe", "email": "jane@example.org"}
    items = {(i["type"], i["value"]) for i in shown.items}
    assert {("url", "https://img.example.com/a.jpg"), ("url", "https://img.example.com/b.jpg"),
            ("caption_term", "jane roe"), ("md5", hashlib.md5(image).hexdigest()),
            ("sha256", hashlib.sha256(image).hexdigest())} <= items
    assert {t for t, _ in items} == {"url", "caption_term", "md5", "sha256", "pdq"}
    received = dt.datetime.fromisoformat(shown.received_at)
    assert abs(received - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert dt.datetime.fromisoformat(shown.due_at) - received == dt.timedelta(days=30)
    assert events(ledger, view.id) == [("web intake", "created")]
    (statement,) = Intake(ledger).statements(view.id)
    assert statement["statement"] == "These are photos of me."
    assert ledger.verify().ok


def test_the_status_page_needs_the_code_and_the_email_together(client: TestClient,
                                                               ledger: Ledger) -> None:
    code = file_request(client)
    token = csrf_of(client.get("/status").text)
    typed = code.lower().replace("-", " ")  # how people type codes back
    found = client.post("/status", data={"csrf": token, "code": typed,
                                         "email": " JANE@example.org"})
    assert found.status_code == 200 and 'id="status">received<' in found.text
    for code_given, email in ((code, "john@example.org"), ("AAAA-AAAA-AAAA-AAAA-AAAA",
                                                            "jane@example.org")):
        missing = client.post("/status", data={"csrf": token, "code": code_given,
                                               "email": email})
        assert missing.status_code == 404 and "No request matches" in missing.text
    (view,) = ledger.list()
    ledger.transition(view.id, "verify", "tester")
    later = client.post("/status", data={"csrf": token, "code": code, "email": "jane@example.org"})
    assert 'id="status">verified<' in later.text
    assert "Jane Roe" not in later.text and "img.example.com" not in later.text


def test_a_repeat_filing_is_a_request_of_its_own_shown_beside_the_first(
        client: TestClient, reviewer: TestClient, ledger: Ledger) -> None:
    first = file_request(client)
    second = file_request(client, urls="https://img.example.com/a.jpg\nhttps://img.example.com/c.jpg")
    assert first != second
    one, two = ledger.list()  # never joined: the email is not verified yet
    assert (len(one.items), len(two.items)) == (2, 2)
    assert [a for _, a in events(ledger, two.id)] == ["created"]
    assert len(Intake(ledger).statements(one.id)) == len(Intake(ledger).statements(two.id)) == 1
    assert Intake(ledger).status(second, "jane@example.org").id == two.id  # type: ignore[union-attr]
    page = reviewer.get(f"/console/requests/{two.id}").text
    assert re.search(r'id="repeats"><a href="/console/requests/1">1</a>', page)
    file_request(client, email="other@example.org")
    assert 'id="repeats"' not in reviewer.get("/console/requests/3").text


def test_field_errors_keep_what_was_typed(client: TestClient, ledger: Ledger) -> None:
    token = csrf_of(client.get("/request").text)
    response = client.post("/request", data={
        "csrf": token, "name": "", "email": "not-an-email", "kind": "nonsense",
        "urls": "https://ok.example.com/x.jpg\nnot a url", "caption_term": "kept term",
        "statement": "kept statement"})
    assert response.status_code == 400
    for message in ("your name is needed", "an email address is needed",
                    "choose what kind of request", "line 2 is not a web address",
                    "cannot be processed without this consent"):
        assert message in response.text, message
    assert "kept statement</textarea>" in response.text
    assert 'value="kept term"' in response.text and 'value="not-an-email"' in response.text
    assert ledger.list() == []
    image = client.post("/request", data={
        "csrf": token, "name": "Jane", "email": "j@example.org", "kind": "other", "urls": "",
        "statement": "", "consent": "yes"},
        files={"image": ("x.png", b"not an image", "image/png")})
    assert image.status_code == 400 and "not an image we can read" in image.text
    nothing = client.post("/request", data={
        "csrf": token, "name": "Jane", "email": "j@example.org", "kind": "other", "urls": "",
        "statement": "", "consent": "yes"})
    assert nothing.status_code == 400 and "name at least one image" in nothing.text
    assert ledger.list() == []


def test_too_many_items_in_one_request_are_refused(client: TestClient, ledger: Ledger) -> None:
    urls = "\n".join(f"https://img.example.com/{i}.jpg" for i in range(51))
    token = csrf_of(client.get("/request").text)
    response = client.post("/request", data={
        "csrf": token, "name": "Jane", "email": "j@example.org", "kind": "other", "urls": urls,
        "statement": "", "consent": "yes"})
    assert response.status_code == 400 and "at most 50 items" in response.text
    assert ledger.list() == []


@pytest.mark.parametrize("action", ["verify", "reject", "withdraw"])
def test_every_action_from_received_is_recorded_with_the_staff_member(
        action: str, client: TestClient, reviewer: TestClient, ledger: Ledger) -> None:
    file_request(client)
    (view,) = ledger.list()
    page = reviewer.get(f"/console/requests/{view.id}")
    assert page.status_code == 200 and "its events authenticate" in page.text
    response = reviewer.post(f"/console/requests/{view.id}/{action}",
                             data={"csrf": csrf_of(page.text), "reason": "checked by phone"},
                             follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/requests/{view.id}?done={action}"
    target = {"verify": "verified", "reject": "rejected", "withdraw": "withdrawn"}[action]
    assert ledger.show(view.id).status == target
    history = ledger.show(view.id).history
    assert (history[-1]["actor"], history[-1]["action"], history[-1]["reason"]) == \
        (REVIEWER, action, "checked by phone")
    assert ledger.verify().ok


def test_the_whole_lifecycle_through_the_console(client: TestClient, admin: TestClient,
                                                 ledger: Ledger) -> None:
    file_request(client)
    (view,) = ledger.list()
    base = f"/console/requests/{view.id}"

    def act(action: str, **data: str) -> int:
        token = csrf_of(admin.get(base).text)
        return admin.post(f"{base}/{action}", data={"csrf": token, **data},
                          follow_redirects=False).status_code

    assert act("close") == 409  # not from received: the page says why, nothing recorded
    assert act("extend", days="30", reason="") == 409
    assert act("verify") == 303
    assert act("extend", days="20", reason="identity check by post") == 303
    assert act("extend", days="80", reason="too far") == 409  # past 90 days after receipt
    assert act("schedule") == 303
    ledger.mark_applied([view.id], "release-2026-12", "builder")
    assert act("close", reason="done") == 303
    shown = ledger.show(view.id)
    assert shown.status == "closed" and shown.extension_reason == "identity check by post"
    assert [a for _, a in events(ledger, view.id)] == [
        "created", "verify", "extend", "schedule", "apply", "close"]
    page = admin.get(base)
    assert "No action from this status" in page.text and "release-2026-12" in page.text
    assert ledger.verify().ok


def test_the_list_puts_overdue_first_and_filters(client: TestClient, reviewer: TestClient,
                                                 ledger: Ledger) -> None:
    from tests.security.ledger_setup import spec

    old, _ = ledger.add(spec("old@example.org"), "tester")  # received 2026-11-01: overdue
    file_request(client)
    file_request(client, email="k@example.org", kind="safety")
    ledger.transition(old, "verify", "tester")
    page = reviewer.get("/console")
    ids = [int(i) for i in re.findall(r'href="/console/requests/(\d+)"', page.text)]
    assert ids[0] == old and sorted(ids) == [1, 2, 3] and "(overdue)" in page.text
    safety = reviewer.get("/console?kind=safety")
    assert re.findall(r'href="/console/requests/(\d+)"', safety.text) == ["3"]
    verified = reviewer.get("/console?status=verified&kind=")
    assert re.findall(r'href="/console/requests/(\d+)"', verified.text) == [str(old)]
    assert reviewer.get("/console?status=bogus").status_code == 200  # an unknown filter: none


def test_identities_and_the_letter_by_role(client: TestClient, admin: TestClient,
                                           reviewer: TestClient, ledger: Ledger) -> None:
    file_request(client, name="Jane Q. Roe")
    (view,) = ledger.list()
    base = f"/console/requests/{view.id}"
    assert "Jane Q. Roe" in admin.get(base).text
    seen = reviewer.get(base).text
    assert "Jane Q. Roe" not in seen and "jane@example.org" not in seen
    assert "img.example.com/a.jpg" in seen  # items are what a reviewer verifies
    for who in (admin, reviewer):
        letter = who.get(f"{base}/letter?format=text")
        assert letter.status_code == 200 and "attachment" in letter.headers["content-disposition"]
        assert "Jane Q. Roe" not in letter.text and "img.example.com/a.jpg" in letter.text
    named = admin.get(f"{base}/letter?format=html&identity=1")
    assert named.status_code == 200 and "Jane Q. Roe" in named.text
    assert reviewer.get(f"{base}/letter?format=html&identity=1").status_code == 403
    assert admin.get(f"{base}/letter?format=pdf").status_code == 400
    assert admin.get("/console/requests/999").status_code == 404


def test_admin_pages(admin: TestClient, reviewer: TestClient, ledger: Ledger) -> None:
    users = admin.get("/console/users")
    assert users.status_code == 200 and ADMIN in users.text and REVIEWER in users.text
    added = admin.post("/console/users", data={
        "csrf": csrf_of(users.text), "name": "carol", "role": "reviewer",
        "password": "carol's passphrase"}, follow_redirects=False)
    assert added.status_code == 303
    short = admin.post("/console/users", data={
        "csrf": csrf_of(users.text), "name": "dave", "role": "reviewer", "password": "short"})
    assert short.status_code == 400 and "12 to 1024 characters" in short.text
    again = admin.post("/console/users", data={
        "csrf": csrf_of(users.text), "name": "carol", "role": "admin",
        "password": "another passphrase"})
    assert again.status_code == 400 and "exists" in again.text
    assert ("alice", "user_added") in events(ledger)
    check = admin.get("/console/ledger")
    assert check.status_code == 200 and "The ledger verifies" in check.text
    for path in ("/console/users", "/console/ledger"):
        assert reviewer.get(path).status_code == 403


def test_sign_in_and_out_are_in_the_history(client: TestClient, ledger: Ledger) -> None:
    from tests.web.conftest import PASSWORD, sign_in

    wrong = client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                        "name": ADMIN, "password": "not it at all"})
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    unknown = client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                          "name": "mallory", "password": PASSWORD[ADMIN]})
    assert unknown.status_code == 401 and unknown.text.count("wrong user name") == 1
    sign_in(client, ADMIN)
    assert client.get("/console").status_code == 200
    client.post("/logout", data={"csrf": csrf_of(client.get("/console").text)})
    assert client.get("/console", follow_redirects=False).status_code == 303
    account = [e for e in events(ledger) if e[1] not in ("user_added",)]
    assert account == [(ADMIN, "sign_in_failed"), ("console", "sign_in_failed"),
                       (ADMIN, "sign_in"), (ADMIN, "sign_out")]
    assert ledger.verify().ok


def test_every_console_route_needs_a_session(client: TestClient) -> None:
    for path in ("/console", "/console/requests/1", "/console/requests/1/letter",
                 "/console/users", "/console/ledger"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    for path in ("/console/requests/1/verify", "/console/users", "/console/users/bob/unlock",
                 "/logout"):
        assert client.post(path, follow_redirects=False).status_code == 303, path
    home = client.get("/", follow_redirects=False)
    assert home.headers["location"] == "/request"
    assert client.get("/style.css").headers["content-type"].startswith("text/css")


def test_staff_find_a_request_by_its_reference_code(client: TestClient, reviewer: TestClient,
                                                    ledger: Ledger) -> None:
    file_request(client)
    code = file_request(client, email="second@example.org")
    token = csrf_of(reviewer.get("/console").text)
    found = reviewer.post("/console/find", data={"csrf": token, "code": code.lower()},
                          follow_redirects=False)
    assert (found.status_code, found.headers["location"]) == (303, "/console/requests/2")
    for wrong in ("AAAA-AAAA-AAAA-AAAA-AAAA", "nonsense"):
        missing = reviewer.post("/console/find", data={"csrf": token, "code": wrong})
        assert missing.status_code == 404 and "No request has this reference code" in missing.text
    assert reviewer.post("/console/find", data={"code": code}).status_code == 403  # no CSRF
    assert client.post("/console/find", data={"code": code},
                       follow_redirects=False).headers["location"] == "/login"


def test_the_overdue_filter(client: TestClient, reviewer: TestClient, ledger: Ledger) -> None:
    from tests.security.ledger_setup import spec

    late, _ = ledger.add(spec("late@example.org"), "tester")  # received 2026-11-01
    done, _ = ledger.add(spec("done@example.org"), "tester")
    ledger.transition(done, "reject", "tester")  # closed requests are never overdue
    file_request(client)
    page = reviewer.get("/console?overdue=1")
    assert re.findall(r'href="/console/requests/(\d+)"', page.text) == [str(late)]
    assert "1 request(s)" in page.text


def test_the_admin_sees_sign_ins_and_account_changes(client: TestClient, admin: TestClient,
                                                     reviewer: TestClient) -> None:
    bad = client.post("/login", data={"csrf": csrf_of(client.get("/login").text),
                                      "name": "typed-a-password-here", "password": "x" * 12})
    assert bad.status_code == 401
    page = admin.get("/console/activity")
    assert page.status_code == 200
    rows = re.findall(r"<tr><td>(\d+)</td><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td>"
                      r"<td>([^<]+)</td>", page.text)
    actions = [(actor, action, user) for _, actor, action, user in rows]
    assert actions[:3] == [("console", "sign_in_failed", "(no such account)"),
                           (REVIEWER, "sign_in", REVIEWER), (ADMIN, "sign_in", ADMIN)]
    assert ("setup", "user_added", REVIEWER) in actions
    assert "typed-a-password-here" not in page.text
    assert reviewer.get("/console/activity").status_code == 403


def test_the_health_check_answers_without_a_session(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_intake_limits_per_address_count_requests_and_forms_apart(ledger: Ledger,
                                                                   staff: object) -> None:
    from scrub.web.app import create_app
    from scrub.web.config import Limits, ServeConfig

    config = ServeConfig(ledger, Limits(intake_per_hour=2, intake_posts_per_hour=5))
    with TestClient(create_app(config), base_url="http://testserver") as client:
        token = csrf_of(client.get("/request").text)
        wrong = {"csrf": token, "name": "Jane", "email": "j@example.org", "kind": "other",
                 "urls": "not a url", "statement": "", "consent": "yes"}
        assert client.post("/request", data=wrong).status_code == 400  # a typo: 1 form
        file_request(client)
        file_request(client, email="k@example.org")  # forms 2 and 3, requests 1 and 2
        third = client.post("/request", data={**wrong, "urls": "https://img.example.com/z.jpg"})
        assert third.status_code == 429 and third.headers["retry-after"] == "600"  # form 4
        assert len(ledger.list()) == 2  # the third request was refused, nothing recorded
        assert client.post("/request", data=wrong).status_code == 400  # form 5 of 5: answered
        assert client.post("/request", data=wrong).status_code == 429  # past the forms
    assert len(ledger.list()) == 2
