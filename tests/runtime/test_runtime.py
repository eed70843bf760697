"""The runtime on its own: resume after a failed or killed shard, the output folder's conflict
rules, and the local pool, the in-process executor and Ray running the same task alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scrub.errors import OutputConflictError, ScrubError, StorageError
from scrub.runtime import JobState, LocalExecutor, job_identity, run_units, split_done
from tests.runtime import tasks

NAMES = [f"part-{i:02d}.parquet" for i in range(6)]


def run_job(output: Path, log: Path, *, workers: int = 2, fail: tuple[str, ...] = (),
            factor: int = 3, force: bool = False, engine: str = "local"):  # type: ignore[no-untyped-def]
    from scrub.runtime import open_executor

    log.mkdir(exist_ok=True)
    state = JobState(output, job_identity("toy", {"factor": factor}))
    state.prepare(force=force, shards=NAMES)
    done, pending = split_done(NAMES, lambda name: tasks.completed(state, name))
    with open_executor(engine, workers=workers) as executor:
        executor.load(tasks.setup, {"state": state, "log": log, "fail": fail, "factor": factor})
        outcomes = run_units(executor, pending)
    if not any(o.failed for o in outcomes):
        state.finish()
    return done, outcomes


def runs(log: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in sorted(log.iterdir())}


def test_a_failed_shard_fails_alone_and_a_rerun_does_only_it(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    _, outcomes = run_job(out, log, fail=(NAMES[2],))
    failed = [o for o in outcomes if o.failed]
    assert [o.unit for o in failed] == [NAMES[2]]
    assert failed[0].error == f"{NAMES[2]}: refused on purpose"
    assert failed[0].kind == "UserInputError"
    assert sorted(p.name for p in out.glob("*.parquet")) == sorted(set(NAMES) - {NAMES[2]})
    done, outcomes = run_job(out, log)
    assert [o.unit for o in outcomes] == [NAMES[2]]  # only the failed shard is redone
    assert len(done) == 5
    assert runs(log) == {name: 2 if name == NAMES[2] else 1 for name in NAMES}
    assert not (out / ".scrub-tmp").exists()


def test_a_shard_killed_mid_write_is_redone_and_its_leftovers_go(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    run_job(out, log)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # as a kill leaves it: a partial file in staging, an output whose marker was never written
    (out / ".scrub-tmp").mkdir()
    (out / ".scrub-tmp" / f"{NAMES[4]}.partial").write_bytes(b"half")
    (out.with_name("out.scrub") / "done" / f"{NAMES[4]}.json").unlink()
    (out / NAMES[1]).write_bytes(b"torn")  # an output that no longer matches its marker
    done, outcomes = run_job(out, log)
    assert sorted(o.unit for o in outcomes) == sorted([NAMES[1], NAMES[4]])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert runs(log) == {n: 2 if n in (NAMES[1], NAMES[4]) else 1 for n in NAMES}


def test_conflict_rules_of_an_output_folder(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    run_job(out, log)
    with pytest.raises(OutputConflictError, match="different scrub job"):
        run_job(out, log, factor=4)
    run_job(out, log, factor=4, force=True)  # replaced: every shard made again
    assert runs(log) == {name: 2 for name in NAMES}
    assert (out / NAMES[0]).read_bytes() == f"rows of {NAMES[0]} x 4".encode()
    (out / "stray.parquet").write_bytes(b"x")
    with pytest.raises(OutputConflictError, match="not this job's shards"):
        run_job(out, log, factor=4, force=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputConflictError, match="exists and is not empty"):
        run_job(busy, log)


def test_a_full_disk_stops_the_run(tmp_path: Path) -> None:
    state = JobState(tmp_path / "out", job_identity("toy", {}))
    state.prepare(force=False, shards=["full-disk"])
    (tmp_path / "log").mkdir()
    for workers in (1, 2):
        with LocalExecutor(workers) as executor:
            executor.load(tasks.setup, {"state": state, "log": tmp_path / "log",
                                        "factor": 1})
            with pytest.raises(StorageError, match="no space left on purpose"):
                executor.run(["full-disk"])


def test_the_pool_and_this_process_run_the_same_task_alike(tmp_path: Path) -> None:
    _, pooled = run_job(tmp_path / "a", tmp_path / "log-a", workers=2, fail=(NAMES[3],))
    _, here = run_job(tmp_path / "b", tmp_path / "log-b", workers=1, fail=(NAMES[3],))
    assert [(o.unit, o.result, o.error) for o in pooled] == \
        [(o.unit, o.result, o.error) for o in here]
    pids = {int(p.read_text()) for p in (tmp_path / "log-a").iterdir()}
    assert os.getpid() not in pids  # the pool's units ran in worker processes, not here
    assert {int(p.read_text()) for p in (tmp_path / "log-b").iterdir()} == {os.getpid()}
    assert {(tmp_path / "a" / n).read_bytes() for n in NAMES if n != NAMES[3]} == \
        {(tmp_path / "b" / n).read_bytes() for n in NAMES if n != NAMES[3]}


@pytest.mark.slow
def test_ray_runs_the_same_task_and_resumes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        _, here = run_job(tmp_path / "a", tmp_path / "log-a", workers=1, fail=(NAMES[3],))
        _, on_ray = run_job(tmp_path / "b", tmp_path / "log-b", engine="ray",
                            fail=(NAMES[3],))
        assert [(o.unit, o.result, o.error, o.kind) for o in on_ray] == \
            [(o.unit, o.result, o.error, o.kind) for o in here]
        pids = {int(line) for p in (tmp_path / "log-b").iterdir()
                for line in p.read_text().split()}
        assert os.getpid() not in pids  # Ray's worker processes ran them
        done, again = run_job(tmp_path / "b", tmp_path / "log-b", engine="ray")
        assert [o.unit for o in again] == [NAMES[3]] and len(done) == 5
    finally:
        ray.shutdown()


@pytest.mark.parametrize("killed_at", ["mkdir", "job.json"])
def test_a_job_killed_while_claiming_its_folder_can_rerun(tmp_path: Path, monkeypatch,
                                                          killed_at: str) -> None:
    """A kill between creating the companion folder and recording job.json (workers start
    before the plan, so a kill can land there) leaves a folder the same job claims again
    without --force; it never reads as another job's or a busy folder."""
    import scrub.atomic
    from scrub.runtime import state as state_module

    output = tmp_path / "out"
    job = job_identity("test", {"n": 1})
    real_replace = os.replace

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if killed_at == "mkdir":  # killed right after the companion folder appears
        monkeypatch.setattr(state_module, "atomic_write_json", killed)
    else:  # killed with job.json's partial file written, before its rename
        monkeypatch.setattr(scrub.atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        JobState(output, job).prepare(force=False, shards=["a.parquet"])
    monkeypatch.undo()
    assert os.replace is real_replace
    state = JobState(output, job)
    state.prepare(force=False, shards=["a.parquet"])  # the rerun claims it: no conflict
    assert (state.root / "job.json").is_file()
    with pytest.raises(OutputConflictError):  # while another job's folder is still refused
        JobState(output, job_identity("test", {"n": 2})).prepare(force=False)


class _SealBroken(ScrubError):
    """A ScrubError class outside scrub.errors, with its own exit code."""

    exit_code = 3


def _raising(exc: BaseException):  # a task's run function that raises ``exc``
    def setup(_payload: object):
        def run(_unit: object) -> None:
            raise exc
        return run
    return setup


def test_a_units_failure_is_raised_again_with_its_exit_code_or_its_type_only() -> None:
    """What crosses from a worker: a ScrubError's message, hint and exit code (whatever its
    class), an unexpected exception's type only (its message may hold a value)."""
    from scrub.errors import WorkerInternalError
    from scrub.runtime.task import OpenedTask, outcome_of

    cases = [(_SealBroken("seal broken", hint="restore it"), 3),
             (OutputConflictError("busy"), 2)]
    for exc, code in cases:
        outcome = outcome_of("u", OpenedTask(_raising(exc), None)("u"))
        again = outcome.exception()
        assert (again.message, again.hint, again.exit_code) == (exc.message, exc.hint, code)
    secret = "d41d8cd98f00b204e9800998ecf8427e"
    outcome = outcome_of("u", OpenedTask(_raising(ValueError(secret)), None)("u"))
    again = outcome.exception()
    assert isinstance(again, WorkerInternalError) and again.type_name == "ValueError"
    assert secret not in again.message and secret not in (outcome.error or "")
