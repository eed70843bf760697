"""What a job runs on an executor: a task, its per-unit results and failures.

A task is a module-level, importable ``setup(payload) -> run``, where ``run(unit)`` processes one
unit of work (a shard) and returns a JSON-able result. The payload (a plan, a model) reaches
each worker process once; ``run`` is called for each unit that process is given. The local and
the Ray executor run the same task code, so they write the same bytes.

Failures of a unit, classified the same way on every executor: a :class:`StorageError` (or an
OS error of a full or failing disk) stops the run, since every unit would fail alike; any
other :class:`ScrubError` fails that unit with its message; any other exception fails it as
``internal error (Type)`` (messages may hold values; the traceback only with ``SCRUB_DEBUG``).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from scrub import errors
from scrub.errors import ScrubError, StorageError, from_os_error

U = TypeVar("U")
#: A unit's processing function, made once per worker process from the job's payload.
Run = Callable[[Any], Any]
#: A task: importable by name in worker processes (module level), payload -> ``run``.
Setup = Callable[[Any], Run]
#: A unit's result or failure as it crosses a process boundary (JSON-able).
Envelope = dict[str, Any]


@dataclass
class Outcome(Generic[U]):
    """One unit's result, or the one-line reason it failed (``kind``: the error's class)."""

    unit: U
    result: Any = None
    error: str | None = None
    kind: str | None = None
    hint: str | None = None
    #: The failure's envelope (see :func:`failure`), to raise it again in the parent.
    envelope: Envelope | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def exception(self) -> ScrubError:
        """The failure as it was raised: a ScrubError of its class (or one with its exit code),
        or a :class:`~scrub.errors.WorkerInternalError` naming the unexpected exception's type."""
        if self.envelope is not None:
            return rebuild(self.envelope)
        return errors.WorkerError(self.error or "", hint=self.hint)


def rebuild_error(kind: str, message: str, hint: str | None, exit_code: int = 1) -> ScrubError:
    """A ScrubError of class ``kind`` again; a class not in :mod:`scrub.errors`, or one whose
    constructor differs, as a :class:`~scrub.errors.WorkerError` with the same exit code."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, ScrubError) and kind not in (
            "InvalidListError", "ShardsFailedError", "WorkerError", "WorkerInternalError"):
        return cls(message, hint=hint)
    return errors.WorkerError(message, hint=hint, exit_code=exit_code)


def rebuild(envelope: Envelope) -> ScrubError:
    """The exception a failure envelope stands for."""
    if envelope["error"] == "internal":
        return errors.WorkerInternalError(envelope.get("type", "Exception"),
                                          envelope.get("traceback", ""))
    return rebuild_error(envelope["error"], envelope["message"], envelope.get("hint"),
                         envelope.get("code", 1))


def failure(exc: BaseException) -> Envelope:
    """The envelope of a unit's exception; ``fatal`` when it must stop the run."""
    if isinstance(exc, OSError):
        translated = from_os_error(exc)
        if isinstance(translated, StorageError):
            exc = translated
    if isinstance(exc, errors.WorkerInternalError):  # raised again by a nested runtime
        return {"error": "internal", "type": exc.type_name, "traceback": exc.traceback,
                "message": f"internal error ({exc.type_name}){exc.traceback}", "hint": None,
                "fatal": False}
    if isinstance(exc, ScrubError):
        return {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint,
                "code": exc.exit_code, "fatal": isinstance(exc, StorageError)}
    detail = traceback.format_exc() if os.environ.get("SCRUB_DEBUG") else ""
    return {"error": "internal", "type": type(exc).__name__, "traceback": detail,
            "message": f"internal error ({type(exc).__name__}){detail}", "hint": None,
            "fatal": False}


class OpenedTask:
    """A worker process's task: its payload opened once by ``setup``, then one unit per call.

    A setup that fails with a ScrubError fails each unit it is given, with that error."""

    def __init__(self, setup: Setup, payload: object) -> None:
        self.failed: ScrubError | None = None
        self.run: Run | None = None
        try:
            self.run = setup(payload)
        except ScrubError as exc:
            self.failed = exc

    def __call__(self, unit: object) -> Envelope:
        """``{"ok": result}``, or the unit's failure (see :func:`failure`); never raises."""
        try:
            if self.failed is not None:
                raise self.failed
            if self.run is None:
                raise RuntimeError("task used before its payload was opened")
            return {"ok": self.run(unit)}
        except Exception as exc:  # noqa: BLE001 - classified, the message only if a ScrubError
            return failure(exc)


def outcome_of(unit: U, envelope: Envelope) -> Outcome[U]:
    """The outcome of ``unit`` from its envelope; a fatal failure is raised here."""
    if "ok" in envelope:
        return Outcome(unit, result=envelope["ok"])
    if envelope.get("fatal"):
        raise rebuild(envelope)
    kind = envelope["error"]
    return Outcome(unit, error=envelope["message"], kind=None if kind == "internal" else kind,
                   hint=envelope.get("hint"), envelope=envelope)


def interrupted(done: int, total: int) -> errors.Interrupted:
    """The error of a run stopped by Ctrl-C (completed units are kept for a rerun)."""
    return errors.Interrupted(
        f"interrupted; {done} of {total} shards finished in this run",
        hint="rerun the same command to resume from the completed shards")
