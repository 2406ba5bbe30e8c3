"""Safe outputs: checked output paths, atomic replacement (also of files a library builds in
memory), and the digest that identifies a file's contents."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hashkit.hashing.errors import UserError

from .disk_space import NoSpaceError, is_out_of_space, no_space, room_for

HDF5_LAYOUT = ("v108", "latest")  # HDF5 1.8 on: its metadata carries checksums, so damage is told, not read


def output_file(path: Path, overwrite: bool = False) -> Path:
    """Check ``path`` as a file to write: not a folder, not an existing file unless ``overwrite``;
    its folder is created when missing."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; use --overwrite to replace it")
    output_folder(path.parent)
    return path


def output_folder(path: Path) -> Path:
    """Create the folder ``path`` (and its parents) when missing; an error if a file is in the way."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise UserError(f"{error.filename or path} is a file, not a folder") from error
    except OSError as error:
        raise UserError(f"cannot create the folder {path}: {error.strerror}") from error
    return path


@contextmanager
def written_atomically(final_path: Path, needed: int = 0) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path`` to write, new (a leftover of a killed run is
    removed first); on success it replaces ``final_path`` in one step, so a file under its final
    name is always complete. On failure the temporary file is removed and ``final_path`` is left
    as it was; a failure for lack of space (or less room than ``needed`` bytes, checked first)
    becomes a ``NoSpaceError`` that says so. Callers hold ``final_path``'s lock."""
    final_path = Path(final_path)
    tmp_path = final_path.with_name(final_path.name + ".tmp")
    tmp_path.unlink(missing_ok=True)  # a killed run's leftover: never continued
    kept = f"{final_path} is left as it was" if final_path.exists() else f"{final_path} was not written"
    if room_for(tmp_path) < needed:
        raise no_space(final_path, kept, needed)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, final_path)
    except Exception as error:
        if isinstance(error, NoSpaceError) or is_out_of_space(error):  # told for the final path, not the temporary
            raise no_space(final_path, kept) from error
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    """``data`` as the file ``path``, whole or not at all (``written_atomically``). Libraries that
    write files themselves (torch, FAISS, HDF5) write to memory first, then through here: a full
    disk then fails a plain write, never inside the library."""
    with written_atomically(path, len(data)) as tmp:
        tmp.write_bytes(data)


def write_torch(path: Path, payload: dict) -> None:
    """``torch.save(payload)`` as the file ``path``, through ``write_bytes``."""
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


@contextmanager
def hdf5_in_memory() -> Iterator[tuple]:
    """A new HDF5 file (h5py.File) built in memory, and the BytesIO that holds its bytes once the
    block ends, for ``write_bytes``."""
    import h5py

    image = io.BytesIO()
    with h5py.File(image, "w", libver=HDF5_LAYOUT) as f:
        yield f, image


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
