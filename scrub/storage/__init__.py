"""Where datasets and outputs lie: local paths, or object storage (``s3://bucket/prefix``,
and any URI pyarrow has a filesystem for) behind the part of pathlib scrub uses.

Reads are ranged requests through pyarrow; writes make each object appear complete or not at
all (:mod:`scrub.storage.writes`). Keys, lists and the ledger stay local: only dataset shards,
job state and release artifacts are written to a bucket (SECURITY.md).
"""

from scrub.storage.failures import MissingBucketError
from scrub.storage.paths import ObjectPath, ObjectStat, is_remote, is_uri, location

__all__ = ["MissingBucketError", "ObjectPath", "ObjectStat", "is_remote", "is_uri",
           "location"]
