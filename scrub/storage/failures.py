"""Object storage failures as ScrubErrors a person can act on.

Only the kind of failure is told (access refused, no such bucket, store unreachable), with the
location the user gave: a store's own message is never echoed, and no credential appears in any
of them (the settings are named, not their values).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager

from scrub.errors import ExternalSourceError, ScrubError, UserInputError

#: Error codes of pyarrow (AWS SDK for C++ names) and botocore for refused credentials.
_DENIED = re.compile(r"ACCESS_DENIED|SIGNATURE_DOES_NOT_MATCH|INVALID_ACCESS_KEY_ID|"
                     r"AccessDenied|SignatureDoesNotMatch|InvalidAccessKeyId|"
                     r"NoCredentialsError|Unable to locate credentials|EXPIRED_TOKEN|"
                     r"ExpiredToken|InvalidToken|403")
_NO_BUCKET = re.compile(r"NO_SUCH_BUCKET|NoSuchBucket")
_UNREACHABLE = re.compile(r"NETWORK_CONNECTION|Could not connect|EndpointConnectionError|"
                          r"ConnectTimeout|ReadTimeout|Connection refused|timed out|"
                          r"UNKNOWN_ENDPOINT")
#: Local OS errors of a full or failing disk (a temporary copy of an object being written):
#: the machine's, told as such by the caller (scrub.errors.from_os_error), not the store's.
_LOCAL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

CREDENTIALS_HINT = ("check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                    "AWS_ENDPOINT_URL, and the bucket's permissions")


class MissingBucketError(UserInputError):
    """The bucket named by a location does not exist (exit 2)."""

    missing_bucket = True


def classify(exc: BaseException, where: object) -> ScrubError | None:
    """The ScrubError for a failed object storage call on ``where``, or None when the failure
    is not one of storage's (not found is the caller's to tell)."""
    text = f"{type(exc).__name__} {exc}"
    code = _error_code(exc)
    if code:
        text = f"{text} {code}"
    if _NO_BUCKET.search(text):
        return MissingBucketError(f"{_bucket_of(where)}: no such bucket",
                                  hint="create it first, or check the location's spelling")
    if _DENIED.search(text):
        return ExternalSourceError(f"{where}: the object store refused access "
                                   "(credentials or permissions)", hint=CREDENTIALS_HINT)
    if _UNREACHABLE.search(text):
        return ExternalSourceError(f"{where}: cannot reach the object store",
                                   hint="check AWS_ENDPOINT_URL and the network; rerun the "
                                        "same command to resume")
    return None


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return f"{error.get('Code', '')} {status or ''}"
    return ""


def _bucket_of(where: object) -> str:
    text = str(where)
    scheme, sep, rest = text.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if sep else text


@contextmanager
def translated(where: object) -> Iterator[None]:
    """Raise storage failures inside the block as the ScrubError of :func:`classify`; other
    OS errors of the store as a ScrubError naming the location and the error's type only."""
    try:
        yield
    except ScrubError:
        raise
    except FileNotFoundError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in _LOCAL_DISK:
            raise  # the machine's disk (a local copy being written), not the store
        found = classify(exc, where)
        if found is not None:
            raise found from None
        if isinstance(exc, OSError) or type(exc).__module__.startswith("botocore"):
            raise ScrubError(f"{where}: object storage request failed ({type(exc).__name__})",
                             hint="rerun the same command to resume; SCRUB_DEBUG=1 shows "
                                  "more") from (exc if _debug() else None)
        raise


def _debug() -> bool:
    import os

    return bool(os.environ.get("SCRUB_DEBUG"))
