from pathlib import Path

import cv2
import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.training.images import find_images, read_rgb, resolve_inputs


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))
    return path


def test_find_images_recursive_any_case(tmp_path):
    for name in ["a.jpg", "b.JPEG", "sub/c.png", "sub/deeper/d.TIF", "e.bmp", "f.webp"]:
        write_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    names = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert names == ["a.jpg", "b.JPEG", "e.bmp", "f.webp", "sub/c.png", "sub/deeper/d.TIF"]


def test_resolve_inputs_from_folders_images_and_list_files(tmp_path):
    a = write_image(tmp_path / "photos" / "a.png")
    b = write_image(tmp_path / "photos" / "b.png")
    c = write_image(tmp_path / "other" / "c.png")
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nother/c.png\n\nphotos/a.png\n")
    resolved = resolve_inputs([tmp_path / "photos", listing, c])
    assert resolved == [a.resolve(), b.resolve(), c.resolve()]


def test_list_file_with_missing_image_names_the_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("missing.png\n")
    with pytest.raises(UserError, match=r"list.txt:1: no such image"):
        resolve_inputs([listing])


def test_read_rgb_rejects_corrupt_and_empty_files(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    assert read_rgb(tmp_path / "broken.jpg") is None
    assert read_rgb(tmp_path / "empty.png") is None
    assert read_rgb(write_image(tmp_path / "ok.png")).shape == (8, 8, 3)
