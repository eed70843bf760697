"""Item 17: an operator's mistake or a full disk ends in one line naming the file and what is
wrong, with the documented exit code; never ``internal error (X)``, never a hang.

Covered here: a CSV with a quoted multi-line field, JSONL with ``1e999`` (and its kin), a
read-only OUTPUT, a read-only or file ``SCRUB_HOME``, a full disk (exit 1, not "fix the input"),
a FIFO (or device, or folder) given as a hash list or key file, and a FIFO, folder or broken
link named like a shard of the dataset. Each goes through the CLI (a child process where the
old behaviour was to hang).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scrub.synthetic import generate_dataset, random_md5s, read_column
from tests.helpers import expect_exit, run_cli

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: object, env: dict[str, str] | None = None):
    return run_cli(*args, env={"SCRUB_DEBUG": "", **(env or {})})


def assert_one_clear_error(result, code: int, *names: object, secrets: tuple[str, ...] = ()):
    """Exit ``code``, an ``scrub: error:`` line naming every one of ``names``, no internal
    error, no traceback, and no secret value anywhere in the output."""
    out = result.stdout + result.stderr
    assert result.exit_code == code, out
    assert "internal error" not in out and "Traceback" not in out, out
    lines = [line for line in result.stderr.splitlines() if line.startswith("scrub: error: ")]
    assert len(lines) == 1, out
    for name in names:
        assert str(name) in lines[0], out
    for secret in secrets:
        assert secret.lower() not in out.lower(), out


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("item17") / "ds", rows=400, shards=2,
                            seed=17, embeddings=False)


@pytest.fixture(scope="module")
def listed(small_dataset: Path) -> list[str]:
    """md5 values of rows of the dataset (a list naming them removes rows)."""
    return read_column(small_dataset, "md5").to_list()[:3]


@pytest.fixture
def good_list(tmp_path: Path, listed: list[str]) -> Path:
    path = tmp_path / "good.txt"
    path.write_text("".join(f"{v}\n" for v in listed))
    return path


@contextlib.contextmanager
def _mounted_tmpfs(where: Path, options: str) -> Iterator[bool]:
    """A tmpfs at ``where`` (True), or False when this machine does not allow mounting."""
    where.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        yield False
        return
    done = subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run([umount, "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder nobody (root included) can write: a read-only tmpfs as root, else 0555."""
    where = tmp_path / "ro"
    with _mounted_tmpfs(where, "ro,size=64k") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root without mount(8): no folder is read-only to root")
            where.chmod(0o555)
        try:
            yield where
        finally:
            if not mounted:
                where.chmod(0o755)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder nobody can create files in: immutable (chattr +i) as root, else 0555."""
    where = tmp_path / "locked"
    where.mkdir()
    chattr = shutil.which("chattr")
    if os.geteuid() == 0:
        if chattr is None or subprocess.run([chattr, "+i", str(where)],
                                            capture_output=True).returncode != 0:
            pytest.skip("root without chattr +i here: no folder is unwritable to root")
        try:
            yield where
        finally:
            subprocess.run([chattr, "-i", str(where)], capture_output=True)
    else:
        where.chmod(0o555)
        try:
            yield where
        finally:
            where.chmod(0o755)


# ----------------------------------------------------------------------- list files


CSV_CASES = [
    # a quoted field running over a line break: csv.reader used to merge the lines and shift
    # every row after it (a crash, or wrong line numbers)
    ("multiline.csv", 'value,type\n"{0}\nmore",md5\n{1},md5\n', 2),
    ("multiline-blank.csv", 'value,type\n{0},md5\n"{1}\n\n# in the field\n",md5\n{2},md5\n', 3),
    ("multiline.tsv", 'value\ttype\n"{0}\n"\tmd5\n', 2),
    ("after-quote.csv", 'value,type\n{0},md5\n"{1}"junk,md5\n', 3),
    ("header.csv", '"value,type\n{0},md5\n', 1),
]


@pytest.mark.slow
def test_csv_quoted_field_over_lines_names_its_line(small_dataset: Path, tmp_path: Path,
                                                     listed: list[str]) -> None:
    for name, body, line in CSV_CASES:
        path = tmp_path / name
        path.write_text(body.format(*listed))
        result = invoke("apply", small_dataset, tmp_path / "out", "--hashlist", path,
                        "--workers", "1", "-q")
        assert_one_clear_error(result, 2, f"{path}:{line}", secrets=tuple(listed))
        assert not (tmp_path / "out").exists()  # a bad list writes nothing
        stored = invoke("lists", "import", path, "--name", "l", "--source", "s",
                        "--version", "1", "--public", "--store", tmp_path / "store")
        assert_one_clear_error(stored, 2, f"{path}:{line}", secrets=tuple(listed))
    # fields quoted whole, on one line each, still load
    path = tmp_path / "quoted.csv"
    path.write_text('"value","type"\n' + "".join(f'"{v}","md5"\n' for v in listed))
    result = invoke("lists", "import", path, "--name", "l", "--source", "s", "--version", "1",
                    "--public", "--store", tmp_path / "store")
    assert result.exit_code == 0, result.stderr
    assert "md5 3" in result.stdout


@pytest.mark.parametrize("extra, line", [
    ('"n": 1e999', 1),               # overflows a double: Python reads inf, polars refuses
    ('"n": -1E+400', 1),
    ('"n": NaN', 1),                 # not JSON at all (RFC 8259), though Python accepts it
    ('"n": Infinity', 1),
    ('"n": ' + "[" * 50_000 + "]" * 50_000, 1),  # nesting deeper than Python's recursion
])
def test_jsonl_numbers_out_of_range_name_the_line(small_dataset: Path, tmp_path: Path,
                                                  listed: list[str], extra: str,
                                                  line: int) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text(f'{{"type": "md5", "value": "{listed[0]}", {extra}}}\n')
    result = invoke("apply", small_dataset, tmp_path / "out", "--hashlist", path,
                    "--workers", "1", "-q")
    assert_one_clear_error(result, 2, f"{path}:{line}", secrets=tuple(listed))


def test_jsonl_bad_number_deep_in_a_file_names_its_own_line(tmp_path: Path) -> None:
    values = list(random_md5s(500, seed=3))
    lines = [f'{{"type": "md5", "value": "{v}"}}' for v in values]
    lines[400] = f'{{"type": "md5", "value": "{values[400]}", "score": 1e999}}'
    path = tmp_path / "list.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = invoke("lists", "import", path, "--name", "l", "--source", "s", "--version", "1",
                    "--public", "--store", tmp_path / "store")
    assert_one_clear_error(result, 2, f"{path}:401", secrets=(values[400],))


# ----------------------------------------------------------------------- FIFOs and devices


def _scrub(*args: object, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """The real console entry in a child process: a hang fails the test instead of the run."""
    env = {k: v for k, v in os.environ.items() if k != "SCRUB_DEBUG"}
    try:
        return subprocess.run([sys.executable, "-m", "scrub", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scrub {' '.join(map(str, args[:2]))} hung (on a FIFO?)")


@pytest.mark.slow
def test_fifo_as_hashlist_is_refused_not_waited_on(small_dataset: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    done = _scrub("apply", small_dataset, tmp_path / "out", "--hashlist", fifo,
                  "--workers", "1", "-q")
    assert done.returncode == 2, done.stderr
    assert f"scrub: error: {fifo}: a FIFO" in done.stderr
    assert "internal error" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["symlink-to-fifo", "device", "folder", "csv-fifo"])
def test_non_regular_list_files_are_refused(small_dataset: Path, tmp_path: Path,
                                            kind: str) -> None:
    if kind == "symlink-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        path = tmp_path / "list.txt"
        path.symlink_to(tmp_path / "pipe")
    elif kind == "csv-fifo":
        path = tmp_path / "list.csv"
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "folder.txt"
        path.mkdir()
    done = _scrub("apply", small_dataset, tmp_path / "out", "--hashlist", path,
                  "--workers", "1", "-q")
    assert done.returncode == 2, done.stderr
    assert f"scrub: error: {path}: " in done.stderr and "not a regular" in done.stderr
    imported = _scrub("lists", "import", path, "--name", "l", "--source", "s", "--version", "1",
                      "--public", "--store", tmp_path / "store")
    assert imported.returncode == 2, imported.stderr
    assert f"scrub: error: {path}: " in imported.stderr


@pytest.mark.slow
def test_fifo_as_key_file_is_refused(tmp_path: Path, good_list: Path) -> None:
    fifo = tmp_path / "data.key"
    os.mkfifo(fifo)
    done = _scrub("lists", "import", good_list, "--name", "l", "--source", "s", "--version", "1",
                  "--key-file", fifo, "--store", tmp_path / "store")
    assert done.returncode == 2, done.stderr
    assert f"scrub: error: {fifo}: a FIFO" in done.stderr


@pytest.mark.slow
def test_dataset_entries_that_are_not_files_are_refused(small_dataset: Path, tmp_path: Path,
                                                        good_list: Path) -> None:
    """A FIFO, folder or broken link named like a shard used to be skipped without a word
    (its rows never scrubbed); a FIFO given as INPUT was "no such file"."""
    for kind in ("fifo", "folder", "broken-link"):
        dataset = tmp_path / f"ds-{kind}"
        shutil.copytree(small_dataset, dataset)
        odd = dataset / "part-99999.parquet"
        if kind == "fifo":
            os.mkfifo(odd)
        elif kind == "folder":
            odd.mkdir()
            shutil.copy(next(small_dataset.glob("*.parquet")), odd / "part-0.parquet")
        else:
            odd.symlink_to(tmp_path / "gone.parquet")
        done = _scrub("apply", dataset, tmp_path / f"out-{kind}", "--hashlist", good_list,
                      "--workers", "1", "-q")  # a child process: reading a FIFO would hang
        assert done.returncode == 2, (kind, done.stderr)
        assert done.stderr.startswith(f"scrub: error: {odd}: "), (kind, done.stderr)
        assert not (tmp_path / f"out-{kind}").exists()
    fifo = tmp_path / "input.parquet"
    os.mkfifo(fifo)
    done = _scrub("apply", fifo, tmp_path / "out", "--hashlist", good_list, "--workers", "1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"scrub: error: {fifo}: not a regular file"), done.stderr


# ----------------------------------------------------------------------- where scrub writes


def test_read_only_output_names_the_folder(small_dataset: Path, good_list: Path,
                                           read_only_dir: Path, listed: list[str]) -> None:
    result = invoke("apply", small_dataset, read_only_dir / "out", "--hashlist", good_list,
                    "--workers", "1", "-q")
    assert_one_clear_error(result, 2, read_only_dir / "out", secrets=tuple(listed))
    assert "read-only" in result.stderr or "permission denied" in result.stderr
    assert "fix the input" not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unwritable_output_folder_names_it(small_dataset: Path, good_list: Path,
                                           unwritable_dir: Path, listed: list[str],
                                           workers: str) -> None:
    """OUTPUT exists and cannot be written into: one error naming it, not N shard failures
    that say "fix the input"."""
    result = invoke("apply", small_dataset, unwritable_dir, "--hashlist", good_list,
                    "--workers", workers, "-q")
    assert_one_clear_error(result, 2, f"{unwritable_dir}: ", secrets=tuple(listed))
    assert "not permitted" in result.stderr or "permission denied" in result.stderr
    assert "fix the input" not in result.stderr and "shards failed" not in result.stderr


def test_read_only_output_that_is_a_mount_point(small_dataset: Path, good_list: Path,
                                                read_only_dir: Path, listed: list[str]) -> None:
    """OUTPUT itself read-only (as root: a read-only mount, so OUTPUT is a mount point)."""
    result = invoke("apply", small_dataset, read_only_dir, "--hashlist", good_list,
                    "--workers", "1", "-q")
    assert_one_clear_error(result, 2, read_only_dir, secrets=tuple(listed))
    assert "read-only" in result.stderr or "permission denied" in result.stderr
    assert "fix the input" not in result.stderr


def test_read_only_scrub_home(good_list: Path, read_only_dir: Path) -> None:
    env = {"SCRUB_HOME": str(read_only_dir)}
    result = invoke("lists", "import", good_list, "--name", "l", "--source", "s",
                    "--version", "1", "--public", env=env)
    assert_one_clear_error(result, 2, read_only_dir)
    assert "SCRUB_HOME" in result.stderr


def test_scrub_home_that_is_a_file(good_list: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    env = {"SCRUB_HOME": str(home)}
    for args in (("lists", "import", good_list, "--name", "l", "--source", "s", "--version",
                  "1", "--public"),
                 ("lists", "trust", "--source", "s", "--key", _public_key(tmp_path)),
                 ("requests", "ls")):
        result = invoke(*args, env=env)
        assert_one_clear_error(result, 2, home)
        assert "SCRUB_HOME" in result.stderr


def _public_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = folder / "partner.pub"
    path.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process and the workers it spawns: writes past ``limit`` fail
    with EFBIG (Python ignores SIGXFSZ), as writes to a full disk fail with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four shards of ~150 KB each: more than the small disks below hold."""
    return generate_dataset(tmp_path_factory.mktemp("item17big") / "ds", rows=4000, shards=4,
                            seed=18, embeddings=False)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("disk", ["tmpfs", "rlimit"])
