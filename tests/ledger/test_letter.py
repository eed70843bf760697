"""`scrub requests export ID --format html|text|json`: the data subject's letter, for a request
with a URL, a caption-term and an image-hash item built and applied through a real release; the
identity only with --identity, nothing without the key; in Chromium, a self-contained page that
prints to PDF."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import Result

from scrub.crypto import write_key_file, write_signing_keypair
from scrub.ledger import db
from scrub.ledger.letter import build_letter, render
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from scrub.synthetic import generate_dataset
from tests.helpers import expect_ok
from tests.security.ledger_setup import cli, request_policies

NAME, EMAIL = "Zelda Plantedname", "zelda.planted@example.org"
TERM = "Quixotic Zebulon"
CHROMIUM = "/usr/bin/chromium"


def _plant(data: Path) -> dict[str, object]:
    """Rewrite the captions of rows 17 and 150 to hold :data:`TERM`; the URL of row 9 and
    the md5 of row 250, and how many rows each of the three items names."""
    shards = sorted(data.glob("*.parquet"))
    frames = [pl.read_parquet(p) for p in shards]
    whole = pl.concat(frames)
    text = whole["TEXT"].to_list()
    for row in (17, 150):
        text[row] = f"portrait of {TERM} at home"
    whole = whole.with_columns(pl.Series("TEXT", text))
    start = 0
    for path, frame in zip(shards, frames, strict=True):
        whole.slice(start, frame.height).write_parquet(path)
        start += frame.height
    url, md5 = whole["URL"][9], whole["md5"][250]
    return {"url": url, "md5": md5, "url_rows": whole["URL"].to_list().count(url),
            "md5_rows": whole["md5"].to_list().count(md5), "term_rows": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A ledger with an applied request (URL, caption term, md5 items) and a received one,
    a release of two variants built from it through the CLI."""
    root = tmp_path_factory.mktemp("letter")
    data = generate_dataset(root / "data", rows=300, shards=2, seed=5, embeddings=False)
    planted = _plant(data)
    key = write_key_file(root / "ledger.key")
    database = (f"sqlite:///{root / 'ledger.db'}", {})
    engine = db.make_engine(database[0])
    db.upgrade(engine)
    ledger = Ledger(engine, seal=IdentitySeal(key))
    applied, _ = ledger.add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
        "requester": {"name": NAME, "email": EMAIL},
        "items": [{"type": "url", "value": planted["url"]},
                  {"type": "caption_term", "value": TERM},
                  {"type": "md5", "value": planted["md5"]}]}, where="r"), "alice")
    ledger.transition(applied, "verify", "alice")
    pending, _ = ledger.add(RequestSpec.parse({
        "kind": "copyright", "received_at": "2026-11-03T09:00:00Z",
        "requester": {"name": "Other Person", "email": "other.person@example.org"},
        "items": [{"type": "domain", "value": "example.net"}]}, where="r"), "alice")
    write_signing_keypair(root / "sign.pem", root / "sign.pub")
    expect_ok(cli(root, database, "release", "build", str(data), str(root / "out"),
                  *request_policies(root, "research", "strict"), "--signing-key",
                  str(root / "sign.pem"), "--workers", "1", "--quiet", "--release-id", "r-1"))
    by_hand, _ = ledger.add(RequestSpec.parse({  # recorded applied by hand: no row counts
        "kind": "safety", "received_at": "2026-11-05T09:00:00Z",
        "requester": {"name": "Third Person", "email": "third.person@example.org"},
        "items": [{"type": "sha256", "value": "ab" * 32}]}, where="r"), "alice")
    ledger.transition(by_hand, "verify", "alice")
    ledger.transition(by_hand, "apply", "alice", release="r-hand")
    engine.dispose()
    return {**planted, "root": root, "database": database, "applied": applied,
            "pending": pending, "by_hand": by_hand}


def export(built: dict, *args: str, key: bool = True) -> Result:
    return cli(built["root"], built["database"], "requests", "export", *args, key=key)


