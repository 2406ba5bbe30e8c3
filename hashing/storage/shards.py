"""Shards of an image collection: which images ``encode --shard i/n`` takes, and its default
shard and store name under torchrun (one shard per process)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from hashkit.hashing.errors import UserError


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as (i, n), with 0 <= i < n."""
    index, sep, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise UserError(f"--shard expects i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return shard


def torchrun_shard() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when running as one of several torchrun processes, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def in_shard(path: Path, shard: tuple[int, int]) -> bool:
    """Whether ``path`` belongs to ``shard``: by a checksum of the path, so that a photo keeps its
    shard when the collection grows."""
    return zlib.crc32(str(path).encode("utf-8", "surrogateescape")) % shard[1] == shard[0]


def shard_store_name(output: Path, shard: tuple[int, int]) -> Path:
    """``codes.h5`` -> ``codes-00002-of-00004.h5``."""
    return output.with_name(f"{output.stem}-{shard[0]:05d}-of-{shard[1]:05d}{output.suffix}")
