"""Hashes of one image: content hashes of its bytes, perceptual hashes of its pixels.

An image is decoded once, whatever is asked; content hashes (MD5, SHA-1, SHA-256) need no
decoding, so an undecodable file still gets them. Perceptual hashes follow the references partner
lists are made with: PDQ through ``pdqhash`` (64 hex digits, most significant bit first, with its
0-100 quality), pHash and dHash with ``imagehash``'s bits (16 hex digits; see
:mod:`scrub.images.perceptual`). Pixel modes: every mode becomes 8-bit RGB as Pillow converts it
(alpha dropped, not composited; LAB through an ICC transform). The pixel count is read from the
header and checked before any decoding. Rationale: docs/design/images.md.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from scrub.images.perceptual import dhash_hex, greyscale, phash_hex

CONTENT_TYPES = ("md5", "sha1", "sha256")
PIXEL_TYPES = ("pdq", "phash", "dhash")
HASH_TYPES = CONTENT_TYPES + PIXEL_TYPES
#: Images with more pixels are not decoded (status ``too_large``); 40 MP covers any web image.
DEFAULT_MAX_PIXELS = 40_000_000

#: Per-image outcomes. ``ok``: every asked hash computed.
OK, UNDECODABLE, TOO_LARGE = "ok", "undecodable", "too_large"

#: A gzip member is inflated up to this many bytes (every layer together); past it, its inner
#: bytes are not hashed and the member is counted as unmatchable (status ``too_large``).
MAX_GUNZIP_BYTES = 256 * 2**20
#: Nested gzip layers undone at most (webdataset's decoder strips ``.gz`` again and again).
MAX_GZIP_LAYERS = 4
GZIP_MAGIC = b"\x1f\x8b"

# Our own limit is checked before decoding; Pillow's warning and error would only duplicate it.
Image.MAX_IMAGE_PIXELS = None


def parse_types(text: str) -> tuple[str, ...]:
    """``md5,pdq`` -> ("md5", "pdq"), validated, in the canonical order, without repeats."""
    asked = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = sorted(set(asked) - set(HASH_TYPES))
    if unknown or not asked:
        raise ValueError(f"unknown hash type(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(HASH_TYPES)}")
    return tuple(t for t in HASH_TYPES if t in asked)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, as Pillow converts (see the module notes), for every mode Pillow opens."""
    if image.mode == "RGB":
        return image
    if image.mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"),
                                            ImageCms.createProfile("sRGB"), "LAB", "RGB")
        rgb = ImageCms.applyTransform(image, transform)
        if rgb is None:  # only a conversion in place gives none
            raise TypeError("the LAB conversion gave no image")
        return rgb
    if image.mode in ("P", "PA") and ("transparency" in image.info or image.mode == "PA"):
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def hash_image(data: bytes, types: Sequence[str], *, dihedral: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, object]:
    """The asked hashes of one encoded image, with ``status`` and ``error`` (a kind, never
    content). Never raises for bad image data."""
    out: dict[str, object] = {"status": OK, "error": None}
    for name in CONTENT_TYPES:
        if name in types:
            out[name] = hashlib.new(name, data).hexdigest()
    if not dihedral and not any(t in types for t in PIXEL_TYPES):
        return out
    rgb, status, error = decode(data, max_pixels)
    if rgb is None:
        out["status"], out["error"] = status, error
        return out
    pixels = np.ascontiguousarray(np.asarray(rgb))
    if "pdq" in types or dihedral:
        import pdqhash

        bits, quality = pdqhash.compute(pixels)
        out["pdq"] = _bits_hex(bits)
        out["pdq_quality"] = int(quality)
        if dihedral:
            rotations, _ = pdqhash.compute_dihedral(pixels)
            out["pdq_dihedral"] = [_bits_hex(b) for b in rotations]
    if "phash" in types or "dhash" in types:
        grey = greyscale(rgb)
        if "phash" in types:
            out["phash"] = phash_hex(grey)
        if "dhash" in types:
            out["dhash"] = dhash_hex(grey)
    return out


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS
           ) -> tuple[Image.Image | None, str, str | None]:
    """(RGB image, ``ok``, None) or (None, status, error kind)."""
    if not data:
        return None, UNDECODABLE, "empty"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return None, TOO_LARGE, f"{width}x{height} pixels"
                image.load()
                return to_rgb(image), OK, None
    except UnidentifiedImageError:
        return None, UNDECODABLE, "not an image"
    except Image.DecompressionBombError:
        return None, TOO_LARGE, "decompression bomb"
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError,
            TypeError, ZeroDivisionError) as exc:
        return None, UNDECODABLE, _error_kind(exc)


def _error_kind(exc: BaseException) -> str:
    text = str(exc).lower()
    if "truncated" in text or isinstance(exc, EOFError):
        return "truncated"
    return type(exc).__name__


def _bits_hex(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def gunzip_layers(data: bytes, limit: int | None = None) -> tuple[list[bytes], str | None]:
    """The inflated layers of gzip ``data`` (the first undoes one gzip layer, the next one more
    while the result is gzip again, up to :data:`MAX_GZIP_LAYERS`) and None, or the layers read
    so far and why the rest could not be (``too_large`` past ``limit`` bytes in all, or an error
    kind; ``limit`` defaults to :data:`MAX_GUNZIP_BYTES`). Every member of a multi-member
    stream is read, as ``gzip`` readers do."""
    limit = MAX_GUNZIP_BYTES if limit is None else limit
    layers: list[bytes] = []
    total = 0
    while data[:2] == GZIP_MAGIC and len(layers) < MAX_GZIP_LAYERS:
        out = bytearray()
        rest = data
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            try:
                out += inflater.decompress(rest, limit - total - len(out) + 1)
            except zlib.error:
                return layers, "corrupt gzip"
            if total + len(out) > limit or inflater.unconsumed_tail:
                return layers, TOO_LARGE
            if not inflater.eof:
                return layers, "truncated gzip"
            rest = inflater.unused_data
            if rest[:2] != GZIP_MAGIC:
                break  # trailing padding: gzip readers stop at the last member too
        total += len(out)
        data = bytes(out)
        layers.append(data)
    if data[:2] == GZIP_MAGIC:
        return layers, "too many gzip layers"
    return layers, None


#: Bytes that plain text (captions, JSON, keys) never holds: C0 controls but tab, LF, FF, CR.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def is_text(data: bytes) -> bool:
    """Whether ``data`` reads as plain UTF-8 text (a caption, JSON): every image format Pillow
    decodes from binary holds a control byte or invalid UTF-8 in its first bytes."""
    if _CONTROL.search(data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