def letter_file(built: dict, request: int, fmt: str, *extra: str) -> Path:
    out = built["root"] / f"letter-{request}-{fmt}{'-id' if extra else ''}.{fmt}"
    expect_ok(export(built, str(request), "--format", fmt, "--output", str(out), *extra))
    return out


def test_the_html_letter_holds_items_dates_rows_and_the_removal_list(built: dict) -> None:
    html = letter_file(built, built["applied"], "html").read_text()
    assert "thead { display: table-header-group; }" in html
    assert "tr { break-inside: avoid;" in html
    for value in (built["url"], TERM.casefold(), built["md5"]):
        assert f'data-field="item-value">{_escaped(value)}<' in html
    for words in ("web address of an image", "words in image captions",
                  "image file fingerprint (MD5)"):
        assert words in html
    assert "1 November 2026, 10:00 UTC" in html  # received
    assert 'data-field="step-verify"' in html and 'data-field="step-apply"' in html
    for rows in (built["url_rows"], built["term_rows"], built["md5_rows"]):
        for variant in ("research", "strict"):
            assert re.search(rf'data-release="r-1" data-variant="{variant}">.*?'
                             rf'data-field="rows">{rows}<', html)
    assert "--hashlist" in html and "removals.parquet" in html and "keyed hashes" in html
    assert "the requester" in html


def test_the_text_letter_says_the_same_in_plain_text(built: dict) -> None:
    text = letter_file(built, built["applied"], "text").read_text()
    for value in (built["url"], TERM.casefold(), built["md5"]):
        assert value in text
    assert "We received your request." in text and "Your request was verified." in text
    assert "Release r-1 applied your request." in text
    assert f"release r-1, variant strict: {built['url_rows']} row" in text
    assert "scrub apply their-copy/ cleaned/ --hashlist research.scrub/removals.parquet" \
        in text
    assert "To: the requester" in text and "<" not in text.split("\n")[2]


def test_the_json_keeps_the_export_and_adds_dates(built: dict) -> None:
    result = export(built, str(built["applied"]), "--format", "json")
    expect_ok(result)
    report = json.loads(result.stdout)
    plain = json.loads(expect_ok(export(built, str(built["applied"]))).stdout)
    assert plain == report  # json is the default
    assert report["requester"] == {"name": NAME, "email": EMAIL}  # as before this change
    assert [i["type"] for i in report["items"]] == ["url", "caption_term", "md5"]
    assert report["removed_in_releases"] == ["r-1"]
    assert report["verified_at"] and [a["release"] for a in report["applied"]] == ["r-1"]
    assert {"at", "action"} <= set(report["history"][0])


@pytest.mark.parametrize("fmt", ["html", "text"])
def test_the_identity_is_in_the_letter_only_with_identity(built: dict, fmt: str) -> None:
    plain = letter_file(built, built["applied"], fmt).read_text()
    named = letter_file(built, built["applied"], fmt, "--identity").read_text()
    for secret in (NAME, EMAIL, EMAIL.split("@")[0], "Zelda"):
        assert secret not in plain and secret in named
    assert "the requester" not in named.split("Written on")[0]


def test_without_the_key_the_export_refuses_with_the_key_hint(built: dict) -> None:
    out = built["root"] / "nokey.out"
    for fmt in ("html", "text", "json"):
        result = export(built, str(built["applied"]), "--format", fmt, "--output", str(out),
                        key=False)
        assert result.exit_code == 2 and not out.exists()
        assert "needs the ledger key" in result.stderr and "--key-file" in result.stderr
        for secret in (NAME, EMAIL, built["url"], built["md5"], TERM.casefold()):
            assert secret not in result.stdout + result.stderr


