from pathlib import Path

import cv2
import numpy as np
import pytest

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.images import find_images, read_rgb, resolve_inputs


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


def smooth_photo(height: int, width: int) -> np.ndarray:
    """A smooth colour gradient (BGR), which a DCT-scaled decode reproduces closely."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(np.uint8)


def test_large_jpegs_decode_at_a_dct_scale_that_keeps_the_shorter_side(tmp_path):
    photo = smooth_photo(800, 1000)
    cv2.imwrite(str(tmp_path / "a.jpg"), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    assert read_rgb(tmp_path / "a.jpg").shape == (800, 1000, 3)  # no min_side: full size
    assert read_rgb(tmp_path / "a.jpg", min_side=224).shape == (400, 500, 3)  # 800 // 4 = 200 < 224: halved
    assert read_rgb(tmp_path / "a.jpg", min_side=100).shape == (100, 125, 3)  # an eighth
    assert read_rgb(tmp_path / "a.jpg", min_side=500).shape == (800, 1000, 3)  # 800 // 2 < 500
    assert read_rgb(tmp_path / "a.png", min_side=100).shape == (800, 1000, 3)  # only JPEGs are scaled
    reduced = read_rgb(tmp_path / "a.jpg", min_side=224).astype(int)
    shrunk = cv2.cvtColor(cv2.resize(photo, (500, 400), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    assert np.abs(reduced - shrunk).mean() < 2  # the same picture, downscaled


def test_scaled_decoding_keeps_the_exif_orientation(tmp_path):
    from PIL import Image

    image = Image.fromarray(smooth_photo(600, 1000)[..., ::-1].copy())
    exif = image.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated a quarter turn: portrait
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_rgb(tmp_path / "rotated.jpg").shape == (1000, 600, 3)
    assert read_rgb(tmp_path / "rotated.jpg", min_side=150).shape == (250, 150, 3)


def test_threads_decode_a_batch_as_one_thread_does_and_leave_stderr_where_it_was(tmp_path):
    import os

    import torch

    from hashkit.hashing.training.data import ImageFiles

    paths = []
    for i in range(24):
        path = tmp_path / f"{i:02d}.png"
        cv2.imwrite(str(path), smooth_photo(40 + i, 50))
        if i % 3 == 0:  # a damaged PNG, whose decoding libpng complains about on stderr
            path.write_bytes(path.read_bytes()[:60])
        paths.append(path)
    stderr_before = os.fstat(2)
    threaded = ImageFiles(paths, 32, decode_threads=4).__getitems__(list(range(24)))
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (stderr_before.st_dev, stderr_before.st_ino)
    one = ImageFiles(paths, 32).__getitems__(list(range(24)))
    assert [ok for _, _, ok in threaded] == [i % 3 != 0 for i in range(24)]
    assert [index for _, index, _ in threaded] == list(range(24))
    assert all(torch.equal(a, b) for (a, _, _), (b, _, _) in zip(threaded, one))


def test_normalizer_gives_torchvisions_normalised_values_on_the_device():
    import torch
    from torchvision.transforms import v2

    from hashkit.hashing.training.data import Normalizer

    images = torch.randint(0, 256, (5, 3, 17, 23), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    expected = v2.Normalize(mean, std)(v2.ToDtype(torch.float32, scale=True)(images))
    normalized = Normalizer(mean, std, torch.device("cpu"))(images)
    assert normalized.dtype == torch.float32 and normalized.shape == images.shape
    assert torch.allclose(normalized, expected, atol=1e-5)
    assert not torch.allclose(Normalizer(mean[::-1], std, torch.device("cpu"))(images), expected, atol=1e-2)
    assert normalized.is_contiguous(memory_format=torch.channels_last)


def test_eval_transform_gives_torchvisions_resize_and_centre_crop_pixels():
    import torch
    from torchvision.transforms import v2

    from hashkit.hashing.training.data import EvalTransform

    generator = torch.Generator().manual_seed(0)
    # landscape, portrait, square, odd and even margins, upscaling, already the size, one side the size
    for height, width, size in [(480, 640, 224), (641, 427, 224), (300, 300, 224), (225, 301, 224), (97, 131, 224),
                                (224, 224, 224), (224, 333, 224), (35, 34, 32), (501, 500, 499)]:
        photo = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
        image = photo.permute(2, 0, 1)  # as data.load_tensor gives it: channels-last strides
        expected = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])(image)
        ours = EvalTransform(size)(image)
        assert ours.shape == (3, size, size) and torch.equal(ours, expected), (height, width, size)


def test_networks_run_channels_last_with_the_default_layouts_outputs():
    import torch
    from torchvision.models import mobilenet_v2

    from hashkit.hashing.runtime import to_device

    torch.manual_seed(0)
    network = mobilenet_v2(num_classes=16).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = network(images)
        laid_out = to_device(network, torch.device("cpu"))
        assert laid_out.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        outputs = laid_out(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(outputs, expected, atol=1e-4)


def test_training_photos_are_decoded_no_smaller_than_their_smallest_random_crop_needs():
    import torch
    from torchvision.transforms import v2

    from hashkit.hashing.training.data import CROP_RATIO, CROP_SCALE, train_min_side

    torch.manual_seed(0)
    side = train_min_side(224)
    assert 224 < side < 2 * 224  # a 640 x 480 photo keeps its full size; one of 4000 x 3000 is read at 1/8
    for height, width in ((side, side), (side, side * 4 // 3), (side * 3, side)):
        crops = [v2.RandomResizedCrop.get_params(torch.empty(3, height, width), list(CROP_SCALE), list(CROP_RATIO))
                 for _ in range(2000)]
        assert min(min(h, w) for _, _, h, w in crops) >= 224


def test_decoding_plan_keeps_the_cpu_for_the_network_and_honours_explicit_workers():
    import torch

    from hashkit.hashing.runtime import decoding_plan

    assert decoding_plan(None, torch.device("cpu")) == (0, torch.get_num_threads())
    assert decoding_plan(3, torch.device("cpu")) == (3, 1)
    assert decoding_plan(0, torch.device("cuda")) == (0, torch.get_num_threads())
    assert decoding_plan(None, torch.device("cuda"))[0] >= 1
    assert decoding_plan(None, torch.device("cuda"), batches=3)[0] >= 1
    assert decoding_plan(None, torch.device("cuda"), batches=2) == (0, torch.get_num_threads())  # fits two batches
    assert decoding_plan(2, torch.device("cuda"), batches=1) == (2, 1)


def test_images_are_decoded_in_process_on_the_cpu_and_by_workers_beside_a_gpu():
    import torch

    from hashkit.hashing.runtime import worker_processes

    assert worker_processes(None, torch.device("cpu")) == 0
    assert worker_processes(None, torch.device("cuda")) >= 1
    assert worker_processes(2, torch.device("cpu")) == 2 and worker_processes(0, torch.device("cuda")) == 0
