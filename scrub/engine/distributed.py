"""The Ray executor: the same per-shard work as the local executor, as tasks on a Ray cluster.

``scrub apply``, ``scrub release build`` and ``scrub nsfw rescore`` take ``--engine ray
[--address auto|ray://HOST:PORT]``. Each shard is one Ray task (``num_cpus=1``, ``num_gpus=1``
for rescoring on GPUs), at most one per slot in flight, results streamed back as they finish
(``ray.wait``). A task runs exactly the function the local executor runs (the same kernel, the
same atomic writer into the same output folder), so the output is byte-identical; resume is the
jobs' own (completed shards are skipped before anything is scheduled). While the driver builds
its plan, one task per slot imports the engine in the worker processes the cluster keeps
started, which then run the job's tasks (:func:`warm_cluster`).

Why tasks and not Ray Data's ``map_batches``: a shard is already the unit of work (a whole file
in, a whole file out, committed by rename), so there are no blocks to stream, and on the 2-core
development machine Ray Data's streaming executor cost ~7 s of CPU per job (its driver loop and
its three helper actors: measured with psutil) — 0.73-0.82x the local executor's throughput on
10M rows, against 0.87x with plain tasks (bench/ray_engine.py). Scheduling, retries and the
object store are Ray's; nothing here distributes work by itself.

What the tasks need (the match plan with its lists, the job's keys) travels **once per worker
process** through the object store, never per shard: the driver pickles it in memory, seals it
with AES-256-GCM under a fresh key and ``ray.put``s the ciphertext once; a process fetches that
object on its first task of the job and keeps it opened in its own memory for the next ones. So
lists stay encrypted in the object store, and in any object Ray spills to disk; the key travels
only in the tasks' arguments.

Fault tolerance is Ray's: a task whose worker process dies is retried (``max_retries=-1``).
Every shard's work is idempotent: it writes under a temporary name and commits by rename, so a
retried shard yields the same bytes.

Every output folder must be reachable at the same path from every node (a shared file system),
as it is on one machine. Tasks never raise for an expected failure: they return the error's
class and message (which, like every ScrubError, name files and rows, never values), and the
driver raises it again (after cancelling the tasks still queued).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from scrub import errors
from scrub.errors import ScrubError, UserInputError

#: Associated data of the sealed payload (binds the ciphertext to its purpose).
_AAD = b"scrub.distributed.payload.v1"

ENGINES = ("local", "ray")


def require_ray():  # type: ignore[no-untyped-def]
    try:
        import ray
    except ImportError:
        raise UserInputError("--engine ray needs Ray, which is not installed",
                             hint="pip install 'scrub[ray]'") from None
    return ray


def check_engine(engine: str, address: str | None) -> None:
    if engine not in ENGINES:
        raise UserInputError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise UserInputError("--address is for --engine ray")
    if engine == "ray":
        require_ray()


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine;
    ``ray://HOST:PORT``: a remote one), or start a local one when ``address`` is None."""
    ray = require_ray()
    if address not in (None, "auto", "local"):
        _probe(address)  # Ray itself would retry an unreachable address for minutes
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                               "log_to_driver": bool(os.environ.get("SCRUB_DEBUG"))}
    try:
        if address is None:
            ray.init(num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserInputError(f"--address {address}: cannot join a Ray cluster "
                             f"({errors.brief(exc)})",
                             hint="start one with `ray start --head`, or leave out --address "
                             "to run a local one") from None


def _probe(address: str, timeout: float = 5.0) -> None:
    """A clear error, quickly, when nothing listens at ``[ray://]HOST:PORT``."""
    import socket

    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--address {address}: expected auto, HOST:PORT or "
                             "ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserInputError(f"--address {address}: nothing answers there "
                             f"({errors.brief(exc)})",
                             hint="start the cluster with `ray start --head`, or check the "
                             "address and port") from None


def cluster_cpus() -> int:
    ray = require_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus() -> int:
    return int(require_ray().cluster_resources().get("GPU", 0))


