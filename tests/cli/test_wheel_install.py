"""A pip-installed scrub works outside the checkout: the wheel carries the ledger's migrations
and the stock policies, and its ``scrub`` runs ``db upgrade`` and ``demo`` from another folder.

The wheel is built from a copy of the source (the checkout stays untouched) and installed
without dependencies into a fresh venv that borrows this environment's packages through a
``.pth`` line; ``scrub`` itself comes only from the wheel (checked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import read_only_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from: packaging files and the folders it ships.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "scrub", "migrations", "policies")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "-w", str(work / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (found,) = (work / "dist").glob("scrub-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; the dependencies come from this environment."""
    target = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    python = target / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # a path line (not an import line): this environment's packages, after the venv's own;
    # its .pth files (the editable install's finder) are not run
    Path(purelib, "zz-borrowed-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                                "--quiet", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return target


def run(venv: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``scrub ARGS`` from the venv's console script, in ``cwd``, with a clean environment."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("SCRUB_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(venv / "bin" / "scrub"), *args], cwd=cwd,
                          env={**clean, "SCRUB_HOME": str(cwd / "home"), **env},
                          capture_output=True, text=True, timeout=600)


def test_the_wheel_ships_the_migrations_and_the_stock_policies(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {f"scrub/_migrations/versions/{p.name}"
                 for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert revisions and revisions <= names
    assert {"scrub/_migrations/env.py", "scrub/_migrations/script.py.mako",
            "scrub/_policies/research.toml", "scrub/_policies/research-safe.toml",
            "scrub/_policies/keywords.txt"} <= names
    # nothing outside the package (no top-level migrations/ in site-packages)
    tops = {name.split("/", 1)[0] for name in names} - {"scrub"}
    assert len(tops) == 1 and tops.pop().endswith(".dist-info")


def test_scrub_comes_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import scrub, scrub.cli.main; print(scrub.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    assert not Path(where.stdout.strip()).is_relative_to(ROOT)


def test_db_upgrade_and_the_demo_run_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    upgraded = run(venv, tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "home" / "ledger.db").is_file()
    demo = run(venv, tmp_path, "demo", "--rows", "2000", "--workdir", "demo", "--quiet")
    assert demo.returncode == 0, demo.stderr
    for variant in ("research", "research-safe"):  # the stock policies, from the package
        assert (tmp_path / "demo" / "release" / variant).is_dir()
    # the ledger's path as the demo prints it (relative to the folder it ran in) is a --db
    assert "demo/ledger.db" in demo.stdout
    listed = run(venv, tmp_path, "requests", "ls", "--db", "demo/ledger.db")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("1\t")


def test_an_unknown_stock_policy_lists_the_stock_names(venv: Path, tmp_path: Path) -> None:
    result = run(venv, tmp_path, "release", "build", "data", "out", "--policy", "reserch",
                 "--signing-key", "none.pem")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("scrub: error:")]
    assert len(errors) == 1 and "research, research-safe" in errors[0]
    assert not (tmp_path / "out").exists()


def test_an_unwritable_scrub_home_is_one_line_and_writes_nothing(venv: Path,
                                                                 tmp_path: Path) -> None:
    with read_only_folder(tmp_path / "ro") as home:
        for command in (("db", "upgrade"), ("requests", "ls"), ("db", "current")):
            result = run(venv, tmp_path, *command, SCRUB_HOME=str(home))
            assert result.returncode == 2, (command, result.stderr)
            errors = [line for line in result.stderr.splitlines()
                      if line.startswith("scrub: error:")]
            assert len(errors) == 1 and str(home) in errors[0], result.stderr
            assert "SCRUB_HOME" in result.stderr and "Traceback" not in result.stderr
        assert list(home.iterdir()) == []
