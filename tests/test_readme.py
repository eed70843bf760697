"""The README's two set-up commands exist and the demo command runs as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the quick start has a shell block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_has_exactly_two_setup_commands() -> None:
    assert quick_start_commands() == ["make demo", "make test"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_make_targets_run_scrub_demo_and_pytest() -> None:
    demo, test = (subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT,
                                 capture_output=True, text=True) for target in ("demo", "test"))
    assert demo.returncode == 0 and test.returncode == 0
    assert demo.stdout.strip().splitlines()[-1].endswith("bin/scrub demo")
    assert test.stdout.strip().splitlines()[-1].endswith("bin/python -m pytest")
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_scrub_demo_runs_from_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "scrub"
    assert script.is_file(), "the scrub console script is installed beside this python"
    proc = subprocess.run([str(script), "demo", "--rows", "6000", "--shards", "3"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rows removed: 9" in proc.stdout
    assert (tmp_path / "scrub-demo" / "scrubbed.scrub" / "apply-report.json").is_file()
    assert "apply: 3/3 shards" in proc.stderr
