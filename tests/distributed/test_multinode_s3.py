"""``--engine ray`` on a two-node Ray cluster whose nodes share no folder, INPUT and OUTPUT in
object storage (SeaweedFS): the local executor's bytes, also when a worker node dies mid-run.

The nodes are two ``ray start`` on this machine, each with its own Ray temp dir, TMPDIR and
working folder, one CPU each; the S3 settings reach them through their environment, as on a
real cluster. Killing a node is killing its raylet (its ``ray start --block`` then ends the
rest of the node)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from scrub.synthetic import generate_dataset, read_column
from tests.helpers import expect_ok, run_cli, write_planted_lists
from tests.s3server import local_tree

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
#: The GCS declares a silent node dead after about a second (Ray's default: 15 s or more).
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "300", "RAY_health_check_timeout_ms": "300",
                      "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    """One ``ray start --block`` in its own folder (Ray temp dir, TMPDIR, working folder)."""

    def __init__(self, folder: Path, args: list[str], env: dict[str, str]) -> None:
        self.folder = folder
        (folder / "tmp").mkdir(parents=True)
        self.log = open(folder / "ray-start.log", "wb")  # noqa: SIM115 (closed by stop)
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--runtime-env-agent-port", "--metrics-export-port"]
        command = [RAY, "start", "--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                   "--temp-dir", str(folder / "ray"), "--disable-usage-stats", *args,
                   *(arg for flag in ports for arg in (flag, str(free_port())))]
        self.process = subprocess.Popen(
            command, cwd=folder, stdout=self.log, stderr=subprocess.STDOUT,
            env={**env, "TMPDIR": str(folder / "tmp")}, start_new_session=True)
        self.tree: dict[int, psutil.Process] = {}

    def processes(self) -> list[psutil.Process]:
        """``ray start`` and every process under it (remembered, so stop finds them all)."""
        try:
            root = psutil.Process(self.process.pid)
            self.tree.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        except psutil.NoSuchProcess:
            pass
        return [p for p in self.tree.values() if p.is_running()]

    def raylet(self) -> psutil.Process | None:
        return next((p for p in self.processes() if _command(p).startswith("raylet")), None)

    def running_a_shard(self) -> bool:
        """Whether a worker process of this node is running a shard now."""
        return any(_command(p).startswith("ray::_shard_call") for p in self.processes())

    def stop(self) -> None:
        """End the node: SIGTERM to ``ray start`` (it stops its processes), then SIGKILL to
        whatever of it remains; only processes this node started."""
        left = self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        for proc in [*left, *self.processes()]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(left, timeout=5)
        self.process.wait()
        self.log.close()


class TwoNodes:
    """A head node and one worker node, one CPU each, sharing no folder."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        #: This cluster's own token (not ``~/.ray``'s, which other Ray users here may change):
        #: every node and the driver need it.
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.nodes: list[Node] = []
        try:
            self.head = self._add(Node(root / "head", [
                "--head", "--port", str(self.port), "--include-dashboard", "false",
                "--dashboard-port", str(free_port())],
                {**env, **self.auth, **FAST_HEALTH_CHECKS}))
            self._wait(lambda: _answers(self.port), "the head node")
            self.worker = self._add(Node(root / "worker", ["--address", self.address],
                                         {**env, **self.auth}))
            self._wait(lambda: self.alive_nodes() == 2, "two nodes")
        except BaseException:
            self.stop()
            raise

    def _add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n.folder.name for n in self.nodes if n.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join((n.folder / "ray-start.log").read_text(errors="replace")
                                 for n in self.nodes)
                raise RuntimeError(f"no {what} (ended: {dead}):\n{logs}")
            time.sleep(0.5)

    def alive_nodes(self) -> int:
        """Nodes the cluster counts as alive (``ray status``'s "Active" section)."""
        status = subprocess.run([RAY, "status", "--address", self.address],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, **self.auth})
        active = status.stdout.partition("Active:")[2].partition("Pending:")[0]
        return sum(line.strip().startswith("1 node_") for line in active.splitlines())

    def stop(self) -> None:
        for node in reversed(self.nodes):  # the worker first, the head (GCS) last
            node.stop()


