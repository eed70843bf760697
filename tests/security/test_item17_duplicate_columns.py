"""Issue 19, item 17 (column parts): a shard with duplicate column names, or with digests stored
as ``string_view``, gets one line naming the file and what is wrong (or is simply scrubbed),
exit 2, never ``internal error (X)``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import expect_exit, expect_ok, run_cli

MD5S = [hashlib.md5(str(i).encode()).hexdigest() for i in range(40)]


@pytest.mark.parametrize("names,repeated", [
    (["md5", "md5", "URL"], "md5"),       # the matched column twice: which one holds the hashes?
    (["URL", "md5", "URL"], "URL"),
    (["md5", "note", "note"], "note"),    # a column no rule reads: readers of the output choke
])
def test_duplicate_column_names_are_named_exit_2(tmp_path: Path, names: list[str],
                                                 repeated: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    columns = {"md5": pa.array(MD5S), "URL": pa.array([f"https://a.example/{i}.jpg"
                                                        for i in range(40)]),
               "note": pa.array(["x"] * 40)}
    pq.write_table(pa.table({"md5": MD5S, "URL": columns["URL"]}), data / "good.parquet")
    table = pa.Table.from_arrays([columns[n] for n in names], names=names)
    pq.write_table(table, data / "twice.parquet")
    listing = tmp_path / "partner.txt"
    listing.write_text("\n".join(MD5S[:5]) + "\n")
    result = run_cli("apply", data, tmp_path / "out", "--hashlist", listing, "--workers", "1",
                    "--quiet")
    expect_exit(result, 2)
    line = result.stderr.splitlines()[0]
    assert str(data / "twice.parquet") in line
    assert f"more than one column is named {repeated!r}" in line
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert not any(v in result.output for v in MD5S)
    assert (tmp_path / "out" / "good.parquet").is_file()  # the other shard completed


def test_string_view_digests_are_scrubbed_not_an_internal_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"md5": pa.array(MD5S, pa.string_view()),
                             "TEXT": pa.array([f"c{i}" for i in range(40)], pa.string_view())}),
                   data / "view.parquet")
    listing = tmp_path / "partner.txt"
    listing.write_text("\n".join(MD5S[:5]) + "\n")
    result = run_cli("apply", data, tmp_path / "out", "--hashlist", listing, "--workers", "1",
                    "--quiet")
    expect_ok(result)
    out = pq.read_table(tmp_path / "out" / "view.parquet")
    assert out.schema == pq.read_schema(data / "view.parquet")
    assert out.column("md5").to_pylist() == MD5S[5:]
