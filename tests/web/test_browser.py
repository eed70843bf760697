"""``scrub serve`` in a real browser: Debian's chromium driven by Playwright (never a
downloaded browser), on SQLite and PostgreSQL. A data subject files a request with two URLs
and an image (JavaScript off: every form works without it) and checks on it; staff signs in,
verifies it and extends its deadline; the ledger (CLI ``requests show``, ``ledger verify``,
the account events) holds exactly those events. Every page visited is saved as a full-page
screenshot under ``$SCRUB_TEST_ARTIFACTS/web-browser/<db>/`` (default
``<repo>/.test-artifacts/web-browser/<db>/``), and no page asks any host but the server."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import Engine, text

from scrub.images.hashing import hash_image
from scrub.web.forms import PDQ_MIN_QUALITY
from tests.security.ledger_setup import cli_url
from tests.web.conftest import ADMIN, PASSWORD, Server, photo

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
URLS = ["https://img.example.com/jane/one.jpg", "https://img.example.com/jane/two.jpg"]
EMAIL = "jane.browser@example.org"
REASON = "the requester sent a second batch of addresses to check"
EXTEND_DAYS = 21
#: Smallest screenshot taken as a real rendering (a blank page compresses to far less).
MIN_SHOT_BYTES = 5 * 1024


def artifacts(kind: str) -> Path:
    """The folder of this database kind's screenshots (emptied of earlier ones)."""
    base = os.environ.get("SCRUB_TEST_ARTIFACTS")
    folder = (Path(base) if base else REPO / ".test-artifacts") / "web-browser" / kind
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


class Visit:
    """The browser's pages: each screenshot saved in ``folder``; every URL any page asks for
    in ``asked``."""

    def __init__(self, browser: Browser, server: Server, folder: Path) -> None:
        self.browser, self.server, self.folder = browser, server, folder
        self.asked: list[str] = []
        self.shots: list[Path] = []

    def page(self, *, javascript: bool) -> Page:
        context = self.browser.new_context(java_script_enabled=javascript)
        context.set_default_timeout(15_000)
        context.on("request", lambda request: self.asked.append(request.url))
        return context.new_page()

    def shot(self, page: Page, name: str) -> None:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)


@pytest.fixture()
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the browser tests never "
                    "download one)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def file_request(visit: Visit, image: Path) -> str:
    """The data subject's part, JavaScript off: the form, the receipt, the status page (the
    right and a wrong email). The reference code."""
    page = visit.page(javascript=False)
    page.goto(f"{visit.server.url}/request")
    visit.shot(page, "request-form")
    page.fill("#name", "Jane Browser")
    page.fill("#email", EMAIL)
    page.select_option("#kind", "gdpr_erasure")
    page.fill("#urls", "\n".join(URLS))
    page.fill("#statement", "These photos show me at home; please remove them.")
    page.check("input[name=consent]")
    page.set_input_files("#image", str(image))
    page.click("main button[type=submit]")
    code = page.text_content("#reference-code")
    assert code and code.strip(), page.content()
    code = code.strip()
    visit.shot(page, "receipt")
    page.click("main a[href='/status']")
    visit.shot(page, "status-form")
    check_status(page, code, EMAIL)
    assert page.text_content("#status") == "received"
    visit.shot(page, "status-received")
    page.goto(f"{visit.server.url}/status")
    check_status(page, code, "someone.else@example.org")
    assert "No request matches this reference code and email." in page.content()
    assert page.query_selector("#status") is None
    visit.shot(page, "status-unknown")
    page.context.close()
    return code


def check_status(page: Page, code: str, email: str) -> None:
    page.fill("#code", code)
    page.fill("#email", email)
    page.click("main button[type=submit]")


