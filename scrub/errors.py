"""The ScrubError family.

The library raises these; the CLI has one handler (``scrub.cli.main``) that turns each into one
line on stderr, an optional hint, and the class's exit code. Messages are written for people and
never carry a partner hash, a matched URL of a sensitive list or a data subject's identity: they
name files, lines, rows and columns, and say what was expected.
"""

from __future__ import annotations

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
