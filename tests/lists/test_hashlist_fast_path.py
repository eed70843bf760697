"""Text lists of plain fixed-width hex lines are decoded block by block at once; every other
block goes through the line parser. Both read any file alike: the same keys, counts and digest,
the same types announced, and the same error (file:line, what is wrong) for a bad one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrub.errors import InvalidListError
from scrub.lists import _records, hashlist
from scrub.lists._records import _Decoded
from scrub.lists.hashlist import read_hashlist
from scrub.lists.types import KeyType

MD5 = "0123456789abcdef0123456789abcdef"
LINES = st.one_of(
    st.binary(min_size=16, max_size=16).map(lambda b: b.hex()),                  # md5
    st.binary(min_size=16, max_size=16).map(lambda b: b.hex().upper()),
    st.binary(min_size=20, max_size=20).map(lambda b: b.hex()),                  # sha1
    st.binary(min_size=32, max_size=32).map(lambda b: b.hex()),                  # sha256
    st.sampled_from(["", "# a comment", "#", "   ", f"  {MD5}", f"{MD5} ", f"0x{MD5}",
                     f"{MD5} # note", "g" * 32, MD5[:31], f"{MD5}\t", "\u00e9" * 16,
                     "a.example.com"]),
)


def _read(data: bytes, type_name: str | None, fast: bool
          ) -> tuple[object, list[str]]:
    """What read_hashlist gives (or raises) for ``data``, and the types it announced."""
    announced: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashlist, "_CHUNK_BYTES", 97)  # many blocks, cut anywhere
        if not fast:
            patch.setattr(_records, "fixed_width_hex", lambda *args: None)
        try:
            result = read_hashlist(Path("list.txt"), type_name=type_name, content=data,
                                   on_type=announced.append)
        except InvalidListError as exc:
            return ("error", str(exc), exc.hint), announced
    keys = {name: np.asarray(k).tobytes() for name, k in result.keys.items()}
    return (result.describe(), keys), announced


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINES, max_size=40), crlf=st.booleans(), final_newline=st.booleans(),
       bom=st.booleans(), type_name=st.sampled_from([None, None, "md5", "sha256", "url"]))
def test_the_fast_path_reads_every_list_as_the_line_parser_does(
        lines: list[str], crlf: bool, final_newline: bool, bom: bool,
        type_name: str | None) -> None:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\n" if final_newline and lines else "")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    assert _read(data, type_name, fast=True) == _read(data, type_name, fast=False)


def test_a_list_of_plain_md5_lines_after_a_header_takes_the_fast_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = [f"{i:032x}" for i in range(1000)]
    data = ("# partner list\n\n" + "\n".join(values) + "\n").encode()
    decoded: list[int] = []
    original = _records.fixed_width_hex

    def counting(data: bytes, forced: type[KeyType] | None,
                 by_length: dict[int, list[type[KeyType]]]) -> _Decoded | None:
        answer = original(data, forced, by_length)
        decoded.append(answer is not None)
        return answer

    monkeypatch.setattr(_records, "fixed_width_hex", counting)
    result = read_hashlist(Path("list.txt"), content=data)
    assert decoded == [True] and result.counts() == {"md5": 1000}
    assert result.keys["md5"].tobytes() == bytes.fromhex("".join(values))


def test_a_bad_digit_in_a_fixed_width_list_is_named_by_its_line() -> None:
    data = ("\n".join([MD5] * 5 + ["z" + MD5[1:]] + [MD5] * 3) + "\n").encode()
    with pytest.raises(InvalidListError) as caught:
        read_hashlist(Path("list.txt"), content=data)
    assert str(caught.value).startswith("list.txt:6: ")
