"""Deterministic LAION-like sample datasets for the demo, the tests and the benchmarks.

``generate_dataset`` writes N parquet shards in LAION-5B layout with the columns ``URL``, ``TEXT``,
``WIDTH``, ``HEIGHT``, ``similarity``, ``hash``, ``punsafe``, ``pwatermark``, ``key``, ``md5``,
``sha256`` and ``pdq``, plus (optionally) float16 768-d CLIP-like embeddings in clip-retrieval's
layout, ``img_emb/img_emb_{i}.npy`` row-aligned with shard ``i``. Built as whole columns from one
seed, so the same arguments give byte-identical files. ``hash`` is LAION's: murmur3 x64-128
(seed 0) of ``URL + TEXT`` in UTF-8, low 64 bits as a signed int64 (``mmh3.hash64(url + text)[0]``).
URLs and captions are shaped like LAION's: docs/design/synthetic.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import polars_hash as plh
import pyarrow as pa
import pyarrow.parquet as pq

from scrub.atomic import atomic_path, atomic_write_json
from scrub.dataset import (
    WRITER_COMPRESSION,
    WRITER_USE_DICTIONARY,
    compression_levels,
)
from scrub.keys import keys_to_hex

SAMPLE_MANIFEST = "sample.json"
EMBEDDING_DIM = 768

_BIG_HOSTS = [
    "i.pinimg.com", "cdn.shopify.com", "images-na.ssl-images-amazon.com", "i.ytimg.com",
    "ae01.alicdn.com", "live.staticflickr.com", "upload.wikimedia.org", "i0.wp.com",
    "res.cloudinary.com", "m.media-amazon.com", "images.squarespace-cdn.com", "i.ebayimg.com",
    "cdn.discordapp.com", "s3.amazonaws.com", "img.youtube.com", "media.istockphoto.com",
]
_SUFFIXES = [
    "com", "com", "com", "org", "net", "de", "fr", "co.uk", "com.au", "jp", "ru", "com.br",
    "io", "it", "nl", "pl", "co.jp", "blogspot.com", "wordpress.com", "github.io", "es", "ca",
]
_IDN_HOSTS = ["bücher.de", "пример.рф", "例え.jp", "münchen.de", "café.fr", "δοκιμή.gr"]
_SUBDOMAINS = ["", "", "", "www.", "cdn.", "images.", "static.", "media.", "img.", "blog."]
_SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "to", "vi", "sun", "star", "pix", "foto", "art",
              "shop", "home", "data", "blue", "max", "net", "web", "cloud", "zen", "geo", "tech"]
_PATH_WORDS = ["images", "uploads", "wp-content", "photos", "media", "2019", "2020", "2021",
               "2022", "products", "large", "thumbs", "originals", "gallery", "files", "assets",
               "static", "img", "content", "catalog", "Foto%20Album", "café", "über", "写真",
               "фото", "a%2Fb", "my%7Efolder", "IMG"]
_EXTENSIONS = [".jpg", ".jpg", ".jpg", ".jpeg", ".png", ".webp", ".JPG", ".gif", ""]
_QUERIES = ["", "", "", "", "?w=640", "?v=1543", "?width=1200&height=800", "?resize=300%2C200",
            "?format=jpg&quality=80", "?ssl=1", "?", "?a=%7e&b=%7E"]
_FRAGMENTS = [""] * 30 + ["#main", "#gallery-1"]
_WORDS = [
    "a", "the", "of", "and", "with", "in", "on", "for", "photo", "image", "picture", "red", "blue",
    "green", "black", "white", "vintage", "modern", "dress", "shirt", "wedding", "cake", "dog",
    "cat", "beach", "sunset", "mountain", "city", "street", "car", "house", "kitchen", "garden",
    "flower", "portrait", "woman", "man", "child", "family", "logo", "vector", "illustration",
    "stock", "background", "pattern", "design", "art", "painting", "drawing", "poster", "print",
    "Nike", "iPhone", "London", "Paris", "Tokyo", "New", "York", "2019", "HD", "4K", "free",
    "Hochzeit", "Kleid", "chien", "maison", "jardín", "playa", "猫", "東京", "Москва", "кошка",
    "café", "naïve", "façade", "—", "&", "|", "🙂", "🌸", "🔥", "#1", "(2020)", "[HD]",
]


@dataclass(frozen=True)
class SampleSpec:
    """The parameters that determine a sample byte for byte."""

    rows: int
    shards: int
    seed: int
    embeddings: bool = True

    def shard_rows(self) -> list[int]:
        base, extra = divmod(self.rows, self.shards)
        return [base + (1 if i < extra else 0) for i in range(self.shards)]


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def generate_dataset(out_dir: Path | str, *, rows: int, shards: int, seed: int = 0,
                     embeddings: bool = True) -> Path:
    """Write a sample into ``out_dir``; reuse it when ``sample.json`` says it is the same sample.

    Returns ``out_dir``. Each file is written atomically and the manifest last, so an interrupted
    generation is redone on the next call.
    """
    if rows < 0 or shards < 1:
        raise ValueError("rows must be >= 0 and shards >= 1")
    out = Path(out_dir)
    spec = SampleSpec(rows=rows, shards=shards, seed=seed, embeddings=embeddings)
    manifest = out / SAMPLE_MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == asdict(spec):
        return out
    manifest.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    row_start = 0
    for index, count in enumerate(spec.shard_rows()):
        rng = np.random.default_rng([seed, index])
        table = _shard_table(rng, index, count, row_start)
        with atomic_path(out / shard_name(index)) as tmp:
            pq.write_table(table, tmp, compression=WRITER_COMPRESSION,
                           compression_level=compression_levels(table.schema),
                           use_dictionary=WRITER_USE_DICTIONARY, row_group_size=128 * 1024)
        if embeddings:
            (out / "img_emb").mkdir(exist_ok=True)
            with (atomic_path(out / "img_emb" / f"img_emb_{index}.npy") as tmp,
                  open(tmp, "wb") as handle):
                np.save(handle, _embeddings(rng, count), allow_pickle=False)
        row_start += count
    atomic_write_json(manifest, asdict(spec))
    return out


def _choice(rng: np.random.Generator, pool: list[str], n: int) -> pl.Series:
    return pl.Series(pool, dtype=pl.String).gather(rng.integers(0, len(pool), n))


def _hosts(rng: np.random.Generator, n: int) -> pl.Series:
    # A fixed pool of long-tail hosts (same for every shard), then a Zipf-like pick.
    pool_rng = np.random.default_rng(20240101)
    tail = 5000
    a = pool_rng.integers(0, len(_SYLLABLES), tail)
    b = pool_rng.integers(0, len(_SYLLABLES), tail)
    c = pool_rng.integers(0, 1000, tail)
    subs = pool_rng.integers(0, len(_SUBDOMAINS), tail)
    sufs = pool_rng.integers(0, len(_SUFFIXES), tail)
    names = [f"{_SUBDOMAINS[s]}{_SYLLABLES[x]}{_SYLLABLES[y]}{z if z < 400 else ''}.{_SUFFIXES[t]}"
             for s, x, y, z, t in zip(subs, a, b, c, sufs, strict=True)]
    names[::97] = [h.upper() if i % 3 == 0 else h for i, h in enumerate(names[::97])]
    names[::211] = [f"{h}:8080" for h in names[::211]]
    pool = _BIG_HOSTS + _IDN_HOSTS + names
    ranks = np.minimum(rng.zipf(1.3, n) - 1, len(pool) - 1)
    return pl.Series(pool, dtype=pl.String).gather(ranks)


def _random_hex(rng: np.random.Generator, n: int, width: int) -> pl.Series:
    raw = rng.integers(0, 256, (n, width), dtype=np.uint8)
    return pl.Series(keys_to_hex(raw)).cast(pl.Binary).cast(pl.String)


def _captions(rng: np.random.Generator, n: int) -> pl.Series:
    lengths = rng.integers(2, 16, n)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
    words = pa.array(_WORDS).take(pa.array(rng.integers(0, len(_WORDS), int(offsets[-1]))))
    lists = pa.ListArray.from_arrays(pa.array(offsets), words)
    return pl.Series(lists).list.join(" ")


def _concat(parts: list[pl.Series], separator: str = "") -> pl.Series:
    return pl.select(pl.concat_str(parts, separator=separator)).to_series()


def _shard_table(rng: np.random.Generator, index: int, n: int, row_start: int) -> pa.Table:
    scheme = pl.Series(["https://", "http://"]).gather((rng.random(n) < 0.2).astype(np.int64))
    seg_count = rng.integers(1, 4, n)
    path = _concat([_choice(rng, _PATH_WORDS, n) for _ in range(3)], separator="/")
    path = pl.select(
        pl.when(pl.Series(seg_count == 1)).then(path.str.split("/").list.first())
        .otherwise(path)).to_series()
    row_id = pl.Series(np.arange(row_start, row_start + n, dtype=np.int64)).cast(pl.String)
    url = _concat([
        scheme, _hosts(rng, n), pl.Series(["/"] * n), path, pl.Series(["/"] * n),
        _choice(rng, _PATH_WORDS[:12], n), pl.Series(["-"] * n), row_id,
        _choice(rng, _EXTENSIONS, n), _choice(rng, _QUERIES, n), _choice(rng, _FRAGMENTS, n),
    ])
    text = _captions(rng, n)
    digits = max(4, len(str(max(n - 1, 0))))
    key = pl.Series(np.arange(n)).cast(pl.String).str.zfill(digits)
    key = _concat([pl.Series([f"{index:05d}"] * n), key])
    width = (rng.lognormal(6.3, 0.5, n).clip(64, 8000)).astype(np.int64)
    height = (width * rng.uniform(0.5, 1.6, n)).astype(np.int64).clip(64, 8000)
    punsafe = rng.beta(0.35, 6.0, n).astype(np.float32)
    flagged = rng.random(n) < 0.01  # a tail of clearly unsafe rows, as in LAION
    punsafe[flagged] = rng.uniform(0.9, 1.0, int(flagged.sum())).astype(np.float32)
    frame = pl.DataFrame({
        "URL": url,
        "TEXT": text,
        "WIDTH": width,
        "HEIGHT": height,
        "similarity": rng.uniform(0.28, 0.45, n),
        "punsafe": punsafe,
        "pwatermark": rng.beta(0.6, 3.0, n).astype(np.float32),
        "key": key,
        "md5": _random_hex(rng, n, 16),
        "sha256": _random_hex(rng, n, 32),
        "pdq": _random_hex(rng, n, 32),
    })
    laion_hash = frame.select(
        (plh.concat_str("URL", "TEXT").nchash.murmur128() & 0xFFFFFFFFFFFFFFFF)
        .cast(pl.UInt64).reinterpret(signed=True).alias("hash")).to_series()
    frame = frame.insert_column(6, laion_hash)
    table = frame.to_arrow()
    # Plain (non-view) Arrow types, as LAION's Spark-written parquet has.
    schema = pa.schema([
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type)
                 or pa.types.is_string_view(f.type) else f.type)
        for f in table.schema
    ])
    return table.cast(schema)


def _embeddings(rng: np.random.Generator, n: int) -> np.ndarray:
    emb = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float16)


def read_column(dataset: Path | str, column: str) -> pl.Series:
    """One column of every shard, in shard order (for planting matches in tests and benches)."""
    paths = sorted(Path(dataset).glob("*.parquet"))
    return pl.concat([pl.read_parquet(p, columns=[column]).to_series() for p in paths])


def write_hashlist(path: Path | str, values: list[str] | np.ndarray, *,
                   header: str | None = None) -> Path:
    """Write a plain-text hash list (one value per line, optional ``#`` header) atomically."""
    target = Path(path)
    lines = [f"# {header}"] if header else []
    body = "\n".join(list(lines) + [str(v) for v in values]) + "\n"
    with atomic_path(target) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return target


def random_md5s(n: int, seed: int) -> np.ndarray:
    """``n`` random md5-shaped hex strings (decoys that match nothing, with overwhelming odds)."""
    rng = np.random.default_rng([seed, 0xDEC0])
    return keys_to_hex(rng.integers(0, 256, (n, 16), dtype=np.uint8)).astype(str)
