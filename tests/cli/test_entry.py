"""The console entry point builds only the invoked command's part of the tree."""

from __future__ import annotations

import subprocess
import sys

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