def test_a_request_never_applied_is_said_plainly(built: dict) -> None:
    text = letter_file(built, built["pending"], "text").read_text()
    assert "Your request has not been applied to any release yet." in text
    assert "Your request has not been verified yet." in text
    assert "example.net" in text and "a copyright takedown request" in text
    html = letter_file(built, built["pending"], "html").read_text()
    assert 'data-field="not-applied"' in html


def test_a_release_recorded_by_hand_is_named_without_counts(built: dict) -> None:
    text = letter_file(built, built["by_hand"], "text").read_text()
    assert "Your request has been applied to 1 release: r-hand." in text
    assert "without a count of\nrows for each item: r-hand." in text
    assert "removed\n" not in text  # no row count is made up


def test_an_unknown_request_or_format_exits_2_in_one_line(built: dict) -> None:
    result = export(built, "999", "--format", "html", "--output",
                    str(built["root"] / "never.html"))
    assert result.exit_code == 2 and "no request 999 in the ledger" in result.stderr
    assert len(_error_lines(result)) == 1
    assert not (built["root"] / "never.html").exists()
    result = export(built, str(built["applied"]), "--format", "pdf")
    assert result.exit_code == 2 and "html, json, text" in result.stderr
    assert len(_error_lines(result)) == 1 and not result.stdout


def test_item_values_are_escaped_in_html() -> None:
    record = {"request": 7, "kind": "other", "status": "received",
              "received_at": "2026-11-01T10:00:00+00:00", "due_at": "2026-12-01T10:00:00+00:00",
              "requester": {"name": "<b>N</b>", "email": "n@x.org"},
              "items": [{"type": "caption_term", "value": "<script>alert(1)</script>",
                         "rows_removed": []}], "removed_in_releases": [], "history": []}
    html = render(build_letter(record, identity=True), "html")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>N</b>" not in html and "&lt;b&gt;N&lt;/b&gt;" in html
    assert "<b>N</b>" not in render(build_letter(record), "text")


def test_the_text_letter_is_not_html_escaped_and_has_no_control_character() -> None:
    record = {"request": 7, "kind": "other", "status": "verified",
              "received_at": "2026-11-01T10:00:00+00:00", "due_at": "2026-12-01T10:00:00+00:00",
              "requester": None,
              "items": [{"type": "url", "value": "https://x.org/a?b=1&c=2", "rows_removed": []},
                        {"type": "caption_term", "value": "bell\x1b[2Jterm",
                         "rows_removed": []}],
              "removed_in_releases": [], "history": []}
    text = render(build_letter(record), "text")
    assert "https://x.org/a?b=1&c=2" in text and "&amp;" not in text
    assert "\x1b" not in text and "bell\ufffd[2Jterm" in text
    assert "It has been verified and waits for the next release." in text


@pytest.mark.slow
def test_in_chromium_the_dom_holds_the_fields_and_prints_to_pdf(built: dict) -> None:
    assert Path(CHROMIUM).exists(), "chromium is needed (apt-get install chromium)"
    page = letter_file(built, built["applied"], "html")
    source = page.read_text()
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", source, re.I)
    assert not re.search(r"url\(|@import|<link|<script", source, re.I)
    dom = _chromium(built["root"], "--dump-dom", page.as_uri()).stdout
    for field in ("requester", "item-value", "step-verify", "step-apply", "rows", "outcome"):
        assert f'data-field="{field}"' in dom
    for value in (built["url"], TERM.casefold(), built["md5"]):
        assert _escaped(value) in dom
    assert NAME not in dom and EMAIL not in dom
    pdf = built["root"] / "letter.pdf"
    _chromium(built["root"], f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page.as_uri())
    body = pdf.read_bytes()
    assert body.startswith(b"%PDF") and 1 <= len(re.findall(rb"/Type\s*/Page\b", body)) <= 6


def _chromium(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with no network (a proxy that does not exist) and its own profile;
    it is waited for, so none is left running."""
    profile = root / "chromium-profile"
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
             "--proxy-bypass-list=<-loopback>", *args],
            capture_output=True, text=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _escaped(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("scrub:")]
