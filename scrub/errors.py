"""The ScrubError family.

The library raises these; the CLI has one handler (``scrub.cli.main``) that turns each into one
line on stderr, an optional hint, and the class's exit code. Messages are written for people and
never carry a partner hash, a matched URL of a sensitive list or a data subject's identity: they
name files, lines, rows and columns, and say what was expected.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def brief(exc: BaseException) -> str:
    """The first line of a third-party exception's message (or its type), for error lines.

    Only for errors of reading files (Arrow, OS): their messages name files and formats, not
    values. Never use it on an exception that may carry a value from a list or a row.
    """
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


class ScrubError(Exception):
    """Base of every expected failure. Exit code 1 (findings / other)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UserInputError(ScrubError):
    """Bad input from the user: a file, a flag, a dataset. Exit code 2."""

    exit_code = 2


class ExternalSourceError(ScrubError):
    """A source outside our control failed or cannot be trusted (signature, database). Exit 3."""

    exit_code = 3


class ReleaseOutdated(ScrubError):
    """A release verifies, but the ledger holds verified requests it predates: not a fault of
    the release, a reason to build a new one. Exit code 4."""

    exit_code = 4


class Interrupted(ScrubError):
    """The user interrupted the run. Exit code 130; completed shards are kept for resuming."""

    exit_code = 130


class InvalidListError(UserInputError):
    """A hash list or registry file is malformed. Names the file and line, never the value."""

    def __init__(self, path: Path | str, line: int | None, problem: str, *,
                 hint: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = Path(path)
        self.line = line


class InvalidDatasetError(UserInputError):
    """A dataset shard is unreadable or lacks the columns a rule needs."""


class OutputConflictError(UserInputError):
    """The output location holds something other than an earlier run of the same job."""


class ShardsFailedError(UserInputError):
    """Some shards could not be processed; the others completed and are kept for a rerun."""

    def __init__(self, failures: list[tuple[str, str]], total: int) -> None:
        self.failures = failures
        first_name, first_problem = failures[0]
        more = f" (and {len(failures) - 1} more shard(s))" if len(failures) > 1 else ""
        super().__init__(
            f"{len(failures)} of {total} shards failed: {first_name}: {first_problem}{more}",
            hint="the other shards are complete; fix the input and rerun the same command "
                 "to finish the job",
        )


class WorkerError(ScrubError):
    """A ScrubError raised in a worker process, rebuilt in the parent: its message, hint and
    exit code cross the process boundary, its class (maybe not importable here) does not."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


class WorkerInternalError(ScrubError):
    """An unexpected exception in a worker process: only its type crosses (its message may hold
    a value), and its traceback when ``SCRUB_DEBUG`` is set. The CLI tells it as every
    unexpected error: type only, exit 1."""

    def __init__(self, type_name: str, traceback: str = "") -> None:
        super().__init__(f"internal error ({type_name})")
        self.type_name = type_name
        self.traceback = traceback


class StorageError(ScrubError):
    """The machine refused to store a write: no space left, over quota, file too large, a failing
    disk. Exit 1: the input is fine; free space and rerun (completed work is kept)."""


# errno -> (what went wrong, whose fault): "input" is the operator's path (exit 2), "storage"
# the machine's disk (exit 1). Anything else is a plain ScrubError naming the OS's reason.
_OS_FAULTS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("cannot write: no space left on the device", "storage"),
    errno.EDQUOT: ("cannot write: disk quota exceeded", "storage"),
    errno.EFBIG: ("cannot write: file too large (file system or process limit)", "storage"),
    errno.EIO: ("input/output error (a failing disk or network mount)", "storage"),
    errno.EROFS: ("read-only file system", "input"),
    errno.EACCES: ("permission denied", "input"),
    errno.EPERM: ("operation not permitted", "input"),
    errno.ENOTDIR: ("a part of the path is a file where a folder is needed", "input"),
    errno.EEXIST: ("exists and is not a folder", "input"),
    errno.EISDIR: ("is a folder, not a file", "input"),
    errno.ENOENT: ("no such file or folder", "input"),
    errno.ENAMETOOLONG: ("file name too long", "input"),
    errno.ELOOP: ("too many levels of symbolic links", "input"),
}


def from_os_error(exc: OSError, path: Path | str | object | None = None) -> ScrubError | None:
    """An OS error as the ScrubError a person can act on, naming the file; None without errno.

    ``path`` names the file when the error does not (a failed write through an open handle).
    Only the errno is used (its standard wording): third-party messages are never echoed.
    """
    if not isinstance(exc.errno, int):
        return None
    named = exc.filename if exc.filename not in (None, "") else path
    where = (f"{os.fsdecode(named)}: " if isinstance(named, (str, bytes, os.PathLike))
             else f"{named}: " if named is not None else "")
    problem, fault = _OS_FAULTS.get(exc.errno, (os.strerror(exc.errno).lower(), "other"))
    if fault == "storage":
        remedy = ("check that disk or mount" if exc.errno == errno.EIO
                  else "free space on that disk (or choose a location on another one)")
        return StorageError(f"{where}{problem}",
                            hint=f"not a problem of the input: {remedy} and rerun the same "
                                 "command; completed work is kept")
    if fault == "input":
        return UserInputError(f"{where}{problem}",
                              hint="check the path and its permissions, or choose another "
                                   "location")
    return ScrubError(f"{where}{problem}")
