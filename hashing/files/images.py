"""Finding and reading image files."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from hashkit.hashing.errors import UserError

MAX_PIXELS = 100_000_000  # larger images are refused: a 20,000 x 20,000 PNG of a few hundred KB decodes to 1.2 GB
MAX_FILE_BYTES = 1 << 30  # larger files are refused unread (OpenCV aborts on 2 GiB); 100 MP at 16-bit RGBA is 0.8 GB
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursive, any letter case; a symbolic link with an image
    name counts even when broken, so that it is reported as unreadable), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if (p.is_file() or p.is_symlink()) and is_image_path(p))


def resolve_inputs(inputs: list[Path]) -> list[Path]:
    """Absolute image paths from images, folders (recursive) and text files listing paths.

    A list file holds one path per line (blank lines and ``#`` comments ignored); relative
    lines are relative to the list file's folder. Paths stay as given (made absolute, not
    resolved: a symbolic link keeps its own name); two paths to one file keep the first.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += find_images(item)
        elif item.is_file() and is_image_path(item):
            found.append(item)
        elif item.is_file():
            found += _read_list_file(item)
        else:
            raise UserError(f"no such file or folder: {item}")
    unique: dict[Path, Path] = {}  # real file -> the first path naming it, absolute as the user gave it
    for path in found:
        unique.setdefault(os.path.realpath(path), Path(os.path.abspath(path)))
    return list(unique.values())


def _read_list_file(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise UserError(f"{list_file} is neither an image nor a text file listing images") from error
    paths = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line) if Path(line).is_absolute() else list_file.parent / line
        if not path.is_file():
            raise UserError(f"{list_file}:{number}: no such image: {line}")
        paths.append(path)
    return paths


def read_rgb(path: Path, min_side: int | None = None) -> np.ndarray | None:
    """The image as an RGB uint8 array, or None when the file cannot be read or decoded, or would
    decode to more than MAX_PIXELS pixels. With ``min_side``, a JPEG whose shorter side is at least
    twice that is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling: an antialiased
    downscale at a fraction of the cost of a full decode), its shorter side staying >= min_side."""
    try:  # the size and the header first: a huge file is refused before its body is read
        if not Path(path).is_file() or not 0 < Path(path).stat().st_size <= MAX_FILE_BYTES:
            return None
        header = _header(Path(path))
        if header.width * header.height > MAX_PIXELS:
            return None
        raw = Path(path).read_bytes()
    except OSError:  # an I/O error, a file that vanished or cannot be opened
        return None
    flag = _REDUCED_JPEG.get(_reduction(header, min_side), cv2.IMREAD_COLOR)
    with _quiet_stderr():  # libpng prints "libpng error: ..." for a damaged PNG; the caller reports it
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), flag)
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_REDUCED_JPEG = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class _Header(NamedTuple):
    width: int
    height: int
    format: str | None


def _header(path: Path) -> _Header:
    """Size and format from the file's header (Pillow reads no more); (0, 0, None) when Pillow does
    not know the format (OpenCV may still), more than MAX_PIXELS when Pillow refuses it as a bomb."""
    try:
        with Image.open(path) as image:
            return _Header(image.width, image.height, image.format)
    except Image.DecompressionBombError:  # Pillow's own limit, above ours
        return _Header(MAX_PIXELS + 1, 1, None)
    except (OSError, ValueError):
        return _Header(0, 0, None)


def _reduction(header: _Header, min_side: int | None) -> int:
    """The largest of 1, 2, 4, 8 that keeps a JPEG's shorter side >= ``min_side`` (1 otherwise).
    The stored orientation may swap width and height; the shorter side is the same either way."""
    if min_side is None or header.format != "JPEG":
        return 1
    shorter = min(header.width, header.height)
    return max((f for f in (1, 2, 4, 8) if shorter // f >= min_side), default=1)


class _QuietStderr:
    """Sends what C libraries write to file descriptor 2 to /dev/null while any thread is inside:
    the descriptor is process-wide, so threads decoding at once share one redirection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._saved = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    os.dup2(self._saved, 2)
                    os.close(self._saved)


_quiet_stderr = _QuietStderr()
