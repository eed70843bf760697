"""Image hashing against ThreatExchange's PDQ vectors, across pixel modes, and on bad bytes."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scrub.images.hashing import TOO_LARGE, UNDECODABLE, hash_image, parse_types
from scrub.images.synthetic import jpeg_bytes, picture

PDQ = Path(__file__).resolve().parent.parent / "data" / "pdq"


def distance(a: str, b: str) -> int:
    return int(np.unpackbits(np.frombuffer(bytes.fromhex(a), np.uint8)
                             ^ np.frombuffer(bytes.fromhex(b), np.uint8)).sum())


def expected() -> list[dict[str, str]]:
    with open(PDQ / "expected.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", expected(), ids=lambda r: r["file"])
def test_reference_hashes_come_out_exactly(row: dict[str, str]) -> None:
    data = (PDQ / row["file"]).read_bytes()
    out = hash_image(data, ["md5", "sha256", "pdq"])
    assert out["status"] == "ok"
    assert out["pdq"] == row["expected_pdq"]
    if row["expected_quality"]:
        assert out["pdq_quality"] == int(row["expected_quality"])
    assert out["md5"] == hashlib.md5(data).hexdigest()
    assert out["sha256"] == hashlib.sha256(data).hexdigest()


def test_every_bridge_edit_lies_within_31_bits_of_the_original() -> None:
    original = hash_image((PDQ / "bridge-mods" / "aaa-orig.jpg").read_bytes(), ["pdq"])["pdq"]
    edits = sorted((PDQ / "bridge-mods").glob("*.jpg"))
    assert len(edits) == 12
    for edit in edits:
        assert distance(hash_image(edit.read_bytes(), ["pdq"])["pdq"], original) <= 31, edit


def test_dihedral_hashes_match_the_rotated_and_flipped_files() -> None:
    files = sorted((PDQ / "dihedral").glob("*.jpg"))
    out = hash_image(files[0].read_bytes(), ["pdq"], dihedral=True)
    assert len(out["pdq_dihedral"]) == 8 and out["pdq_dihedral"][0] == out["pdq"]
    for rotation, path in zip(out["pdq_dihedral"], files, strict=True):
        assert distance(rotation, hash_image(path.read_bytes(), ["pdq"])["pdq"]) <= 16, path


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_the_same_picture_in_other_modes_hashes_within_a_few_bits() -> None:
    rgb = picture(np.random.default_rng(1), 128)
    grey = rgb.convert("L")
    reference = hash_image(encode(rgb, "PNG"), ["pdq", "phash"])
    grey_ref = hash_image(encode(grey, "PNG"), ["pdq"])["pdq"]
    variants = {
        "P": (rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "RGBA": (rgb.convert("RGBA"), "PNG"),
        "CMYK": (rgb.convert("CMYK"), "TIFF"),
        "YCbCr": (rgb.convert("YCbCr"), "TIFF"),
        "LAB": (rgb.convert("LAB"), "TIFF"),
        "RGB-JPEG": (rgb, "JPEG"),
    }
    for mode, (image, fmt) in variants.items():
        out = hash_image(encode(image, fmt), ["pdq", "phash"])
        assert out["status"] == "ok", mode
        assert distance(out["pdq"], reference["pdq"]) <= 24, mode
    pixels = np.asarray(grey)
    grey_variants = {
        "LA": (grey.convert("LA"), "PNG"),
        "I;16": (Image.fromarray(pixels.astype(np.uint16)), "PNG"),
        "F": (Image.fromarray(pixels.astype(np.float32)), "TIFF"),
        "I": (Image.fromarray(pixels.astype(np.int32)), "TIFF"),
    }
    palette = grey.convert("P")  # palette with a transparent index: read back as P + tRNS
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert Image.open(io.BytesIO(buffer.getvalue())).info.get("transparency") is not None
    grey_variants["P+transparency"] = (Image.open(io.BytesIO(buffer.getvalue())), "PNG")
    for mode, (image, fmt) in grey_variants.items():
        out = hash_image(encode(image, fmt), ["pdq"])
        assert out["status"] == "ok", mode
        assert distance(out["pdq"], grey_ref) <= 16, mode


def test_bad_bytes_get_a_status_and_still_their_content_hashes() -> None:
    good = jpeg_bytes(picture(np.random.default_rng(2), 64))
    cases = {
        b"": (UNDECODABLE, "empty"),
        b"this is not an image at all": (UNDECODABLE, "not an image"),
        good[: len(good) // 2]: (UNDECODABLE, None),
    }
    for data, (status, error) in cases.items():
        out = hash_image(data, ["md5", "pdq"])
        assert out["status"] == status
        assert "pdq" not in out
        assert out["md5"] == hashlib.md5(data).hexdigest()
        if error:
            assert out["error"] == error


def test_a_50_megapixel_image_is_not_decoded() -> None:
    data = encode(Image.new("L", (10_000, 5_000), 128), "PNG")  # tiny file, 50 MP of pixels
    out = hash_image(data, ["sha256", "pdq"])
    assert out["status"] == TOO_LARGE and out["error"] == "10000x5000 pixels"
    assert out["sha256"] == hashlib.sha256(data).hexdigest()


def test_hash_types_are_validated() -> None:
    assert parse_types("pdq, md5,md5") == ("md5", "pdq")
    with pytest.raises(ValueError, match="blake2"):
        parse_types("md5,blake2")
