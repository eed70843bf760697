"""pHash and dHash with the exact bits ``imagehash`` gives, from one greyscale conversion.

Partner lists of 64-bit pHash/dHash values are made with ``imagehash``; the same steps here skip
its per-call overhead and convert to greyscale once for both. pHash's 32x32 Lanczos resize is
Pillow's fixed-point algorithm done as two float64 matrix products, exact because every product
and partial sum is an integer below 2**53; where Pillow's order of passes might differ (see
:func:`lanczos_resize`) or above ``DENSE_MAX_PIXELS``, Pillow's own resize is used. Tests compare
every pixel with Pillow and every bit with ``imagehash``. Rationale: docs/design/images.md.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

#: Images up to this many pixels are resized by the dense products (8 bytes a pixel).
DENSE_MAX_PIXELS = 1 << 20
_PRECISION_BITS = 32 - 8 - 2
_UNIT = 1.0 / (1 << _PRECISION_BITS)


def greyscale(image: Image.Image) -> Image.Image:
    """The ``L`` image both hashes start from (Pillow's ITU-R 601-2 luma)."""
    return image if image.mode == "L" else image.convert("L")


def phash_hex(grey: Image.Image) -> str:
    """``imagehash.phash`` (hash size 8, high-frequency factor 4) of an ``L`` image, as its 16
    hex digits."""
    import scipy.fftpack  # imported on first use: scipy is slow to import

    pixels = lanczos_resize(grey, 32, 32)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    middle = np.partition(low.ravel(), (31, 32))  # np.median's two middle values and mean
    return _bits_hex(low > (middle[31] + middle[32]) / 2)


def dhash_hex(grey: Image.Image) -> str:
    """``imagehash.dhash`` (hash size 8) of an ``L`` image, as its 16 hex digits."""
    pixels = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS))
    return _bits_hex(pixels[:, 1:] > pixels[:, :-1])


def _bits_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.ravel()).tobytes().hex()


def lanczos_resize(grey: Image.Image, width: int, height: int) -> np.ndarray:
    """``np.asarray(grey.resize((width, height), LANCZOS))`` as float64, bit for bit.

    The dense products serve a square target from an image at least as wide as tall and at
    least as large as the target: Pillow then runs the horizontal pass first in every version
    (newer ones run the vertical pass first for some tall images, by a rule of their own), and a
    first call checks that against the installed Pillow. Other cases are Pillow's own resize.
    """
    if (width != height or grey.width < grey.height or grey.height < height
            or grey.width * grey.height > DENSE_MAX_PIXELS or not _dense_agrees()):
        return np.asarray(grey.resize((width, height), Image.Resampling.LANCZOS),
                          dtype=np.float64)
    return _dense(np.asarray(grey, dtype=np.float64), width, height)


def _dense(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Horizontal pass, then vertical, each skipped where the size does not change. Each pass
    multiplies only the band of inputs each group of outputs reads."""
    if width != pixels.shape[1]:
        sums = np.empty((pixels.shape[0], width))
        for lo, hi, first, last, block in _bands(pixels.shape[1], width):
            sums[:, first:last] = pixels[:, lo:hi] @ block
        pixels = _round_clip(sums)
    if height != pixels.shape[0]:
        sums = np.empty((height, pixels.shape[1]))
        for lo, hi, first, last, block in _bands(pixels.shape[0], height):
            sums[first:last] = block.T @ pixels[lo:hi]
        pixels = _round_clip(sums)
    return pixels


@lru_cache(maxsize=1)
def _dense_agrees() -> bool:
    """Whether the dense products equal the installed Pillow on probe images (sizes LAION
    has, random and flat pixels); if not, every resize is Pillow's."""
    rng = np.random.default_rng(0)
    for width, height in ((256, 256), (640, 480), (333, 331), (1000, 50), (97, 32)):
        for pixels in (rng.integers(0, 256, (height, width), dtype=np.uint8),
                       np.full((height, width), 255, np.uint8)):
            grey = Image.fromarray(pixels, "L")
            expected = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS))
            if not np.array_equal(_dense(pixels.astype(np.float64), 32, 32), expected):
                return False
    return True


def _round_clip(sums: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8((1 << 21) + sum >> 22)`` (scaling by a power of two and adding 0.5
    are exact on these integers), in place."""
    np.multiply(sums, _UNIT, out=sums)
    np.add(sums, 0.5, out=sums)
    np.floor(sums, out=sums)
    return np.clip(sums, 0.0, 255.0, out=sums)


@lru_cache(maxsize=64)
def _bands(in_size: int, out_size: int) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The weights cut into groups of 8 outputs: (first input, end input, first output, end
    output, the group's (inputs, outputs) block), only the inputs the group reads."""
    weights = _weights(in_size, out_size)
    bands = []
    for first in range(0, out_size, 8):
        last = min(first + 8, out_size)
        used = np.flatnonzero(weights[first:last].any(axis=0))
        lo, hi = (int(used[0]), int(used[-1]) + 1) if len(used) else (0, 1)
        bands.append((lo, hi, first, last, np.ascontiguousarray(weights[first:last, lo:hi].T)))
    return bands


@lru_cache(maxsize=64)
def _weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point Lanczos weights as a dense (out_size, in_size) matrix
    (``precompute_coeffs`` + ``normalize_coeffs_8bpc``, in the same order of operations)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    matrix = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        taps = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in taps:  # sequential, as in C
            total += w
        for x, w in enumerate(taps):
            w = w / total if total != 0.0 else w
            fixed = w * (1 << _PRECISION_BITS)
            matrix[xx, xmin + x] = int(-0.5 + fixed) if w < 0 else int(0.5 + fixed)
    matrix.setflags(write=False)
    return matrix


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0