def _command(proc: psutil.Process) -> str:
    """``proc``'s name (Ray's workers show what they run as their title), or "" once gone."""
    try:
        return proc.name() if proc.name() == "raylet" else " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def cluster(s3) -> Iterator[TwoNodes]:
    """Two Ray nodes with the S3 settings (and nothing else of this test) in their env."""
    root = Path(tempfile.mkdtemp(prefix="scrub-2n-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTEST"))}
    started: list[TwoNodes] = []
    try:
        started.append(TwoNodes(root, {**env, **s3.env}))
        yield started[0]
    finally:
        if started:
            started[0].stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Job:
    """12 small shards in the bucket (``laion/``), the lists on the driver's disk, and the
    shards the local executor wrote from the same data (the expected bytes)."""

    s3: Any
    driver: Path
    lists: list[str]
    expected: dict[str, bytes]
    removed: int

    def apply_on(self, cluster: TwoNodes) -> subprocess.CompletedProcess[str]:
        """``scrub apply s3://.../laion s3://.../clean --engine ray --address HEAD``, a driver
        process with its own working and temporary folder."""
        command = [sys.executable, "-m", "scrub", "apply", self.s3.uri("laion"),
                   self.s3.uri("clean"), *self.lists, "--engine", "ray", "--address",
                   cluster.address, "--quiet", "--json"]
        env = {**os.environ, **cluster.auth, "TMPDIR": str(self.driver)}
        return subprocess.run(command, cwd=self.driver, env=env, capture_output=True,
                              text=True, timeout=300)

    def check(self, result: subprocess.CompletedProcess[str]) -> None:
        """The run succeeded, wrote the local executor's shards byte for byte, and left no
        incomplete upload, no temporary object and no staging folder on the driver."""
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["rows_removed"] == self.removed
        written = self.s3.server.objects(self.s3.bucket, "clean")
        shards = {k.removeprefix("clean/"): v for k, v in written.items()
                  if k.startswith("clean/") and k.count("/") == 1}
        assert shards == self.expected
        assert len([k for k in written if k.startswith("clean.scrub/done/")]) == 12
        assert not self.s3.server.uploads(self.s3.bucket)
        assert not [k for k in written if "partial" in k or "scrub-tmp" in k]
        assert not list(self.driver.iterdir())


@pytest.fixture
def job(s3, tmp_path: Path) -> Job:
    data = generate_dataset(tmp_path / "data", rows=120_000, shards=12, seed=8,
                            embeddings=False)
    values = {"md5": read_column(data, "md5").gather(list(range(0, 120_000, 991))).to_list(),
              "sha256": read_column(data, "sha256").gather([4, 70_001]).to_list(),
              "url": read_column(data, "URL").gather([17, 119_999]).to_list()}
    lists = write_planted_lists(tmp_path / "lists", values)
    args = [arg for path in lists for arg in ("--hashlist", str(path))]
    local = expect_ok(run_cli("apply", data, tmp_path / "local", *args, "--workers", "2",
                              "--quiet", "--json"))
    s3.server.upload_folder(data, s3.bucket, "laion")
    (tmp_path / "driver").mkdir()
    return Job(s3, tmp_path / "driver", args, local_tree(tmp_path / "local"),
               json.loads(local.stdout)["rows_removed"])


def test_two_nodes_without_a_shared_folder_write_the_local_bytes(cluster: TwoNodes,
                                                                  job: Job) -> None:
    job.check(job.apply_on(cluster))
    # both nodes ran shards, staging them in their own temporary folder
    for node in cluster.nodes:
        assert list((node.folder / "tmp").glob("scrub-staging-*")), node.folder.name


def test_a_worker_node_killed_mid_run_changes_no_byte(cluster: TwoNodes, job: Job) -> None:
    killed: list[int] = []
    done = threading.Event()

    def kill_the_worker_node() -> None:
        client = job.s3.server.client()
        while not done.is_set():
            listed = client.list_objects_v2(Bucket=job.s3.bucket, Prefix="clean.scrub/done/")
            raylet = cluster.worker.raylet()
            if listed.get("KeyCount", 0) >= 2 and raylet and cluster.worker.running_a_shard():
                raylet.kill()  # mid-run: shards done, one running on that node, more to do
                killed.append(raylet.pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker_node)
    killer.start()
    try:
        result = job.apply_on(cluster)
    finally:
        done.set()
        killer.join()
    assert killed, f"the worker node ran no shard mid-run to kill:\n{result.stderr}"
    cluster.worker.process.wait(timeout=30)  # the node is gone, not just its raylet
    job.check(result)
