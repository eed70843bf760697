"""Issue 19, item 2: hash and URL columns match by value, whatever their Arrow type.

Dictionary (pandas' categoricals), ``large_string`` and ``string_view`` columns are read as their
values; raw digests (``binary``, ``fixed_size_binary``) are matched as bytes; 64-bit perceptual
hashes as integers; a type that cannot hold the role's values is an error naming the shard, the
column and the type (exit 2), never "unmatchable rows" with exit 0.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from scrub.keys import keys_to_hex
from scrub.layout import companion
from tests.helpers import expect_exit, expect_ok, run_cli

ROWS = 300
PLANTED = np.array([3, 17, 64, 65, 150, 299])


def base_table() -> pa.Table:
    """Plain-string columns, as the writers scrub knows produce them."""
    rng = np.random.default_rng(19)
    md5 = rng.integers(0, 256, (ROWS, 16), dtype=np.uint8)
    pdq = rng.integers(0, 256, (ROWS, 32), dtype=np.uint8)
    phash = rng.integers(0, 256, (ROWS, 8), dtype=np.uint8)
    return pa.table({
        "URL": [f"https://img{i % 7}.example.com/photos/{i}/pic.jpg" for i in range(ROWS)],
        "TEXT": [f"caption number {i}" for i in range(ROWS)],
        "key": [f"{i:09d}" for i in range(ROWS)],
        "hash": pa.array(rng.integers(-(2**63), 2**63 - 1, ROWS, dtype=np.int64)),
        "md5": keys_to_hex(md5).astype(str).tolist(),
        "pdq": keys_to_hex(pdq).astype(str).tolist(),
        "pdq_quality": pa.array(np.full(ROWS, 90, dtype=np.int64)),
        "phash": keys_to_hex(phash).astype(str).tolist(),
    })


def raw(hex_column: pa.Array) -> list[bytes]:
    return [bytes.fromhex(v) for v in hex_column.to_pylist()]


def md5_forms(table: pa.Table) -> dict[str, pa.Array]:
    md5 = table.column("md5").combine_chunks()
    return {
        "large_string": md5.cast(pa.large_string()),
        "string_view": md5.cast(pa.string_view()),
        "dictionary": md5.dictionary_encode(),
        "dictionary_upper_case": pc.utf8_upper(md5).dictionary_encode(),
        "binary_raw_digest": pa.array(raw(md5), pa.binary()),
        "large_binary_raw_digest": pa.array(raw(md5), pa.large_binary()),
        "fixed_size_binary_16": pa.array(raw(md5), pa.binary(16)),
        "binary_hex_text": md5.cast(pa.binary()),
        "fixed_size_binary_32_hex_text": pa.array([v.encode() for v in md5.to_pylist()],
                                                  pa.binary(32)),
    }


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def write_dataset(folder: Path, table: pa.Table, shards: int = 2) -> Path:
    folder.mkdir(parents=True)
    step = -(-table.num_rows // shards)
    for i in range(shards):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return folder


def planted_list(path: Path, values: list[str], decoys: int = 0) -> Path:
    rng = np.random.default_rng(7)
    extra = keys_to_hex(rng.integers(0, 256, (decoys, 16), dtype=np.uint8)).astype(str).tolist()
    path.write_text("\n".join(values + extra) + "\n")
    return path


def apply_json(dataset: Path, out: Path, *args: object):
    return run_cli("apply", dataset, out, *args, "--workers", "1", "--quiet", "--json")


def kept_keys(out: Path) -> set[str]:
    return {k for p in sorted(out.glob("*.parquet"))
            for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()}


def expected_keys(table: pa.Table, dropped: np.ndarray) -> set[str]:
    keys = table.column("key").to_pylist()
    return set(keys) - {keys[i] for i in dropped}


@pytest.mark.parametrize("form", sorted(md5_forms(base_table())))
def test_md5_column_in_any_string_or_binary_form_matches(tmp_path: Path, form: str) -> None:
    table = base_table()
    listed = [table.column("md5")[int(i)].as_py() for i in PLANTED]
    shaped = with_column(table, "md5", md5_forms(table)[form])
    dataset = write_dataset(tmp_path / "data", shaped)
    listing = planted_list(tmp_path / "partner.txt", listed, decoys=20)
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing)
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["rows_removed"] == len(PLANTED)
    assert report["unmatchable"].get("md5", 0) == 0
    assert kept_keys(tmp_path / "out") == expected_keys(table, PLANTED)
    for shard in sorted(dataset.glob("*.parquet")):  # the output keeps the input's types
        assert pq.read_schema(tmp_path / "out" / shard.name) == pq.read_schema(shard)


@pytest.mark.parametrize("form", ["dictionary", "large_string", "string_view", "binary"])
@pytest.mark.parametrize("kind", ["url", "url_sha256", "host"])
def test_url_column_in_any_text_form_matches(tmp_path: Path, form: str, kind: str) -> None:
    table = base_table()
    urls = table.column("URL").combine_chunks()
    shaped = {"dictionary": urls.dictionary_encode(), "large_string": urls.cast(pa.large_string()),
              "string_view": urls.cast(pa.string_view()), "binary": urls.cast(pa.binary())}[form]
    dataset = write_dataset(tmp_path / "data", with_column(table, "URL", shaped))
    if kind == "host":  # every URL on img3.example.com
        values = ["img3.example.com"]
        dropped = np.arange(3, ROWS, 7)
    else:
        values = [urls[int(i)].as_py() for i in PLANTED]
        if kind == "url_sha256":
            values = [hashlib.sha256(v.encode()).hexdigest() for v in values]
        dropped = PLANTED
    listing = tmp_path / "optout.txt"
    listing.write_text("\n".join(values) + "\n")
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing, "--type", kind)
    expect_ok(result)
    assert json.loads(result.stdout)["rows_removed"] == len(dropped)
    assert kept_keys(tmp_path / "out") == expected_keys(table, dropped)


def test_raw_pdq_digests_match_within_the_radius(tmp_path: Path) -> None:
    table = base_table()
    codes = np.array(raw(table.column("pdq").combine_chunks()), dtype=object)
    dataset = write_dataset(tmp_path / "data", with_column(
        table, "pdq", pa.array(list(codes), pa.binary(32))))
    listed = []
    for i in PLANTED:  # each listed hash 5 bits away from a planted row's
        code = bytearray(codes[i])
        for bit in (0, 9, 77, 130, 255):
            code[bit // 8] ^= 0x80 >> (bit % 8)
        listed.append(bytes(code).hex())
    listing = tmp_path / "pdq.txt"
    listing.write_text("\n".join(listed) + "\n")
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing, "--type", "pdq")
    expect_ok(result)
    assert json.loads(result.stdout)["rows_removed"] == len(PLANTED)
    assert kept_keys(tmp_path / "out") == expected_keys(table, PLANTED)


@pytest.mark.parametrize("integer", [pa.int64(), pa.uint64()])
def test_phash_stored_as_64_bit_integers_matches(tmp_path: Path, integer: pa.DataType) -> None:
    table = base_table()
    hexes = table.column("phash").to_pylist()
    values = [int(h, 16) for h in hexes]
    if integer == pa.int64():
        values = [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    dataset = write_dataset(tmp_path / "data", with_column(table, "phash",
                                                           pa.array(values, integer)))
    listing = tmp_path / "phash.txt"
    listing.write_text("\n".join(hexes[i] for i in PLANTED) + "\n")
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing, "--type", "phash",
                        "--phash-radius", "0")
    expect_ok(result)
    assert json.loads(result.stdout)["rows_removed"] == len(PLANTED)
    assert kept_keys(tmp_path / "out") == expected_keys(table, PLANTED)


def test_laion_hash_stored_as_uint64_bits_matches(tmp_path: Path) -> None:
    table = base_table()
    signed = table.column("hash").to_pylist()
    unsigned = pa.array([v & ((1 << 64) - 1) for v in signed], pa.uint64())
    dataset = write_dataset(tmp_path / "data", with_column(table, "hash", unsigned))
    listing = tmp_path / "laion.txt"
    listing.write_text("\n".join(str(signed[i]) for i in PLANTED) + "\n")
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing, "--type", "laion_hash")
    expect_ok(result)
    assert json.loads(result.stdout)["rows_removed"] == len(PLANTED)


def test_string_view_columns_beside_the_matched_one_survive_a_drop(tmp_path: Path) -> None:
    table = base_table()
    captions = table.column("TEXT").combine_chunks().cast(pa.string_view())
    dataset = write_dataset(tmp_path / "data", with_column(table, "TEXT", captions))
    listing = planted_list(tmp_path / "partner.txt",
                           [table.column("md5")[int(i)].as_py() for i in PLANTED])
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing)
    expect_ok(result)
    out = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "out").glob("*.parquet")))
    assert out.schema.field("TEXT").type == pa.string_view()
    assert out.num_rows == ROWS - len(PLANTED)


UNFIT = [
    ("md5", "md5", pa.array(np.arange(ROWS, dtype=np.int64)), "int64"),
    ("md5", "md5", pa.array([[str(v)] for v in range(ROWS)], pa.list_(pa.string())),
     "list<"),
    ("md5", "md5", pa.nulls(ROWS), "null"),
    ("md5", "md5", pa.array(np.zeros(ROWS)), "double"),
    ("md5", "md5", pa.array([b"\0" * 20] * ROWS, pa.binary(20)), "fixed_size_binary[20]"),
    ("md5", "md5", pa.array([{"hex": "00"}] * ROWS), "struct<"),
    ("url", "URL", pa.array(np.arange(ROWS, dtype=np.int64)), "int64"),
    ("url", "URL", pa.nulls(ROWS), "null"),
    ("url", "URL", pa.array([["https://a.example/x"]] * ROWS), "list<"),
    ("laion_hash", "hash", pa.array(np.zeros(ROWS)), "double"),
    ("laion_hash", "hash", pa.array(np.zeros(ROWS, dtype=np.int32)), "int32"),
    ("phash", "phash", pa.array(np.zeros(ROWS, dtype=np.int32)), "int32"),
    ("pdq", "pdq", pa.array(np.zeros(ROWS, dtype=np.uint64)), "uint64"),
    ("sample_key", "key", pa.array(np.zeros(ROWS)), "double"),
]


@pytest.mark.parametrize("type_name,column,values,shown", UNFIT,
                         ids=[f"{t}-{s}" for t, _, _, s in UNFIT])
def test_a_column_type_that_cannot_hold_the_values_is_an_error(
        tmp_path: Path, type_name: str, column: str, values: pa.Array, shown: str) -> None:
    table = base_table()
    value_of = {"md5": table.column("md5")[3].as_py(), "url": table.column("URL")[3].as_py(),
                "laion_hash": str(table.column("hash")[3].as_py()),
                "phash": table.column("phash")[3].as_py(), "pdq": table.column("pdq")[3].as_py(),
                "sample_key": table.column("key")[3].as_py()}
    dataset = write_dataset(tmp_path / "data", with_column(table, column, values), shards=1)
    listing = tmp_path / "list.txt"
    listing.write_text(value_of[type_name] + "\n")
    result = run_cli("apply", dataset, tmp_path / "out", "--hashlist", listing, "--type",
                    type_name, "--workers", "1", "--quiet")
    expect_exit(result, 2)
    line = result.stderr.splitlines()[0]
    assert str(dataset / "part-0.parquet") in line
    assert repr(column) in line and shown in line
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert value_of[type_name] not in result.output
    # no "unmatchable" report
    assert not (companion(tmp_path / "out") / "apply-report.json").exists()


def test_a_release_of_binary_and_view_columns_publishes_working_removal_hashes(
        tmp_path: Path) -> None:
    """The release writer filters view columns and writes removal hashes of raw md5 digests as
    the hex digests they are: a copy whose URLs differ loses exactly the released removals."""
    rng = np.random.default_rng(3)
    table = base_table().append_column("punsafe", pa.array(rng.random(ROWS)))
    md5 = table.column("md5").combine_chunks()
    shaped = with_column(with_column(with_column(
        table, "md5", pa.array(raw(md5), pa.binary(16))),
        "TEXT", table.column("TEXT").combine_chunks().cast(pa.string_view())),
        "URL", table.column("URL").combine_chunks().cast(pa.string_view()))
    dataset = write_dataset(tmp_path / "data", shaped)
    policy = tmp_path / "open.toml"
    policy.write_text('[policy]\nname = "open"\n[[nsfw.rules]]\nabove = 0.5\n')
    from scrub.crypto import write_signing_keypair

    write_signing_keypair(tmp_path / "sign.pem", tmp_path / "sign.pub")
    result = run_cli("release", "build", dataset, tmp_path / "out", "--policy", policy,
                    "--signing-key", tmp_path / "sign.pem", "--workers", "1", "--quiet")
    expect_ok(result)
    dropped = np.flatnonzero(table.column("punsafe").to_numpy() > 0.5)
    shards = sorted(dataset.glob("*.parquet"))
    kept = {k for shard in shards for k in pq.read_table(
        tmp_path / "out" / "open" / shard.name, columns=["key"]).column("key").to_pylist()}
    assert kept == expected_keys(table, dropped)
    for shard in sorted(dataset.glob("*.parquet")):
        assert pq.read_schema(tmp_path / "out" / "open" / shard.name) == pq.read_schema(shard)
    removals = next(p for p in (tmp_path / "out").rglob("removals.parquet"))
    # a derivative copy: plain hex md5, other URLs, so only the md5 hashes can match
    copy = with_column(table, "URL", pa.array([f"https://elsewhere.example/{i}.jpg"
                                               for i in range(ROWS)]))
    copy_folder = write_dataset(tmp_path / "copy", copy)
    result = apply_json(copy_folder, tmp_path / "cleaned", "--hashlist", removals)
    expect_ok(result)
    assert kept_keys(tmp_path / "cleaned") == expected_keys(table, dropped)


#: Spellings of a listed md5 in the dataset that the list side forgives (surrounding whitespace,
#: Unicode spaces included, case, a 0x prefix), each in a plain string, a dictionary and a binary
#: column; and spellings still malformed after that, which stay counted.
FORGIVEN = {"space": " {}", "trailing_newline": "{}\n", "tab": "\t{}", "nbsp": "\u00a0{}\u3000",
            "0x": "0x{}", "0X_upper": "0X{}", "spaced_0x": " 0x{} ", "file_separator": "\x1c{}"}
STILL_MALFORMED = {"zero_width": "{}\u200b", "quoted": '"{}"', "md5_prefix": "md5:{}",
                   "inner_space": "0x {}"}


@pytest.mark.parametrize("store", ["string", "dictionary", "binary"])
def test_md5_values_spelt_as_list_entries_are_matched(tmp_path: Path, store: str) -> None:
    """Finding 3 of the red-team review of issue 19: md5 values with surrounding whitespace or a
    0x prefix matched nothing (the list side strips both); they match now, and what is still
    malformed is counted and shown as a WARNING in the human summary."""
    table = base_table()
    md5 = table.column("md5").to_pylist()
    respelt = list(md5)
    forgiven_rows = [3, 17, 64, 65, 150, 200, 250, 299]  # listed, each in a forgiven spelling
    for i, spelling in zip(forgiven_rows, FORGIVEN.values(), strict=True):
        respelt[i] = spelling.format(md5[i])
    malformed_rows = [10, 11, 12, 13]  # listed too, but spelt beyond what is forgiven
    for i, spelling in zip(malformed_rows, STILL_MALFORMED.values(), strict=True):
        respelt[i] = spelling.format(md5[i])
    column = pa.array(respelt, pa.string())
    column = {"string": column, "dictionary": column.dictionary_encode(),
              "binary": column.cast(pa.binary())}[store]
    dataset = write_dataset(tmp_path / "data", with_column(table, "md5", column))
    listing = planted_list(tmp_path / "partner.txt",
                           [md5[i] for i in forgiven_rows + malformed_rows], decoys=20)
    result = apply_json(dataset, tmp_path / "out", "--hashlist", listing)
    expect_ok(result)
    report = json.loads(result.stdout)
    assert report["rows_removed"] == len(forgiven_rows)
    assert report["unmatchable"].get("md5", 0) == len(malformed_rows)
    assert kept_keys(tmp_path / "out") == expected_keys(table, np.array(forgiven_rows))
    human = run_cli("apply", dataset, tmp_path / "out2", "--hashlist", listing,
                   "--workers", "1", "--quiet")
    expect_ok(human)
    warning = [line for line in human.stdout.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1 and "4 row(s)" in warning[0] and "md5" in warning[0]
    assert not any(md5[i] in human.output for i in malformed_rows)
