"""A worker process starts light: it imports the shard task and what it needs, not the CLI,
the ledger, the image path or the release, and pyarrow never makes it import pandas; the CLI's
own process skips pandas too, which stays importable for anyone who asks for it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Modules (and their submodules) an apply worker has no use for.
NOT_IN_A_WORKER = ("typer", "click", "sqlalchemy", "alembic", "PIL", "pandas", "scrub.ledger",
                   "scrub.images", "scrub.release", "scrub.nsfw", "torch")
ROOT = Path(__file__).resolve().parents[2]

#: Started like the ``scrub`` console script (a file that imports scrub.cli.main, which each
#: spawned worker runs again as ``__mp_main__``); its workers report their sys.modules.
WORKER_PROBE = '''
import sys
from scrub.cli.main import main


def setup(payload):
    return report


def report(unit):
    return sorted(sys.modules)


if __name__ == "__main__":
    import json
    import scrub.apply.task as task
    from scrub.runtime import LocalExecutor

    with LocalExecutor(2, warm=task.warm, prepare=task.prepare) as executor:
        executor.load(setup, None)
        outcomes = executor.run(["a", "b"])
    print(json.dumps([outcome.result for outcome in outcomes]))
'''


def _loaded(names: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden)]


def _python(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_spawned_apply_worker_loads_neither_the_cli_nor_ledger_images_release_nor_pandas(
        tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(WORKER_PROBE)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for modules in json.loads(done.stdout.strip().splitlines()[-1]):
        assert "scrub.apply.task" in modules and "pyarrow" in modules
        assert _loaded(modules, NOT_IN_A_WORKER) == []
        assert _loaded(modules, ("scrub.cli",)) in ([], ["scrub.cli", "scrub.cli.main"])


def test_a_worker_set_up_runs_without_pandas_which_stays_importable() -> None:
    out = _python("""
        import sys
        import numpy as np
        import pyarrow as pa
        import scrub.apply.task as task
        from scrub.runtime.workers import configure_worker
        configure_worker(1)
        task.warm()
        pa.array(np.arange(3)), pa.table({"n": [1, 2]})
        hidden = "pandas" not in sys.modules
        import pandas
        print(hidden, pa.table({"n": [1, 2]}).to_pandas()["n"].sum())
    """)
    assert out == "True 3"


def test_the_cli_process_skips_pandas_before_its_command_runs() -> None:
    out = _python("""
        import sys
        from scrub.cli import main as cli
        cli._exit = lambda code: print("pandas" in sys.modules, code)
        sys.argv = ["scrub", "hash", "--help"]
        cli.main()
    """)
    assert out == "False 0"


def test_a_worker_imports_nothing_it_does_not_need() -> None:
    """What the worker's modules import on their own (-X importtime's view of it)."""
    out = _python("""
        import sys, json
        import scrub.runtime.local, scrub.apply.task, scrub.engine.filtering
        print(json.dumps(sorted(sys.modules)))
    """)
    assert _loaded(json.loads(out), (*NOT_IN_A_WORKER, "scrub.cli")) == []
