"""pHash and dHash give imagehash's exact bits (partner lists are made with it)."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from scrub.images.hashing import hash_image
from scrub.images.perceptual import dhash_hex, greyscale, phash_hex
from scrub.images.synthetic import jpeg_bytes, picture


def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    out = []
    for index in range(60):
        height, width = (int(v) for v in rng.integers(1, 400, size=2))
        if index % 3 == 0:
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        elif index % 3 == 1:  # flat: every DCT coefficient ties with the median
            pixels = np.full((height, width, 3), int(rng.integers(0, 256)), dtype=np.uint8)
        else:
            y, x = np.mgrid[:height, :width]
            wave = np.sin(x / (width / 7 + 1)) + np.cos(y / (height / 5 + 1))
            pixels = np.stack([(wave * 60 + 128).astype(np.uint8)] * 3, axis=-1)
        out.append(Image.fromarray(pixels, "RGB"))
    return out


@pytest.mark.parametrize("image", pictures(), ids=lambda i: f"{i.width}x{i.height}")
def test_bits_equal_imagehash(image: Image.Image) -> None:
    grey = greyscale(image)
    assert phash_hex(grey) == str(imagehash.phash(image))
    assert dhash_hex(grey) == str(imagehash.dhash(image))


def test_hash_image_gives_imagehash_values_for_a_jpeg() -> None:
    data = jpeg_bytes(picture(np.random.default_rng(4), 256))
    out = hash_image(data, ["phash", "dhash"])
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    assert out["phash"] == str(imagehash.phash(decoded))
    assert out["dhash"] == str(imagehash.dhash(decoded))


@pytest.mark.slow
def test_the_dense_resize_equals_pillow_pixel_for_pixel() -> None:
    """Every shape (wide, tall, square, smaller than the target), random, flat and two-level
    pixels: the dense products where they apply and Pillow's fallback elsewhere give Pillow's
    bytes; the wide ones did take the dense path."""
    from scrub.images import perceptual

    rng = np.random.default_rng(21)
    dense = 0
    for index in range(240):
        width, height = (int(v) for v in rng.integers(1, 700, size=2))
        kind = index % 3
        if kind == 0:
            pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)
        elif kind == 1:
            pixels = np.full((height, width), int(rng.integers(0, 256)), dtype=np.uint8)
        else:
            pixels = (rng.random((height, width)) > 0.5).astype(np.uint8) * 255
        grey = Image.fromarray(pixels, "L")
        expected = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS))
        assert np.array_equal(perceptual.lanczos_resize(grey, 32, 32), expected), (width, height)
        if width >= height >= 32:
            dense += 1
            assert np.array_equal(perceptual._dense(pixels.astype(np.float64), 32, 32), expected)
    assert dense > 40 and perceptual._dense_agrees()
