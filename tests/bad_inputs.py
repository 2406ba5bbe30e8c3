"""A corpus of awkward and broken image files, generated rather than stored.

``make_corpus(folder)`` writes one file per kind and returns, for each file name, whether hashkit
must read it (``True``: odd but valid) or report it as unreadable (``False``).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def _jpeg(rng: np.random.Generator, size: tuple[int, int] = (48, 64)) -> bytes:
    return cv2.imencode(".jpg", rng.integers(0, 255, (*size, 3), dtype=np.uint8))[1].tobytes()


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def _pil(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_corpus(folder: Path) -> dict[str, bool]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    files: dict[str, tuple[bytes, bool]] = {
        "zero-byte.jpg": (b"", False),
        "truncated.jpg": (_jpeg(rng)[:200], False),
        "truncated.png": (_png(colour)[:300], False),
        "text.jpg": (b"this is a text file, not a photo\n", False),
        "bad-checksum.png": (_damaged_checksum(_png(colour)), False),
        "png-named.jpg": (_png(colour), True),
        "grayscale.png": (_png(colour[:, :, 0]), True),
        "rgba.png": (_png(np.dstack([colour, np.full(colour.shape[:2], 128, np.uint8)])), True),
        "sixteen-bit.png": (_png((colour.astype(np.uint16) * 257)), True),
        "cmyk.jpg": (_pil(Image.fromarray(colour).convert("CMYK"), "JPEG"), True),
        "exif-rotated.jpg": (_pil(Image.fromarray(colour), "JPEG", exif=exif), True),
        "one-pixel.png": (_png(colour[:1, :1]), True),
        "huge-20000x20000.png": (_huge_png(), False),
        "unicode ünïcødé and spaces.jpg": (_jpeg(rng), True),
        "paletted.png": (_pil(Image.fromarray(colour).convert("P"), "PNG"), True),
        "bitmap.bmp": (cv2.imencode(".bmp", colour)[1].tobytes(), True),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    expected = {name: readable for name, (_, readable) in files.items()}
    (folder / "broken-link.jpg").symlink_to(folder / "does-not-exist.jpg")
    expected["broken-link.jpg"] = False
    (folder / "loop-a.jpg").symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(folder / "loop-a.jpg")
    expected["loop-a.jpg"] = expected["loop-b.jpg"] = False
    (folder / "folder-loop").symlink_to(folder)  # a folder that contains itself
    (folder / "notes.txt").write_text("not an image: ignored")
    with open(folder / "two-gibibytes.jpg", "wb") as f:  # a valid header, then a sparse hole: nothing to read
        f.write(_jpeg(rng))
        f.truncate(2 << 30)
    expected["two-gibibytes.jpg"] = False
    return expected


def _damaged_checksum(png: bytes) -> bytes:
    data = bytearray(png)
    data[20] ^= 1  # inside the IHDR chunk: its CRC no longer matches
    return bytes(data)


def _huge_png() -> bytes:
    """A 20,000 x 20,000 PNG of one colour: a few hundred kilobytes that would decode to 1.2 GB."""
    return _png(np.zeros((20000, 20000), np.uint8))
