"""Timing and peak memory of a command run as its own process, for the benchmarks."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import time

import psutil


def timed(command: list[str]) -> tuple[float, int, str]:
    """Run ``command``; its wall time, its peak RSS (summed over its process tree) and stdout.

    RSS is sampled every 100 ms; the list of descendants is refreshed once a second, since
    walking /proc costs CPU the measured command would otherwise get.
    """
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    handle = psutil.Process(child.pid)
    tree, refreshed, peak = [handle], 0.0, 0
    while child.poll() is None:
        now = time.monotonic()
        if now - refreshed > 1.0:
            with contextlib.suppress(psutil.NoSuchProcess):
                tree, refreshed = [handle] + handle.children(recursive=True), now
        total = 0
        for proc in tree:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        peak = max(peak, total)
        time.sleep(0.1)
    out, err = child.communicate()
    elapsed = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{err}")
    return elapsed, peak, out


def default_workers() -> int:
    """scrub's default worker count, from wherever this checkout defines it (issue 22 moved it
    from ``scrub.engine.local`` to ``scrub.runtime``), so the benchmarks run on either."""
    for module in ("scrub.runtime", "scrub.engine.local"):
        try:
            return int(importlib.import_module(module).default_workers())
        except (ImportError, AttributeError):
            continue
    raise SystemExit("scrub defines no default_workers")
