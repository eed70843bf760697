"""The Ray executor: a task's units as Ray tasks, one per unit, at most one per slot in flight.

A Ray task runs exactly the task code the local executor runs, so the output is the same bytes;
resume is the runtime's (completed units are skipped before anything is scheduled). The payload
travels once per worker process, sealed (AES-256-GCM under a fresh key, the key only in task
arguments); a task whose worker or node dies is retried by Ray (its upload, if any, is redone
whole). Why tasks and not Ray Data, the measurements and the trust argument for the sealed
pickle: docs/design/runtime.md.
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
from scrub.errors import UserInputError
from scrub.runtime.task import Envelope, OpenedTask, Outcome, Setup, interrupted, outcome_of
from scrub.runtime.workers import configure_arrow

#: Associated data of the sealed payload (binds the ciphertext to its purpose).
_AAD = b"scrub.distributed.payload.v1"

ENGINES = ("local", "ray")


def require_ray() -> Any:
    """The ``ray`` module, or a UserInputError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserInputError("--engine ray needs Ray, which is not installed",
                             hint="pip install 'scrub[ray]'") from None
    return ray


def check_engine(engine: str, address: str | None) -> None:
    """Refuse an unknown ``--engine``, ``--address`` without Ray, or Ray not installed."""
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
    return max(1, int(require_ray().cluster_resources().get("CPU", 1)))


def cluster_gpus() -> int:
    return int(require_ray().cluster_resources().get("GPU", 0))


def seal(payload: object) -> tuple[bytes, bytes]:
    """(key, nonce + ciphertext) of ``payload`` pickled in memory."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    return key, nonce + AESGCM(key).encrypt(nonce, pickle.dumps(payload, protocol=5), _AAD)


def unseal(key: bytes, blob: bytes) -> object:
    """The payload of :func:`seal`. AES-GCM refuses bytes not sealed under this job's key (held
    in memory only), so this unpickles only what this job's driver wrote, even when the bytes
    come back from Ray's spill files (docs/design/runtime.md)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return pickle.loads(AESGCM(key).decrypt(blob[:12], blob[12:], _AAD))  # noqa: S301


#: The opened task of this worker process, by job key: one per job, however many units.
_OPENED: dict[bytes, OpenedTask] = {}


def _shard_call(unit: object, refs: list[Any], key: bytes, setup: Setup, threads: int) -> str:
    """One Ray task: ``unit`` with this process's opened task (opened on its first unit of
    the job, kept for the next ones); its envelope as JSON."""
    task = _OPENED.get(key)
    if task is None:
        _OPENED.clear()  # another job's payload is no longer needed
        for name in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))  # read by polars/OpenBLAS on import
        import ray

        configure_arrow(threads)
        task = _OPENED[key] = OpenedTask(setup, unseal(key, ray.get(refs[0])))
    return json.dumps(task(unit))


def _warm(warm: Callable[[], None] | None, threads: int) -> int:
    """Run a job's warm-up in a worker process (its later tasks of the job start warm)."""
    for name in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    if warm is not None:
        warm()
    return os.getpid()


def warm_cluster(count: int, warm: Callable[[], None] | None = None) -> None:
    """Have ``count`` worker processes run ``warm`` now, while the driver builds its payload
    (the job's later tasks run in the same processes)."""
    ray = require_ray()
    task = ray.remote(num_cpus=1)(_warm)
    ray.get([task.remote(warm, 1) for _ in range(count)])


def stream(setup: Setup, payload: object, units: Sequence[Any], *, workers: int | None = None,
           num_gpus: float = 0.0) -> Iterator[tuple[int, Envelope]]:
    """``(index, envelope)`` of every unit, a Ray task each, as they finish (any order)."""
    ray = require_ray()
    if not units:
        return
    size = max(1, min(workers or cluster_cpus(), len(units)))
    key, blob = seal(payload)
    refs = [ray.put(blob)]
    del blob
    task = ray.remote(num_cpus=1, num_gpus=num_gpus or 0, max_retries=-1)(_shard_call)
    queue = iter(enumerate(units))
    running: dict[Any, int] = {}

    def submit() -> None:
        item = next(queue, None)
        if item is not None:
            running[task.remote(item[1], refs, key, setup, 1)] = item[0]

    for _ in range(size):  # then one more as each finishes: at most ``size`` at a time
        submit()
    # Ray prints cluster events ("a worker died ...") to the driver's stdout; while the job
    # runs they go to stderr, so stdout keeps only scrub's own output (--json).
    try:
        with contextlib.redirect_stdout(sys.stderr):
            while running:
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    index = running.pop(ref)
                    submit()
                    yield index, json.loads(ray.get(ref))
    finally:
        for other in running:  # stopped early (an error, Ctrl-C): cancel the queued rest
            ray.cancel(other)


class RayExecutor:
    """:class:`~scrub.runtime.local.LocalExecutor`'s interface over a Ray cluster.

    ``num_gpus``: GPUs each task takes (1 for scoring on GPUs; workers then defaults to the
    cluster's GPUs)."""

    def __init__(self, address: str | None = None, workers: int | None = None, *,
                 warm: Callable[[], None] | None = None, num_gpus: float = 0.0) -> None:
        self.address, self.workers, self.warm_fn = address, workers, warm
        self.num_gpus = num_gpus
        self._loaded: tuple[Setup, object] | None = None
        self._warming: threading.Thread | None = None
        self._connected = False

    def __enter__(self) -> RayExecutor:
        self._connected = not require_ray().is_initialized()
        connect(self.address, num_cpus=self.workers)
        if self.warm_fn is not None and not self.num_gpus:
            self._warming = threading.Thread(target=self._warm, name="scrub-ray-warm",
                                             daemon=True)
            self._warming.start()
        return self

    def _warm(self) -> None:
        # a hint only: the job itself reports any failure
        with contextlib.suppress(Exception):
            warm_cluster(self.workers or cluster_cpus(), self.warm_fn)

    def __exit__(self, *exc_info: object) -> None:
        """Leave the cluster when this executor joined it (a caller's own ``ray.init`` is
        theirs to end): Ray prints cluster events (a node that died) on stdout as they come,
        even after the job, which would land after ``--json`` output."""
        if self._connected:
            with contextlib.redirect_stdout(sys.stderr):
                require_ray().shutdown()

    def hint(self, messages: set[str]) -> None:
        return None  # workers prepare what the payload needs on their first unit

    def load(self, setup: Setup, payload: object) -> None:
        self._loaded = (setup, payload)

    def run(self, units: Sequence[Any], *,
            on_done: Callable[[Outcome[Any]], None] | None = None) -> list[Outcome[Any]]:
        """Process ``units``; one outcome per unit, in input order."""
        if self._loaded is None:
            raise RuntimeError("load a task before running")
        if self._warming is not None:
            self._warming.join()
        setup, payload = self._loaded
        workers = self.workers
        if self.num_gpus:
            workers = min(workers or cluster_gpus(), cluster_gpus())
        outcomes: list[Outcome[Any] | None] = [None] * len(units)
        try:
            for index, envelope in stream(setup, payload, units, workers=workers,
                                          num_gpus=self.num_gpus):
                outcome = outcomes[index] = outcome_of(units[index], envelope)
                if on_done is not None:
                    on_done(outcome)
        except KeyboardInterrupt:
            raise interrupted(sum(o is not None for o in outcomes), len(units)) from None
        return [o for o in outcomes if o is not None]
