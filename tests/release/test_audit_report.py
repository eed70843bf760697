"""The audit an auditor files (issue 24): every field they ask for, in audit.json and in the
page Chromium renders; no network; a PDF of clean pages; ``scrub release report`` renders the
same audit from the signed artifacts, refuses a tampered one (exit 3), and renders an older
release with its missing fields said to be missing; no planted sensitive value anywhere."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scrub.layout import companion
from scrub.release.audit import from_signed
from scrub.release.audit_html import histogram, render_html
from scrub.urls import canonical_url
from tests.helpers import expect_ok, run_cli
from tests.release.planted import built, setup  # noqa: F401 (fixtures)

CHROMIUM = "/usr/bin/chromium"
VARIANTS = ("research", "research-safe")
#: Every item-1 field, as the page marks it (data-field).
FIELDS = ("scrub_version", "release_id", "created_at", "dataset", "variant", "signed_by",
          "duration_seconds", "policy.name", "policy.sha256", "policy.rules", "lists",
          "ledger.events", "ledger.head", "ledger.requests", "totals",
          "rows_with_several_reasons", "reason_combinations", "previous", "per_shard")


def chromium(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    """Headless Chromium (a test needing it fails, not skips, where it is missing)."""
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def net_log_events(path: Path) -> list[dict]:
    """The events of a Chromium NetLog (a file cut short on exit lacks its closing ``]}``)."""
    text = path.read_text().rstrip()
    if not text.endswith("}"):
        text = text.rstrip(",") + "]}"
    try:
        return list(json.loads(text)["events"])
    except ValueError:
        return list(json.loads(text.rstrip("]}").rstrip().rstrip(",") + "]}")["events"])


def page_requests(page: Path, log: Path) -> set[str]:
    """The URLs other than local files that ``page`` asked for while Chromium loaded it with
    every host name unresolvable (requests the page starts carry an initiator; the browser's
    own background ones carry none)."""
    result = chromium("--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", f"--log-net-log={log}",
                      "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    return {str(e["params"]["url"]) for e in net_log_events(log)
            if "url" in e.get("params", {}) and "initiator" in e["params"]
            and e["params"]["initiator"] != "not an origin"
            and not str(e["params"]["url"]).startswith(("file:", "data:"))}


def audit_of(out: Path, variant: str) -> dict:
    return json.loads((companion(out / variant) / "audit.json").read_text())


def test_audit_json_holds_every_field_an_auditor_asks(setup: dict, built: Path) -> None:
    manifest = json.loads((companion(built / "research") / "manifest.json").read_text())
    audit = audit_of(built, "research")
    assert audit["format"] == "scrub-audit/2" and list(audit["missing"]) == ["duration_seconds"]
    assert audit["scrub_version"] and audit["release_id"] == "r-test"
    assert audit["signed_by"] == manifest["signed_by"]
    assert audit["policy"]["sha256"] == manifest["policy"]["sha256"]
    assert any("above 0.9" in rule for rule in audit["policy"]["rules"])
    lists = {entry["name"]: entry for entry in audit["lists"]}
    assert set(lists) == {"partner-md5", "optout"}
    partner = lists["partner-md5"]
    # 7 planted md5s matched; the 50 decoys matched nothing and are never named (sensitive)
    assert partner["entries"] == 57 and partner["unmatched_entries"] == 50
    assert partner["unmatched_named"] == [] and partner["version"] == "1"
    assert lists["optout"]["unmatched_entries"] == 0 and lists["optout"]["rows_removed"] > 0
    assert audit["ledger"]["events"] == manifest["ledger"]["events"]
    assert audit["ledger"]["requests"] == [{"id": setup["first"], "kind": "gdpr_erasure"}]
    combos = audit["reason_combinations"]
    assert sum(combos.values()) == audit["removed"]
    assert sum(n for k, n in combos.items() if "+" in k) == audit["rows_with_several_reasons"]
    assert audit["duration_seconds"] is None  # reproducible bytes: no clock reading
    assert set(audit["per_shard"][0]) == {"shard", "rows_in", "rows_out", "removed"}


def test_previous_compares_every_variant(setup: dict, built: Path,
                                         tmp_path: Path) -> None:
    from tests.release.planted import build

    out = tmp_path / "again"
    summary = json.loads(expect_ok(build(setup, out, "--previous", str(built), "--release-id",
                                         "r-next", "--no-ledger-update")).stdout)
    assert summary["duration_seconds"] > 0  # the time taken: in the summary, not the audit
    for variant in VARIANTS:
        previous = audit_of(out, variant)["previous"]
        assert previous["release_id"] == "r-test" and previous["variant"] == variant
        assert previous["totals"]["removed"]["before"] == audit_of(built, variant)["removed"]


@pytest.mark.slow
def test_every_field_is_in_the_rendered_dom(built: Path) -> None:
    for variant in VARIANTS:
        page = companion(built / variant) / "audit.html"
        result = chromium("--dump-dom", page.as_uri())
        assert result.returncode == 0, result.stderr[-2000:]
        dom = result.stdout
        for field in FIELDS:
            assert f'data-field="{field}"' in dom, (variant, field)
        audit = audit_of(built, variant)
        for value in (audit["scrub_version"], audit["signed_by"], audit["policy"]["sha256"],
                      audit["ledger"]["head"] if audit["ledger"] else "r-test"):
            assert value in dom
        assert 'class="controls"' in dom  # the script ran: the filter is there


@pytest.mark.slow
def test_the_page_loads_nothing_from_the_network(built: Path, tmp_path: Path) -> None:
    page = companion(built / "research-safe") / "audit.html"
    text = page.read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text, re.I)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert page_requests(page, tmp_path / "net.json") == set()
    # the check itself sees what a page fetches
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<img src="https://example.com/x.png">')
    assert page_requests(leaky, tmp_path / "leaky.json") == {"https://example.com/x.png"}


@pytest.mark.slow
def test_the_pdf_has_clean_pages(built: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "audit.pdf"
    page = companion(built / "research-safe") / "audit.html"
    result = chromium(f"--print-to-pdf={pdf}", page.as_uri())
    assert result.returncode == 0 and pdf.is_file(), result.stderr[-2000:]
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert 3 <= pages <= 12, pages


def test_report_renders_the_same_audit(setup: dict, built: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_cli("release", "report", str(built), "--pubkey",
                     str(setup["root"] / "sign.pub"), "--output", str(out), "--json")
    expect_ok(result)
    rendered = json.loads(result.stdout)
    assert {r["variant"] for r in rendered} == set(VARIANTS)
    for variant in VARIANTS:
        meta = companion(built / variant)
        assert (out / variant / "audit.json").read_bytes() == (meta / "audit.json").read_bytes()
        assert (out / variant / "audit.html").read_bytes() == (meta / "audit.html").read_bytes()


@pytest.mark.parametrize("case", ["tampered", "missing"])
def test_report_refuses_a_tampered_or_missing_audit(setup: dict, built: Path, tmp_path: Path,
                                                    case: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    audit = companion(copy / "research") / "audit.json"
    if case == "tampered":
        body = json.loads(audit.read_text())
        body["removed"] -= 1
        audit.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    else:
        audit.unlink()
    out = tmp_path / "report"
    result = run_cli("release", "report", str(copy), "--pubkey",
                     str(setup["root"] / "sign.pub"), "--output", str(out))
    assert result.exit_code == 3, result.output
    assert "research.scrub/audit.json" in result.output
    assert ("sha256 differs" if case == "tampered" else "missing") in result.output
    assert not out.exists()  # nothing half-written


def test_an_older_audit_renders_with_its_missing_fields_said(built: Path) -> None:
    meta = companion(built / "research")
    manifest = json.loads((meta / "manifest.json").read_text())
    audit = audit_of(built, "research")
    old = {k: audit[k] for k in ("release_id", "variant", "dataset", "created_at", "rows_in",
                                 "rows_out", "removed", "removed_by_reason",
                                 "removed_by_source", "sensitive_sources")}
    old["per_shard"] = [{k: s[k] for k in ("shard", "rows_in", "rows_out")}
                        for s in audit["per_shard"]]
    completed = from_signed(manifest, old)
    assert completed["signed_by"] == manifest["signed_by"]
    assert completed["policy"]["rules"] == audit["policy"]["rules"]
    assert completed["ledger"]["requests"][0]["kind"] is None
    for key in ("reason_combinations", "duration_seconds", "lists.unmatched_entries",
                "ledger.requests.kind", "rows_with_several_reasons"):
        assert key in completed["missing"], key
    page = render_html(completed)
    assert page.count('class="missing"') >= 5 and "missing: not recorded" in page


def test_rendered_files_hold_no_planted_secret(setup: dict, built: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "report"
    expect_ok(run_cli("release", "report", str(built), "--pubkey",
                      str(setup["root"] / "sign.pub"), "--output", str(out)))
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    blobs += [(companion(built / v) / n).read_bytes() for v in VARIANTS
              for n in ("audit.json", "audit.html")]
    secrets = setup["md5s"] + setup["urls"] + ["Ada Requester", "ada@example.org",
                                               "bo@example.org"]
    secrets += [canonical_url(u) for u in setup["urls"]]
    for secret in secrets:
        assert all(secret.encode() not in blob for blob in blobs), secret


def test_a_histogram_stays_small_for_thousands_of_shards() -> None:
    bins = histogram(list(range(6_000)))
    assert len(bins) <= 20 and sum(b["count"] for b in bins) == 6_000
    assert bins[0]["low"] == 0 and bins[-1]["high"] == 5_999


def test_report_renders_a_release_built_before_this_audit(setup: dict, built: Path,
                                                          tmp_path: Path) -> None:
    """An older build's audit (no policy, lists or ledger detail), signed as it was: the
    report renders it, filling in what the manifest holds and saying what is missing."""
    import base64

    from scrub.crypto import load_signing_key
    from scrub.release.manifest import canonical

    copy = tmp_path / "old"
    shutil.copytree(built, copy)
    meta = companion(copy / "research")
    audit = json.loads((meta / "audit.json").read_text())
    old = {k: audit[k] for k in ("release_id", "variant", "dataset", "created_at", "rows_in",
                                 "rows_out", "removed", "removed_by_reason",
                                 "removed_by_source", "sensitive_sources")}
    old["per_shard"] = [{k: s[k] for k in ("shard", "rows_in", "rows_out")}
                        for s in audit["per_shard"]]
    (meta / "audit.json").write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    manifest = json.loads((meta / "manifest.json").read_text())
    manifest["companion_files"]["audit.json"] = hashlib.sha256(
        (meta / "audit.json").read_bytes()).hexdigest()
    body = canonical(manifest)
    (meta / "manifest.json").write_bytes(body)
    key = load_signing_key(setup["root"] / "sign.pem")
    (meta / "manifest.sig").write_bytes(base64.b64encode(key.sign(body)) + b"\n")
    out = tmp_path / "report"
    result = run_cli("release", "report", str(copy / "research"), "--pubkey",
                     str(setup["root"] / "sign.pub"), "--output", str(out), "--json")
    expect_ok(result)
    assert json.loads(result.stdout)[0]["same_as_published"]["audit.json"] is False
    rendered = json.loads((out / "research" / "audit.json").read_text())
    assert rendered["signed_by"] == manifest["signed_by"]
    assert rendered["policy"]["sha256"] == manifest["policy"]["sha256"]
    assert {"reason_combinations", "lists.entries", "ledger.requests.kind"} \
        <= set(rendered["missing"])
    page = (out / "research" / "audit.html").read_text()
    assert 'data-missing="reason_combinations"' in page


def test_report_of_something_else_is_bad_input(setup: dict, tmp_path: Path) -> None:
    result = run_cli("release", "report", str(tmp_path), "--pubkey",
                     str(setup["root"] / "sign.pub"), "--output", str(tmp_path / "r"))
    assert result.exit_code == 2 and "not a release" in result.output


def test_unmatched_entries_are_named_for_public_lists_only() -> None:
    from scrub.release.audit import NAMED_UNMATCHED, list_entry

    entry = {"name": "optout", "label": "optout@2", "sha256": "a" * 64}
    values = [f"https://example.org/{i}" for i in range(NAMED_UNMATCHED + 5)]
    public = list_entry(entry, removed=3, entries=200, unmatched=len(values), named=values,
                        sensitive=False)
    assert public["version"] == "2" and len(public["unmatched_named"]) == NAMED_UNMATCHED
    assert public["unmatched_not_named"] == 5
    hidden = list_entry(entry, removed=3, entries=200, unmatched=len(values), named=values,
                        sensitive=True)
    assert hidden["unmatched_named"] == [] and hidden["unmatched_entries"] == len(values)
    assert "example.org" not in render_html(from_signed({}, {
        "format": "scrub-audit/2", "lists": [hidden], "per_shard": [], "removed_by_reason": {},
        "removed_by_source": {}, "sensitive_sources": [], "policy": None, "ledger": None,
        "previous": None, "missing": {}, "reason_combinations": {},
        **dict.fromkeys(("scrub_version", "release_id", "variant", "dataset", "created_at",
                         "signed_by", "duration_seconds", "rows_in", "rows_out", "removed",
                         "rows_with_several_reasons"))}))