def test_full_disk_is_not_bad_input(big_dataset: Path, tmp_path: Path, workers: str,
                                    disk: str) -> None:
    hashlist = tmp_path / "list.txt"
    hashlist.write_text(read_column(big_dataset, "md5")[5] + "\n")
    where = tmp_path / "disk"
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs":
            if not stack.enter_context(_mounted_tmpfs(where, "size=200k")):
                pytest.skip("cannot mount a small tmpfs here (the rlimit case still runs)")
        else:
            where.mkdir()
            stack.enter_context(_file_size_limit(40_000))
        result = invoke("apply", big_dataset, where / "out", "--hashlist", hashlist,
                        "--workers", workers, "-q")
        assert_one_clear_error(result, 1, where / "out")
        assert "no space left" in result.stderr or "file too large" in result.stderr
        assert "fix the input" not in result.stderr
        assert "not a problem of the input" in result.stderr
    # nothing half-written is published: every shard in OUTPUT is a whole parquet file
    for shard in (where / "out").glob("*.parquet"):
        assert pq.read_metadata(shard).num_rows > 0
    # the disk has room again: the same command finishes the job
    if disk == "rlimit":
        again = invoke("apply", big_dataset, where / "out", "--hashlist", hashlist,
                       "--workers", workers, "-q")
        assert again.exit_code == 0, again.stderr
        assert len(list((where / "out").glob("*.parquet"))) == 4


