"""Run a command and report its peak memory: ``peak_rss.py CMD ARGS...``.

Samples the resident set of the command and all its descendants every 20 ms and prints, as the
last line on stderr, ``peak_rss_bytes N`` where N is the largest sum over the process tree seen
(workers included). The command's own stdout and stderr pass through; its exit code is returned.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def main() -> int:
    child = subprocess.Popen(sys.argv[1:])
    handle = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(handle))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    sys.stderr.write(f"peak_rss_bytes {peak}\n")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