def seal(payload: object) -> tuple[bytes, bytes]:
    """(key, nonce + ciphertext) of ``payload`` pickled in memory."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    return key, nonce + AESGCM(key).encrypt(nonce, pickle.dumps(payload, protocol=5), _AAD)


def unseal(key: bytes, blob: bytes) -> object:
    """The payload of :func:`seal`.

    The house rule is never to unpickle what came from disk, because a pickle runs whatever
    its writer put in it. Here the bytes may come back from Ray's spill files, but AES-GCM
    refuses them unless they were sealed under this job's key, which exists only in the
    driver's and the tasks' memory: only this job's driver can have written them. That is the
    same trust as the pipes the local executor sends its plan through (also pickles)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return pickle.loads(AESGCM(key).decrypt(blob[:12], blob[12:], _AAD))  # noqa: S301


class _ShardWorker:
    """A worker process's opened payload: opens it once, then runs one shard per call."""

    def __init__(self, refs: list, key: bytes, setup: Callable[[Any], Callable[[int], Any]],
                 threads: int) -> None:
        # read by polars and OpenBLAS when first imported in this process
        for name in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))
        import pyarrow as pa
        import ray

        pa.set_memory_pool(pa.system_memory_pool())  # as the local workers (no warm-up cost)
        pa.set_cpu_count(threads)
        pa.set_io_thread_count(max(threads, 2))
        payload = unseal(key, ray.get(refs[0]))
        self.failed: ScrubError | None = None
        try:
            self.run = setup(payload)
        except ScrubError as exc:  # reported by each of its shards, not retried forever
            self.failed = exc

    def __call__(self, index: int) -> str:
        """Shard ``index``'s result, or its error's class and message, as JSON."""
        try:
            if self.failed is not None:
                raise self.failed
            return json.dumps({"ok": self.run(index)})
        except ScrubError as exc:
            return json.dumps({"error": type(exc).__name__, "message": exc.message,
                               "hint": exc.hint})
        except Exception as exc:  # noqa: BLE001 - the message may hold a value: type only
            return json.dumps({"error": "internal",
                               "message": f"internal error ({type(exc).__name__})"})


#: The opened payloads of this worker process, by job key: one per job, however many tasks.
_OPENED: dict[bytes, _ShardWorker] = {}


def _shard_call(index: int, refs: list, key: bytes,
                setup: Callable[[Any], Callable[[int], Any]], threads: int) -> str:
    """One Ray task: shard ``index`` with this process's opened payload (opened on its first
    task of the job, kept for the next ones); its result or error as JSON."""
    worker = _OPENED.get(key)
    if worker is None:
        _OPENED.clear()  # another job's payload is no longer needed
        worker = _OPENED[key] = _ShardWorker(refs, key, setup, threads)
    return worker(index)


def _warm(threads: int) -> int:
    """Import the engine in a worker process (its later tasks of this job start warm)."""
    for name in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    from scrub.engine.filtering import warm_up
    from scrub.engine.local import process_one  # noqa: F401

    warm_up()
    return os.getpid()


def warm_cluster(count: int) -> None:
    """Have ``count`` worker processes import the engine now, while the driver builds its
    plan (the job's later tasks run in the same processes)."""
    ray = require_ray()
    task = ray.remote(num_cpus=1)(_warm)
    ray.get([task.remote(1) for _ in range(count)])


def _reraise(result: dict[str, Any]) -> None:
    name = result["error"]
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, ScrubError) and name not in (
            "InvalidListError", "ShardsFailedError"):
        raise cls(result["message"], hint=result.get("hint"))
    raise ScrubError(result["message"], hint=result.get("hint"))


