"""pHash and dHash with the exact bits ``imagehash`` gives, from one greyscale conversion.

Partner lists of 64-bit pHash/dHash values are made with ``imagehash``: Pillow's Lanczos resize
of the greyscale image to 32x32 (pHash: DCT of the rows then the columns, the top-left 8x8
block against its median) or to 9x8 (dHash: each pixel against its left neighbour). The same
steps here skip ``imagehash``'s per-call overhead (its hash object, a 64-character bit string)
and convert to greyscale once for both; the resize stays Pillow's own, which is the reference.
Tests compare every bit with ``imagehash`` on many images and sizes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def greyscale(image: Image.Image) -> Image.Image:
    """The ``L`` image both hashes start from (Pillow's ITU-R 601-2 luma)."""
    return image if image.mode == "L" else image.convert("L")


def phash_hex(grey: Image.Image) -> str:
    """``imagehash.phash`` (hash size 8, high-frequency factor 4) of an ``L`` image, as its 16
    hex digits."""
    import scipy.fftpack  # imported on first use: scipy costs 0.2 s at start-up

    pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    return _bits_hex(low > np.median(low))


def dhash_hex(grey: Image.Image) -> str:
    """``imagehash.dhash`` (hash size 8) of an ``L`` image, as its 16 hex digits."""
    pixels = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS))
    return _bits_hex(pixels[:, 1:] > pixels[:, :-1])


def _bits_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.ravel()).tobytes().hex()
