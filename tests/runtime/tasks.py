"""A toy job for the runtime's tests: each unit (a name) writes ``OUTPUT/NAME.parquet`` through
the job state's staging and commit, and appends its name to ``LOG/NAME`` so a test can see which
units ran. Module level, so spawned workers and Ray tasks import it by name."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scrub.errors import StorageError, UserInputError
from scrub.runtime import JobState


def setup(payload: Mapping[str, Any]) -> Callable[[str], dict[str, Any]]:
    state: JobState = payload["state"]
    log: Path = payload["log"]
    fail = set(payload.get("fail", ()))

    def run(name: str) -> dict[str, Any]:
        with open(log / name, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if name in fail:
            raise UserInputError(f"{name}: refused on purpose")
        if name == "full-disk":
            raise StorageError("no space left on purpose")
        tmp = state.staging(name)
        tmp.write_bytes(f"rows of {name} x {payload['factor']}".encode())
        marker = {"size": tmp.stat().st_size, "factor": payload["factor"]}
        state.commit(name, [(tmp, name)], marker)
        return marker

    return run


def completed(state: JobState, name: str) -> dict[str, Any] | None:
    """The marker of ``name`` when its output is still the size it records."""
    return state.completed(name, lambda m: (state.output / name).stat().st_size == m["size"])
