"""The runtime every shard job runs on: job identity, staging and atomic publish, completion
markers and resume, the local and Ray executors, worker set-up, progress.

A job is a task (``setup(payload) -> run(unit)``, module level) over units (shards); it never
keeps a pool, markers or staging of its own. The runtime knows no job: it imports neither the
engine nor any job package."""

from scrub.runtime.distributed import (
    ENGINES,
    RayExecutor,
    check_engine,
    cluster_cpus,
    cluster_gpus,
    connect,
    require_ray,
    warm_cluster,
)
from scrub.runtime.identity import fingerprint, job_identity
from scrub.runtime.local import LocalExecutor
from scrub.runtime.run import Executor, open_executor, run_units, split_done
from scrub.runtime.state import (
    LEGACY_STATE_DIR,
    TMP_DIR,
    JobState,
    Markers,
    StagingArea,
    has_size,
)
from scrub.runtime.task import Outcome, Setup
from scrub.runtime.workers import (
    configure_worker,
    default_workers,
    exit_with_parent,
    worker_threads,
)

__all__ = [
    "ENGINES", "LEGACY_STATE_DIR", "TMP_DIR", "Executor", "JobState", "LocalExecutor",
    "Markers", "Outcome", "RayExecutor", "Setup", "StagingArea", "check_engine",
    "cluster_cpus", "cluster_gpus", "configure_worker", "connect", "default_workers",
    "exit_with_parent", "fingerprint", "has_size", "job_identity", "open_executor",
    "require_ray", "run_units", "split_done", "warm_cluster", "worker_threads",
]
