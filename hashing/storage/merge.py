"""``hashkit merge``: shard stores of one model joined into one store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import output_file, written_atomically
from hashkit.hashing.progress import progress

from .store import READ_ROWS, CodeStoreWriter, StoreSet


@dataclass
class MergeSummary:
    store: str
    shards: int
    rows: int
    duplicates: int  # rows of a path already taken from an earlier shard, left out


def merge(shards: list[Path], output: Path, overwrite: bool = False) -> MergeSummary:
    """Copy the rows of ``shards`` (stores of one model, in the order given) into the new store
    ``output``, each path once (its first row); ``output`` appears only once complete."""
    output = output_file(output, overwrite)
    with StoreSet(shards) as shard_set, exclusive_lock(output), written_atomically(output) as tmp:
        seen: set[str] = set()
        duplicates = 0
        with CodeStoreWriter(tmp, shard_set.meta) as store:
            bar = progress(total=shard_set.count, desc="merging", unit="code")
            for reader in shard_set.readers:
                for start in range(0, reader.count, READ_ROWS):
                    codes, paths, cells = reader.rows(start, start + READ_ROWS)
                    keep = []
                    for i, path in enumerate(paths):
                        if path not in seen:
                            seen.add(path)
                            keep.append(i)
                    duplicates += len(paths) - len(keep)
                    store.append(codes[keep], [paths[i] for i in keep], [cells[i] for i in keep])
                    bar.update(len(paths))
            bar.close()
            rows = store.count
    return MergeSummary(str(output), len(shards), rows, duplicates)
