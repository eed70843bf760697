"""Parsing hash-list files: every format, type inference and every kind of bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from scrub.errors import InvalidListError
from scrub.keys import keys_to_hex
from scrub.lists import _records
from scrub.lists import hashlist as hashlist_module
from scrub.lists.hashlist import ListFormat, read_hashlist
from scrub.lists.types import KeyType, Sha256

MD5 = hashlib.md5(b"one").hexdigest()
MD5_B = hashlib.md5(b"two").hexdigest()
SHA1 = hashlib.sha1(b"one").hexdigest()
SHA256 = hashlib.sha256(b"one").hexdigest()


def hexes(keys: np.ndarray) -> list[str]:
    return sorted(v.decode() for v in keys_to_hex(keys))


def write(tmp_path: Path, name: str, body: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(body, str):
        path.write_text(body, encoding="utf-8")
    else:
        path.write_bytes(body)
    return path


def test_plain_text_infers_types_and_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt",
                 f"# partner list v3\n\n{MD5}\n  {MD5_B.upper()}  \n0x{SHA1}  # note\n"
                 f"{SHA256}\r\n{MD5}\n")
    parsed = read_hashlist(path)
    assert parsed.format is ListFormat.text
    assert parsed.counts() == {"md5": 2, "sha1": 1, "sha256": 1}
    assert hexes(parsed.keys["md5"]) == sorted([MD5, MD5_B])
    assert hexes(parsed.keys["sha256"]) == [SHA256]
    assert parsed.entries == 5 and parsed.duplicates == 1
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_utf8_bom_and_a_missing_final_newline_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbf" + f"{MD5}\n{MD5_B}".encode())
    assert read_hashlist(path).counts() == {"md5": 2}


def test_forced_type_reads_url_digests(tmp_path: Path) -> None:
    path = write(tmp_path, "urls.txt", f"{MD5}\n{MD5_B}\n")
    parsed = read_hashlist(path, type_name="url_md5")
    assert parsed.counts() == {"url_md5": 2}


def test_unrecognised_form_names_file_and_line_but_not_the_value(tmp_path: Path) -> None:
    secret = "deadbeef" * 3
    path = write(tmp_path, "bad.txt", f"{MD5}\n# c\n\n{secret}\n")
    with pytest.raises(InvalidListError) as info:
        read_hashlist(path)
    message = str(info.value)
    assert f"{path}:4" in message
    assert "32" in message and "--type" in (info.value.hint or "")
    assert secret not in message and secret not in (info.value.hint or "")


def test_non_hex_value_of_a_forced_type_is_rejected_at_its_line(tmp_path: Path) -> None:
    bad = "z" * 64
    path = write(tmp_path, "bad.txt", f"{SHA256}\n{SHA256}\n{bad}\n")
    with pytest.raises(InvalidListError, match=r"bad\.txt:3: expected a sha256 digest") as info:
        read_hashlist(path, type_name="sha256")
    assert bad not in str(info.value)


def test_ambiguous_form_asks_for_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Pdq(KeyType):  # a second inferable 64-hex type, as PDQ is
        name = "pdq_test"
        width = 32

    monkeypatch.setattr(_records, "inferable_by_width", lambda: {64: [Sha256, Pdq]})
    path = write(tmp_path, "amb.txt", f"{SHA256}\n")
    with pytest.raises(InvalidListError, match="ambiguous") as info:
        read_hashlist(path)
    assert "--type" in (info.value.hint or "")


def test_unknown_forced_type_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x.txt", f"{MD5}\n")
    with pytest.raises(InvalidListError, match="unknown --type"):
        read_hashlist(path, type_name="crc32")


def test_csv_with_type_column_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "list.csv",
                 f"type,value,added\nmd5,{MD5},2026-01-01\nSHA256, {SHA256} ,\n"
                 f"url_sha1,{SHA1},\n")
    parsed = read_hashlist(path)
    assert parsed.format is ListFormat.csv
    assert parsed.counts() == {"md5": 1, "sha256": 1, "url_sha1": 1}


def test_csv_with_quoted_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "q.csv", f'value,type,note\n"{MD5}",md5,"a, b"\n')
    assert read_hashlist(path).counts() == {"md5": 1}


def test_csv_without_type_column_needs_type(tmp_path: Path) -> None:
    path = write(tmp_path, "v.csv", f"value\n{MD5}\n")
    with pytest.raises(InvalidListError, match=r"v\.csv:1: the header names no 'type'"):
        read_hashlist(path)
    assert read_hashlist(path, type_name="md5").counts() == {"md5": 1}


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", f"type,value\nmd5,{MD5}\nmd5,{MD5},extra\n")
    with pytest.raises(InvalidListError, match=r"f\.csv:3: expected 2 fields, found 3"):
        read_hashlist(path)
    path = write(tmp_path, "t.csv", f"type,value\nmd5,{MD5}\ncrc,{MD5}\n")
    with pytest.raises(InvalidListError, match=r"t\.csv:3: unknown type"):
        read_hashlist(path)
    path = write(tmp_path, "h.csv", f"type,digest\nmd5,{MD5}\n")
    with pytest.raises(InvalidListError, match=r"h\.csv:1: the header names no 'value'"):
        read_hashlist(path)
    path = write(tmp_path, "w.csv", f"type,value\nmd5,{SHA1}\n")
    with pytest.raises(InvalidListError, match=r"w\.csv:2: expected an md5 digest"):
        read_hashlist(path)


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "list.tsv", f"type\tvalue\nsha1\t{SHA1}\n")
    parsed = read_hashlist(path)
    assert parsed.format is ListFormat.tsv and parsed.counts() == {"sha1": 1}


def test_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "list.jsonl",
                 f'{{"type": "md5", "value": "{MD5}"}}\n\n{{"value": "{SHA1}", "type": "sha1"}}\n')
    assert read_hashlist(path).counts() == {"md5": 1, "sha1": 1}


def test_jsonl_without_type_uses_forced_type(tmp_path: Path) -> None:
    path = write(tmp_path, "list.jsonl", f'{{"value": "{MD5}"}}\n')
    with pytest.raises(InvalidListError, match=r"list\.jsonl:1: the object has no 'type'"):
        read_hashlist(path)
    assert read_hashlist(path, type_name="url_md5").counts() == {"url_md5": 1}


@pytest.mark.parametrize("line", ['{"type": "md5", "value": ', '["md5"]', '{"type": "md5"}',
                                  '{"type": "md5", "value": 5}'])
def test_jsonl_bad_lines_are_named(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, "bad.jsonl", f'{{"type": "md5", "value": "{MD5}"}}\n{line}\n')
    with pytest.raises(InvalidListError, match=r"bad\.jsonl:2: "):
        read_hashlist(path)


def test_format_is_detected_by_content_without_an_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "list", f'{{"type": "md5", "value": "{MD5}"}}\n')
    assert read_hashlist(path).format is ListFormat.jsonl
    path = write(tmp_path, "list2", f"# hi\ntype,value\nmd5,{MD5}\n")
    assert read_hashlist(path).format is ListFormat.csv


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "no entries"),
    (b"# only a comment\n\n", "no entries"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
    (MD5.encode("utf-16"), "UTF-16"),
    (MD5.encode() + b"\n" + b"\xc3\x28abc\n", "not valid UTF-8"),
])
def test_unreadable_files_get_clear_errors(tmp_path: Path, body: bytes, problem: str) -> None:
    path = write(tmp_path, "list.txt", body)
    with pytest.raises(InvalidListError, match=problem):
        read_hashlist(path)


def test_invalid_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", MD5.encode() + b"\n" + b"\xc3\x28abc\n")
    with pytest.raises(InvalidListError, match=r"list\.txt:2:"):
        read_hashlist(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidListError, match="no such file"):
        read_hashlist(tmp_path / "nope.txt")


def test_line_numbers_stay_right_across_chunks(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashlist_module, "_CHUNK_BYTES", 100)
    rng = np.random.default_rng(3)
    values = keys_to_hex(rng.integers(0, 256, (50, 16), dtype=np.uint8)).astype(str).tolist()
    lines = []
    for i, value in enumerate(values):
        lines.append(value)
        if i % 7 == 0:
            lines.append("# comment")
    lines.insert(41, "not-a-hash")
    path = write(tmp_path, "long.txt", "\n".join(lines) + "\n")
    with pytest.raises(InvalidListError, match=r"long\.txt:42:"):
        read_hashlist(path)
    del lines[41]
    path.write_text("\n".join(lines))
    parsed = read_hashlist(path)
    assert hexes(parsed.keys["md5"]) == sorted(values)


def test_tdmrep_reservations_become_prefixes_on_the_site(tmp_path: Path) -> None:
    path = write(tmp_path, "tdmrep.json", json.dumps([
        {"location": "/images/*", "tdm-reservation": 1, "tdm-policy": "https://x/policy"},
        {"location": "/public/*", "tdm-reservation": 0},
        {"location": "/a.jpg$", "tdm-reservation": 1},
    ]))
    parsed = read_hashlist(path, site="HTTPS://Artist.Example")
    assert parsed.format is ListFormat.tdmrep
    assert parsed.keys["url_prefix"].tolist() == ["https://artist.example/images/"]
    assert bytes(parsed.keys["url"][0]) == hashlib.sha256(b"https://artist.example/a.jpg").digest()
    with pytest.raises(InvalidListError, match="needs the site"):
        read_hashlist(path)


def test_tdmrep_errors_name_the_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "tdmrep.json",
                 json.dumps([{"location": "/a/*/b", "tdm-reservation": 1}]))
    with pytest.raises(InvalidListError, match="wildcards"):
        read_hashlist(path, site="https://a.example")
    path = write(tmp_path, "tdmrep.json", json.dumps([{"location": "/a", "tdm-reservation": 2}]))
    with pytest.raises(InvalidListError, match="rule 1: 'tdm-reservation' must be 0 or 1"):
        read_hashlist(path, site="https://a.example")


def test_robots_disallow_lines_become_prefixes(tmp_path: Path) -> None:
    path = write(tmp_path, "robots.txt", "User-agent: *\nDisallow: /private/  # ours\n"
                                         "Allow: /private/ok\nDisallow:\nDisallow: /x*\n")
    parsed = read_hashlist(path, site="https://a.example/ignored/path")
    assert sorted(parsed.keys["url_prefix"].tolist()) == ["https://a.example/private/",
                                                          "https://a.example/x"]
    bad = write(tmp_path, "robots.txt", "Disallow: private\n")
    with pytest.raises(InvalidListError, match=r"robots\.txt:1: expected a path"):
        read_hashlist(bad, site="https://a.example")
