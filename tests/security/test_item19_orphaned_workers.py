"""Issue 19, item 19: when scrub's main process is killed (``kill -9``, the OOM killer, a
scheduler's time limit), its worker processes exit too, and with them multiprocessing's
resource tracker, which then unlinks the job's semaphores from ``/dev/shm``.

Each test runs a real job in a child process, waits for its workers, freezes them (so the
parent is surely still waiting on them), kills the parent alone with SIGKILL, lets the workers
run again and expects every process the parent started to be gone within seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import scrub
from scrub.images.synthetic import generate_webdataset
from scrub.synthetic import generate_dataset, random_md5s, write_hashlist

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").is_file(),
                                 reason="reads the process table from /proc (Linux)")]

#: How long the orphaned processes get to notice and exit (they should take well under 1 s).
GONE_WITHIN_S = 20.0


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and fields[1] == str(parent):
                found.append(int(entry.name))
    return found


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def semaphores(pid: int) -> set[int]:
    """Inodes of the POSIX semaphores ``pid`` has mapped (what multiprocessing's locks and
    queues use; glibc maps them under a temporary name, linked to ``/dev/shm/sem.mp-...``)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    return {int(fields[4]) for line in lines
            if len(fields := line.split(maxsplit=5)) == 6 and "/dev/shm/sem." in fields[5]}


def semaphore_files(inodes: set[int]) -> list[str]:
    """The files in /dev/shm that are still one of these semaphores."""
    found = []
    for entry in Path("/dev/shm").glob("sem.*"):
        try:
            if entry.stat().st_ino in inodes:
                found.append(entry.name)
        except OSError:
            continue
    return found


def kill_parent_alone(args: list[str], workers: int) -> tuple[list[int], list[int], set[int]]:
    """Start ``python -m scrub ARGS``, wait for its ``workers`` worker processes and its
    resource tracker, freeze the workers, SIGKILL the parent only, then let the workers run.
    Returns (worker pids, resource tracker pids, the parent's semaphores' inodes)."""
    env = dict(os.environ, PYTHONPATH=str(Path(scrub.__file__).resolve().parents[1]))
    log = tempfile.TemporaryFile()  # noqa: SIM115 (read back by the caller after the run)
    parent = subprocess.Popen([sys.executable, "-m", "scrub", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=log)
    spawned: list[int] = []
    trackers: list[int] = []
    try:
        def started() -> bool:
            nonlocal spawned, trackers
            kids = children(parent.pid)
            spawned = [p for p in kids if "spawn_main" in cmdline(p)]
            trackers = [p for p in kids if "resource_tracker" in cmdline(p)]
            return len(spawned) >= workers and bool(trackers)

        if not wait_until(started, 120):
            log.seek(0)
            pytest.fail(f"the job did not start {workers} workers ({parent.poll()=}): "
                        f"{log.read().decode(errors='replace')}")
        for pid in spawned:
            os.kill(pid, signal.SIGSTOP)  # the parent now waits on them: it is mid-job
        assert parent.poll() is None, "the job ended before its parent could be killed"
        shm = semaphores(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        assert parent.wait(30) == -signal.SIGKILL
        return spawned, trackers, shm
    finally:
        for pid in spawned:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)
        if parent.poll() is None:  # the test failed before its kill: end everything
            parent.kill()
            parent.wait()
            for pid in spawned:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        log.close()


def expect_gone(workers: list[int], trackers: list[int], shm: set[int]) -> None:
    assert shm, "the job's parent had no semaphore mapped: nothing to check"
    try:
        everyone = workers + trackers
        wait_until(lambda: not any(alive(p) for p in everyone), GONE_WITHIN_S, step=0.1)
        left = {p: cmdline(p) for p in everyone if alive(p)}
        assert not left, f"still running after their parent was killed: {left}"
        # the tracker unlinks the semaphores it was told about once every user is gone
        assert wait_until(lambda: not semaphore_files(shm), 10, step=0.1), \
            f"semaphores left in /dev/shm: {semaphore_files(shm)}"
    finally:
        # leave nothing behind, pass or fail: end the workers, then give the tracker (whose
        # pipe then closes) its chance to unlink the semaphores before ending it too
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(p) for p in trackers), 10, step=0.1)
        for pid in trackers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_apply_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", rows=400, shards=4, seed=3, embeddings=False)
    hashlist = write_hashlist(tmp_path / "list.txt", list(random_md5s(20, seed=1)))
    args = ["apply", str(data), str(tmp_path / "out"), "--hashlist", str(hashlist),
            "--workers", "2", "--quiet"]
    workers, trackers, shm = kill_parent_alone(args, workers=2)
    expect_gone(workers, trackers, shm)
    # the same command then runs to the end in parallel: the watchdog ends no healthy worker
    env = dict(os.environ, PYTHONPATH=str(Path(scrub.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "scrub", *args], env=env, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 4


def test_apply_on_a_webdataset_exits_with_its_parent(tmp_path: Path) -> None:
    data = generate_webdataset(tmp_path / "wds", shards=2, samples=6, seed=4)
    hashlist = write_hashlist(tmp_path / "list.txt", list(random_md5s(20, seed=2)))
    workers, trackers, shm = kill_parent_alone(
        ["apply", str(data), str(tmp_path / "out"), "--hashlist", str(hashlist),
         "--workers", "2", "--quiet"], workers=2)
    expect_gone(workers, trackers, shm)


def test_hash_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    tars = generate_webdataset(tmp_path / "wds", shards=3, samples=6, seed=5)
    workers, trackers, shm = kill_parent_alone(
        ["hash", str(tars), str(tmp_path / "hashes"), "--types", "md5", "--workers", "2",
         "--quiet"], workers=2)
    expect_gone(workers, trackers, shm)


def test_release_build_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    from scrub.crypto import write_signing_keypair

    data = generate_dataset(tmp_path / "data", rows=400, shards=4, seed=3, embeddings=False)
    policy = tmp_path / "policy.toml"
    policy.write_text('[policy]\nname = "research"\ndescription = "scores only"\n\n'
                      '[nsfw]\nscore = "stored"\n[[nsfw.rules]]\nabove = 0.95\n')
    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    workers, trackers, shm = kill_parent_alone(
        ["release", "build", str(data), str(tmp_path / "out"), "--policy", str(policy),
         "--signing-key", str(tmp_path / "sign.pem"), "--workers", "2", "--quiet"], workers=2)
    expect_gone(workers, trackers, shm)