def review(visit: Visit) -> int:
    """Staff's part: alice signs in, opens the request, verifies it and extends its deadline.
    The request's id."""
    page = visit.page(javascript=True)
    page.goto(f"{visit.server.url}/login")
    visit.shot(page, "login")
    page.fill("#name", ADMIN)
    page.fill("#password", PASSWORD[ADMIN])
    page.click("main button[type=submit]")
    page.wait_for_url(f"{visit.server.url}/console")
    rows = page.query_selector_all("#requests tbody tr")
    assert len(rows) == 1 and "received" in rows[0].inner_text()
    visit.shot(page, "console")
    page.click("#requests tbody a")
    request_id = int(page.url.rsplit("/", 1)[1])
    assert page.text_content("#status") == "received"
    assert "Jane Browser" in (page.text_content("#requester") or "")
    visit.shot(page, "request")
    page.click("button[name=do][value=verify]")
    page.wait_for_url(f"**/console/requests/{request_id}?done=verify")
    assert page.text_content("#status") == "verified"
    assert page.text_content("p.done") == "verify recorded."
    visit.shot(page, "verified")
    due = dt.datetime.fromisoformat(page.text_content("#due") or "")
    page.fill("#days", str(EXTEND_DAYS))
    page.fill("#extend-reason", REASON)
    page.click("button[name=do][value=extend]")
    page.wait_for_url(f"**/console/requests/{request_id}?done=extend")
    assert page.text_content("#status") == "verified"
    new_due = dt.datetime.fromisoformat(page.text_content("#due") or "")
    assert new_due == due + dt.timedelta(days=EXTEND_DAYS)
    assert REASON in page.content()
    visit.shot(page, "extended")
    page.context.close()
    return request_id


def scrub(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRUB_HOME": str(tmp_path / "home")}
    env.pop("SCRUB_KEY_FILE", None)
    return subprocess.run([sys.executable, "-m", "scrub", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def check_ledger(tmp_path: Path, db_url: str, request_id: int, image: bytes) -> None:
    """``requests show`` gives exactly the browser's events and items; ``ledger verify``
    passes."""
    key = str(tmp_path / "ledger.key")
    shown = scrub(tmp_path, "requests", "show", str(request_id), "--items", "--json",
                  "--db", db_url, "--key-file", key)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    history = [(e["action"], e["actor"]) for e in view["history"]]
    assert history == [("created", "web intake"), ("verify", ADMIN), ("extend", ADMIN)]
    assert view["history"][2]["reason"] == REASON
    assert view["status"] == "verified" and view["kind"] == "gdpr_erasure"
    pdq = hash_image(image, ("pdq",))
    quality = pdq["pdq_quality"]  # random noise: high quality, so the form keeps its PDQ hash
    assert isinstance(quality, int) and quality >= PDQ_MIN_QUALITY
    assert sorted((i["type"], i["value"]) for i in view["items"]) == sorted([
        ("url", URLS[0]), ("url", URLS[1]), ("md5", hashlib.md5(image).hexdigest()),
        ("sha256", hashlib.sha256(image).hexdigest()), ("pdq", pdq["pdq"])])
    verified = scrub(tmp_path, "ledger", "verify", "--json", "--quiet", "--db", db_url,
                     "--key-file", key)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["problem"] is None and report["requests"] == 1
    assert report["events"] == 6  # two accounts added, alice's sign-in, three request events


def check_account_events(engine: Engine) -> None:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT actor, action, body FROM events "
                                       "WHERE request_id IS NULL ORDER BY seq")).all()
    assert [(r.actor, r.action) for r in rows] == [
        ("setup", "user_added"), ("setup", "user_added"), (ADMIN, "sign_in")]
    assert json.loads(rows[2].body)["user"] == ADMIN
    assert not any(PASSWORD[ADMIN] in r.body for r in rows)


def test_intake_and_review_in_chromium(server: Server, database: tuple[str, dict],
                                       engine: Engine, browser: Browser,
                                       tmp_path: Path) -> None:
    kind = "sqlite" if database[0].startswith("sqlite") else "postgresql"
    visit = Visit(browser, server, artifacts(kind))
    image = photo(seed=7)
    image_file = tmp_path / "photo.png"
    image_file.write_bytes(image)
    file_request(visit, image_file)
    request_id = review(visit)

    strangers = [url for url in visit.asked if not url.startswith(f"{server.url}/")]
    assert strangers == [], f"pages asked other hosts: {strangers}"
    assert any(url.endswith("/style.css") for url in visit.asked)
    assert len(visit.shots) == 10
    for shot in visit.shots:
        assert shot.is_file() and shot.stat().st_size > MIN_SHOT_BYTES, shot
    check_ledger(tmp_path, cli_url(database), request_id, image)
    check_account_events(engine)
    log = server.output()
    assert EMAIL not in log and PASSWORD[ADMIN] not in log