def _signing_key(folder: Path) -> Path:
    from scrub.crypto import write_signing_keypair

    write_signing_keypair(folder / "sign.pem", folder / "sign.pub")
    return folder / "sign.pem"


@pytest.mark.slow
@pytest.mark.parametrize("job", ["release", "hash"])
def test_a_full_disk_in_release_build_or_hash_is_not_bad_input(big_dataset: Path,
                                                                tmp_path: Path, job: str) -> None:
    """The other shard jobs tell a full disk from a bad shard too (exit 1, never 'fix the
    input'), and the same command finishes once there is room."""
    if job == "release":
        policy = tmp_path / "open.toml"
        policy.write_text('[policy]\nname = "open"\n[[nsfw.rules]]\nabove = 0.5\n')
        args = ("release", "build", big_dataset, tmp_path / "out", "--policy", policy,
                "--signing-key", _signing_key(tmp_path), "--workers", "1", "--quiet")
        limit = 60_000
    else:
        from scrub.images.synthetic import generate_webdataset

        tars = generate_webdataset(tmp_path / "tars", shards=2, samples=200, seed=3)
        args = ("hash", tars, tmp_path / "out", "--types", "md5,pdq", "--workers", "1",
                "--quiet")
        limit = 4_000
    with _file_size_limit(limit):
        result = invoke(*args)
    expect_exit(result, 1)
    assert "file too large" in result.stderr
    assert "fix the input" not in result.stderr
    assert "not a problem of the input" in result.stderr
    again = invoke(*args)
    assert again.exit_code == 0, again.stderr


def test_listing_a_store_under_a_scrub_home_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    """`lists ls` must not answer "the store holds no lists" when SCRUB_HOME is a file."""
    home = tmp_path / "home"
    home.write_text("not a folder\n")
    result = invoke("lists", "ls", env={"SCRUB_HOME": str(home)})
    assert_one_clear_error(result, 2, home)
