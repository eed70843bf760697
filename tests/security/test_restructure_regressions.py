"""Red-team checks of the restructuring (issue 22): behaviour that held at 550b7e9 and must hold
after the move to ``scrub/runtime`` and the release split.

Each test drives the CLI in process, so the same file runs against the old tree
(``PYTHONPATH=/tmp/base``) and the new one. Tests marked ``REGRESSION`` passed at 550b7e9 and
failed on the restructured code until fixed (scrub/runtime/task.py rebuilds a worker's failure
with its exit code or as a WorkerInternalError the handler tells as before; release/plan.py
reads no store no policy uses); tests marked ``GUARD`` hold on both and keep a promise the
restructure touched.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from scrub.crypto import write_signing_keypair
from scrub.synthetic import generate_dataset

PLANTED = "d41d8cd98f00b204e9800998ecf8427e"  # an md5, as a partner list would hold
URL = "https://victim.example/private/photo.jpg"
INTERNAL_LINE = ("scrub: internal error (RuntimeError); rerun with SCRUB_DEBUG=1 for the "
                 "traceback and report it")


def _cli(*args: object) -> Result:
    from scrub.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _policy(folder: Path, name: str, above: float) -> Path:
    """A policy that applies no list: rows whose stored punsafe is above ``above`` go."""
    path = folder / f"{name}.toml"
    path.write_text(f'[policy]\nname = "{name}"\n[[nsfw.rules]]\nabove = {above}\n')
    return path


@pytest.fixture()
def release_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(dataset, policy, signing key) of a small release build."""
    data = generate_dataset(tmp_path / "data", rows=600, shards=2, seed=3, embeddings=False)
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    return data, _policy(tmp_path, "open", 0.5), tmp_path / "sign.pem"


def _build(data: Path, policy: Path, key: Path, out: Path, *extra: object) -> Result:
    return _cli("release", "build", data, out, "--policy", policy, "--signing-key", key,
                "--workers", "1", "--quiet", "--json", *extra)


def _fail_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every release shard raises an unexpected error whose message holds planted values
    (``build_shard`` as the old ``release.build`` and the new ``release.task`` call it)."""
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"matched {PLANTED} at {URL}")

    for name in ("scrub.release.build", "scrub.release.task"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        monkeypatch.setattr(module, "build_shard", boom, raising=False)


def test_release_shard_internal_error_keeps_the_handlers_line(
        release_inputs: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """REGRESSION. An unexpected error in a release shard is told as every unexpected error
    is (SECURITY.md "What is logged", test_item20_internal_error): the CLI handler's one line,
    type only, with the SCRUB_DEBUG hint, exit 1. At 550b7e9 the shard's exception reached
    the handler; the runtime now turns it into ``ScrubError("internal error (RuntimeError)")``
    (scrub/runtime/task.py ``failure``/``rebuild_error``, raised by
    scrub/release/build.py ``_build_shards``), so the line becomes
    ``scrub: error: internal error (RuntimeError)`` without the hint."""
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)
    _fail_shards(monkeypatch)
    result = _build(*release_inputs, tmp_path / "out")
    out = result.stdout + result.stderr
    assert result.exit_code == 1, out
    assert PLANTED not in out and URL not in out
    assert result.stderr.strip().splitlines()[0] == INTERNAL_LINE, out


def test_release_shard_internal_error_publishes_nothing_and_leaks_nothing(
        release_inputs: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GUARD. A failed shard stops the build before publication: no variant folder, no
    manifest, exit 1, and the exception's message (planted values) appears nowhere on the
    terminal nor in any file the build left."""
    monkeypatch.delenv("SCRUB_DEBUG", raising=False)
    _fail_shards(monkeypatch)
    out = tmp_path / "out"
    result = _build(*release_inputs, out)
    printed = result.stdout + result.stderr
    assert result.exit_code == 1, printed
    assert PLANTED not in printed and URL not in printed and "Traceback" not in printed
    assert not (out / "open").exists() and not (out / "open.scrub").exists()
    for path in out.rglob("*") if out.exists() else []:
        if path.is_file():
            data = path.read_bytes()
            assert PLANTED.encode() not in data and URL.encode() not in data, path


def test_release_build_leaves_a_store_it_does_not_use_alone(
        release_inputs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """REGRESSION (minor). With policies that apply no list, ``--store`` is not read: at
    550b7e9 ``plan_release`` opened the store only when some policy names lists. Now
    scrub/release/plan.py ``plan_release`` passes the given store to ``_list_refs``, which
    reads its catalog whenever a store was given, so a build that uses no list fails on the
    store (here a file where the store folder should be: exit 2)."""
    store = tmp_path / "not-a-store"
    store.write_text("a file, not a list store\n")
    out = tmp_path / "out"
    result = _build(*release_inputs, out, "--store", store)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (out / "open.scrub" / "manifest.json").is_file()
