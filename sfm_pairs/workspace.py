"""Existing COLMAP workspaces: the sparse models (binary or text) and the database of a
reconstruction made by COLMAP, GLOMAP, hloc or any tool that writes COLMAP's formats, read as
they are, without extracting, matching or mapping again."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pycolmap

from hashkit.hashing.errors import UserError

from .colmap import database_images, read_only

MODEL_FILES = ("cameras", "images", "points3D")  # a model folder holds these three, all .bin or all .txt


@dataclass
class Workspace:
    path: Path
    models: list[pycolmap.Reconstruction]  # in the order of their folders' paths
    database: Path | None  # COLMAP's database.db: the verified two-view geometries

    def image_names(self) -> set[str]:
        """Every image name the models and the database hold (relative to the images' folder)."""
        names = {image.name for model in self.models for image in model.images.values()}
        if self.database is not None:
            with closing(read_only(self.database)) as db:
                names.update(name for _, name in database_images(db))
        return names


def read_workspace(path: Path) -> Workspace:
    """The workspace at ``path``: a model folder, a database file, or a folder holding a database
    (``*.db``, at its top) and/or model folders at any depth (``sparse/0``, ``sparse/1``, ...)."""
    path = Path(path)
    if path.is_file():
        return Workspace(path, [], _checked_database(path))
    if not path.is_dir():
        raise UserError(f"--colmap {path}: no such file or folder")
    folders = sorted(folder for folder in (path, *path.rglob("*")) if folder.is_dir() and _is_model(folder))
    databases = sorted(path.glob("*.db"))
    if len(databases) > 1:
        raise UserError(f"--colmap {path} holds several databases ({', '.join(d.name for d in databases)}); "
                        "give the one to use")
    if not folders and not databases:
        raise UserError(f"--colmap {path} holds no COLMAP model (a folder with cameras, images and points3D, "
                        ".bin or .txt) and no database (*.db)")
    return Workspace(path, [_model(folder) for folder in folders],
                     _checked_database(databases[0]) if databases else None)


def _is_model(folder: Path) -> bool:
    return any(all((folder / f"{name}{suffix}").is_file() for name in MODEL_FILES) for suffix in (".bin", ".txt"))


def _model(folder: Path) -> pycolmap.Reconstruction:
    try:
        return pycolmap.Reconstruction(folder)
    except Exception as error:  # noqa: BLE001 - pycolmap raises plain exceptions for any damage
        raise UserError(f"{folder} is not a readable COLMAP model ({str(error).splitlines()[0][:200]})") from error


def _checked_database(database: Path) -> Path:
    """``database``, once it reads as a COLMAP database (its images and two-view geometries)."""
    try:
        with closing(read_only(database)) as db:
            db.execute("SELECT image_id, name FROM images LIMIT 1").fetchall()
            db.execute("SELECT pair_id, rows, config FROM two_view_geometries LIMIT 1").fetchall()
    except sqlite3.Error as error:
        raise UserError(f"{database} is not a readable COLMAP database ({error})") from error
    return database
