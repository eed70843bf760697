"""The run loop every job shares: choose an executor, split done from pending, run with progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from scrub.progress import Progress
from scrub.runtime.local import LocalExecutor, Prepare, Warm
from scrub.runtime.task import Outcome, Setup

U = TypeVar("U")
R = TypeVar("R")


class Executor(Protocol):
    """Where a task's units run: :class:`LocalExecutor` or
    :class:`~scrub.runtime.distributed.RayExecutor` (a context manager: entering starts it)."""

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def hint(self, messages: set[str]) -> None:
        """Something the coming payload needs, for idle workers to prepare (a hint only)."""

    def load(self, setup: Setup, payload: object) -> None:
        """The task and its payload, handed to the workers once."""

    def run(self, units: Sequence[Any], *,
            on_done: Callable[[Outcome[Any]], None] | None = None) -> list[Outcome[Any]]:
        """One outcome per unit, in input order; a fatal failure or Ctrl-C raises."""


def open_executor(engine: str, *, workers: int | None = None, address: str | None = None,
                  warm: Warm | None = None, prepare: Prepare | None = None,
                  num_gpus: float = 0.0) -> Executor:
    """The executor of ``--engine`` (``local`` or ``ray``); check the flags first with
    :func:`~scrub.runtime.distributed.check_engine`."""
    if engine == "ray":
        from scrub.runtime.distributed import RayExecutor

        return RayExecutor(address, workers, warm=warm, num_gpus=num_gpus)
    return LocalExecutor(workers, warm=warm, prepare=prepare)


def split_done(units: Sequence[U], completed: Callable[[U], R | None]
               ) -> tuple[list[tuple[U, R]], list[U]]:
    """(units an earlier run completed with their records, units still to do), input order."""
    done: list[tuple[U, R]] = []
    pending: list[U] = []
    for unit in units:
        record = completed(unit)
        if record is None:
            pending.append(unit)
        else:
            done.append((unit, record))
    return done, pending


def run_units(executor: Executor, units: Sequence[U], *, meter: Progress | None = None,
              rows: Callable[[Outcome[U]], int] = lambda outcome: 0) -> list[Outcome[U]]:
    """Run the loaded task over ``units``; ``meter`` advances by ``rows(outcome)`` as each
    finishes and is finished at the end, however the run ends."""
    def on_done(outcome: Outcome[Any]) -> None:
        if meter is not None:
            meter.advance(rows(outcome))

    try:
        return executor.run(units, on_done=on_done)
    finally:
        if meter is not None:
            meter.finish()
