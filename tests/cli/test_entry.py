"""The console entry point builds only the invoked command's part of the tree."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from scrub.cli.main import COMMANDS, MODULES, app, build_app


def _names(root: typer.Typer) -> set[str]:
    return set(typer.main.get_command(root).commands)  # type: ignore[attr-defined]


def test_every_command_is_registered_by_the_module_the_entry_point_loads_for_it() -> None:
    assert _names(app) == set(COMMANDS)
    assert set(COMMANDS.values()) == set(MODULES)
    for name, module in COMMANDS.items():
        assert name in _names(build_app([module])), name


def test_a_command_runs_without_importing_the_other_commands_modules() -> None:
    code = ("import sys\nfrom scrub.cli.main import main\n"
            "try:\n    main(['release', 'build', '--help'])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m.startswith('scrub.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "scrub.cli.release" in loaded
    assert "scrub.cli.apply" not in loaded and "scrub.cli.hash" not in loaded


def test_an_unknown_command_is_named_with_the_whole_tree_to_suggest_from() -> None:
    done = subprocess.run([sys.executable, "-m", "scrub", "relase"], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert "No such command 'relase'" in done.stderr and "'release'" in done.stderr


@pytest.mark.slow
def test_a_finished_command_exits_with_its_status_every_time(tmp_path) -> None:
    """`lists verify` after reading encrypted lists used to abort at interpreter exit in about
    half the runs (exit 134, in pyarrow's native teardown); the entry point ends the process
    once Python's exit work is done. Eight runs: the old abort rate passes all eight ~1 in 250."""
    from scrub.crypto import write_key_file
    from scrub.lists.store import ListStore
    from scrub.synthetic import random_md5s

    key_path = tmp_path / "data.key"
    key = write_key_file(key_path)
    source = tmp_path / "partner.txt"
    source.write_text("\n".join(random_md5s(2000, seed=1)) + "\n")
    store = tmp_path / "store"
    ListStore(store).import_list(source, name="partner", source="org", version="1", key=key)
    command = [sys.executable, "-m", "scrub", "lists", "verify", "--store", str(store),
               "--key-file", str(key_path)]
    statuses = [subprocess.run(command, capture_output=True, text=True, timeout=120).returncode
                for _ in range(8)]
    assert statuses == [0] * 8
    failed = subprocess.run([sys.executable, "-m", "scrub", "lists", "show", "nosuch",
                             "--store", str(store), "--key-file", str(key_path)],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "nosuch" in failed.stderr
