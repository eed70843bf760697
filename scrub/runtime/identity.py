"""Job identity: what an output folder was made by, as a fingerprint of everything that shapes
its bytes (input, settings, plan). A rerun with the same identity resumes; another is refused
unless forced (:class:`~scrub.runtime.state.JobState`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def fingerprint(body: Mapping[str, object]) -> str:
    """sha256 hex of ``body`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def job_identity(kind: str, body: Mapping[str, object]) -> dict[str, object]:
    """The ``job.json`` of a job: its kind and the fingerprint of ``body``."""
    return {"job": kind, "fingerprint": fingerprint(body)}
