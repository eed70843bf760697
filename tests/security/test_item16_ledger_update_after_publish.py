"""Item 16: a release build killed after publishing but before (or while, or just after)
updating the ledger is finished by a rerun: the variants stay published, the requests are
marked applied once, the staging folder goes. ``scrub requests apply ID --release R`` records
the same by hand, for repair. Kills are simulated by an interrupt at the named point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scrub.crypto import write_signing_keypair
from scrub.ledger.service import Ledger
from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_ok
from tests.security.ledger_setup import (  # noqa: F401 - fixtures
    cli,
    database,
    engine,
    key,
    ledger,
    request_policies,
    spec,
)

STAGING = ".scrub-release"


@pytest.fixture()
def release(tmp_path: Path, ledger: Ledger):  # type: ignore[no-untyped-def]
    """A dataset, two policies taking the ledger's requests, a signing key and a verified
    request naming one of the dataset's URLs (plus one still received)."""
    data = generate_dataset(tmp_path / "data", rows=300, shards=2, seed=5, embeddings=False)
    url = read_column(data, "URL")[9]
    request, _ = ledger.add(spec("a@example.org", [{"type": "url", "value": url}]), "alice")
    ledger.transition(request, "verify", "alice")
    pending, _ = ledger.add(spec("b@example.org", [{"type": "md5", "value": "1" * 32}]), "bob")
    policies = request_policies(tmp_path, "open", "closed")
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    return {"data": data, "request": request, "pending": pending, "policies": policies}


def build(tmp_path: Path, database: tuple[str, dict], release: dict, *extra: str,
          data: Path | None = None):  # type: ignore[no-untyped-def]
    return cli(tmp_path, database, "release", "build", str(data or release["data"]),
               str(tmp_path / "out"), *release["policies"], "--signing-key",
               str(tmp_path / "sign.pem"), "--workers", "1", "--quiet", "--json",
               "--release-id", "r-1", *extra)


def assert_finished(tmp_path: Path, database: tuple[str, dict], ledger: Ledger,
                    release: dict) -> None:
    out = tmp_path / "out"
    assert not (out / STAGING).exists()
    for name in ("open", "closed"):
        manifest = out / f"{name}.scrub" / "manifest.json"
        assert json.loads(manifest.read_text())["release_id"] == "r-1"
    view = ledger.show(release["request"])
    assert view.status == "applied" and view.releases == ["r-1"]
    assert [e["action"] for e in view.history].count("apply") == 1
    assert ledger.show(release["pending"]).status == "received"
    assert cli(tmp_path, database, "ledger", "verify").exit_code == 0


def interrupt_once(monkeypatch, owner, name: str, when) -> list[int]:  # type: ignore
    """Replace ``owner.name`` by a wrapper that raises KeyboardInterrupt the first time
    ``when(*args)`` holds (a kill at that point), and calls through otherwise."""
    original = getattr(owner, name)
    fired: list[int] = []

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not fired and when(*args, **kwargs):
            fired.append(1)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return fired


def test_a_kill_during_the_ledger_update_is_finished_by_a_rerun(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, release: dict,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fired = interrupt_once(monkeypatch, Ledger, "_append_many",
                           lambda self, session, head, actor, events: actor == "release-builder")
    killed = build(tmp_path, database, release)
    assert fired and killed.exit_code == 130, killed.output
    assert ledger.show(release["request"]).status == "verified"  # the update rolled back
    monkeypatch.undo()
    rerun = build(tmp_path, database, release)
    expect_ok(rerun)
    assert json.loads(rerun.stdout)["requests_marked_applied"] == 1
    assert_finished(tmp_path, database, ledger, release)


def test_a_kill_after_the_ledger_update_records_nothing_twice(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, release: dict,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import scrub.release.publish as building

    fired = interrupt_once(monkeypatch, building.shutil, "rmtree",
                           lambda path, *a, **k: Path(path).name == STAGING)
    killed = build(tmp_path, database, release)
    assert fired and killed.exit_code == 130, killed.output
    monkeypatch.undo()
    rerun = build(tmp_path, database, release)
    expect_ok(rerun)
    assert_finished(tmp_path, database, ledger, release)


def test_a_kill_between_two_variants_being_published_is_finished(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, release: dict,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fired = interrupt_once(monkeypatch, os, "replace",
                           lambda src, dst, **k: Path(src).parent.name == STAGING
                           and Path(src).name == "closed")
    killed = build(tmp_path, database, release)
    assert fired and killed.exit_code == 130, killed.output
    monkeypatch.undo()
    assert (tmp_path / "out" / "open.scrub" / "manifest.json").is_file()
    rerun = build(tmp_path, database, release)
    expect_ok(rerun)
    assert_finished(tmp_path, database, ledger, release)


def test_a_rerun_with_other_inputs_finishes_the_interrupted_release_then_refuses(
        tmp_path: Path, database: tuple[str, dict], ledger: Ledger, release: dict,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    interrupt_once(monkeypatch, Ledger, "_append_many",
                   lambda self, session, head, actor, events: actor == "release-builder")
    assert build(tmp_path, database, release).exit_code == 130
    monkeypatch.undo()
    other = generate_dataset(tmp_path / "other", rows=200, shards=2, seed=6, embeddings=False)
    refused = build(tmp_path, database, release, data=other)
    assert refused.exit_code == 2 and "holds release r-1" in refused.output, refused.output
    assert_finished(tmp_path, database, ledger, release)


def test_requests_apply_records_a_repair_by_hand(tmp_path: Path, database: tuple[str, dict],
                                                 ledger: Ledger) -> None:
    verified, _ = ledger.add(spec("a@example.org"), "alice")
    ledger.transition(verified, "verify", "alice")
    received, _ = ledger.add(spec("b@example.org"), "alice")
    repaired = cli(tmp_path, database, "requests", "apply", str(verified), "--release", "r-7",
                   "--reason", "build killed before its ledger update", "--actor", "ops-ann")
    expect_ok(repaired)
    view = ledger.show(verified)
    assert view.status == "applied" and view.releases == ["r-7"]
    last = view.history[-1]
    assert (last["action"], last["actor"], last["release"], last["reason"]) == (
        "apply", "ops-ann", "r-7", "build killed before its ledger update")
    again = cli(tmp_path, database, "requests", "apply", str(verified), "--release", "r-7")
    assert again.exit_code == 2 and "already records that release" in again.output
    refused = cli(tmp_path, database, "requests", "apply", str(verified), str(received),
                  "--release", "r-8")
    assert refused.exit_code == 2 and f"request {received} is received" in refused.output
    assert ledger.show(verified).releases == ["r-7"]  # all or nothing
    assert cli(tmp_path, database, "requests", "apply", str(verified), "--release", "r-8",
               key=False).exit_code == 2
    assert cli(tmp_path, database, "ledger", "verify").exit_code == 0