def ray_map(setup: Callable[[Any], Callable[[int], Any]], payload: object, count: int, *,
            workers: int | None = None, num_gpus: float = 0.0) -> Iterator[tuple[int, Any]]:
    """Run ``setup(payload)(i)`` for every ``i < count``, a Ray task each; yield
    ``(i, result)`` as shards finish (any order). ``setup`` and the results must be picklable
    and JSON-able respectively. An expected error in a shard is raised here, by class."""
    ray = require_ray()
    if count == 0:
        return
    size = max(1, min(workers or cluster_cpus(), count))
    key, blob = seal(payload)
    refs = [ray.put(blob)]
    del blob
    threads = 1
    task = ray.remote(num_cpus=1, num_gpus=num_gpus or 0, max_retries=-1)(_shard_call)
    queue = iter(range(count))
    running: dict[Any, int] = {}

    def submit() -> None:
        index = next(queue, None)
        if index is not None:
            running[task.remote(index, refs, key, setup, threads)] = index

    for _ in range(size):  # then one more as each finishes: at most ``size`` at a time
        submit()
    # Ray prints cluster events ("a worker died ...") to the driver's stdout; while the job
    # runs they go to stderr, so stdout keeps only scrub's own output (--json).
    with contextlib.redirect_stdout(sys.stderr):
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                index = running.pop(ref)
                submit()
                result = json.loads(ray.get(ref))
                if "error" in result:
                    for other in running:
                        ray.cancel(other)
                    _reraise(result)
                yield index, result["ok"]


# --------------------------------------------------------------------------- scrub apply


def _apply_setup(payload: dict[str, Any]) -> Callable[[int], Any]:
    from scrub.engine.filtering import warm_up
    from scrub.engine.local import process_one

    warm_up()
    plan, state, shards = payload["plan"], payload["state"], payload["shards"]

    def run(index: int) -> dict[str, Any]:
        outcome = process_one(plan, state, shards[index], payload["overrides"], payload["key"])
        return {"stats": outcome.stats.to_json() if outcome.stats else None,
                "error": outcome.error}

    return run


class RayExecutor:
    """:class:`~scrub.engine.local.LocalExecutor`'s interface over a Ray cluster."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address, self.workers = address, workers
        self._loaded: tuple[Any, Any, Any] | None = None
        self._warming: threading.Thread | None = None

    def __enter__(self) -> "RayExecutor":
        connect(self.address, num_cpus=self.workers)
        self._warming = threading.Thread(target=self._warm, name="scrub-ray-warm", daemon=True)
        self._warming.start()
        return self

    def _warm(self) -> None:
        try:
            warm_cluster(self.workers or cluster_cpus())
        except Exception:  # noqa: BLE001 - a hint only; the job itself reports any failure
            pass

    def __exit__(self, *exc_info: object) -> None:
        return None

    def warm(self, kernels: set[str]) -> None:
        return None  # workers compile what the plan needs on their first shard

    def load(self, plan: Any, overrides: Any = None, key: bytes | None = None) -> None:
        self._loaded = (plan, overrides, key)

    def run(self, state: Any, shards: Sequence[Any], *,
            on_done: Callable[[Any], None] | None = None) -> list[Any]:
        from scrub.engine.local import ShardOutcome
        from scrub.engine.stats import ShardStats

        if self._loaded is None:
            raise RuntimeError("load a plan before running")
        if self._warming is not None:
            self._warming.join()
        plan, overrides, key = self._loaded
        payload = {"plan": plan, "overrides": overrides, "key": key, "state": state,
                   "shards": list(shards)}
        outcomes: list[Any] = [None] * len(shards)
        try:
            for index, result in ray_map(_apply_setup, payload, len(shards),
                                         workers=self.workers):
                stats = result["stats"]
                outcome = ShardOutcome(shards[index], error=result["error"],
                                       stats=ShardStats.from_json(stats) if stats else None)
                outcomes[index] = outcome
                if on_done is not None:
                    on_done(outcome)
        except KeyboardInterrupt:
            from scrub.errors import Interrupted

            done = sum(o is not None for o in outcomes)
            raise Interrupted(
                f"interrupted; {done} of {len(shards)} shards finished in this run",
                hint="rerun the same command to resume from the completed shards") from None
        return outcomes
