"""Render a mixed, unlabelled photo set of small 3D scenes textured with real photographs.

Each scene is a room corner (floor and two walls) holding a box, every surface textured with
a different real photograph bundled in scikit-image or scikit-learn. Each scene is photographed
from several viewpoints on an arc with a pinhole camera, with varied exposure and mild noise.

Photos are written flat and shuffled (``OUT/photos/photo_0000.jpg`` ...), so neither names nor
folders reveal the scene; the true scene of each photo goes to ``OUT/truth.csv``, which is for
evaluation only (hashkit never reads it to build pairs).

    python examples/render_scenes.py OUT --scenes 5 --views 14 --size 640x480 --seed 0

Larger sets: scenes beyond the five that distinct photographs allow share textures (confusers),
and ``--distractors N`` adds photos of no scene.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

# Photographs bundled in the scikit-image wheel and scikit-learn's two sample images.
SKIMAGE_PHOTOS = [
    "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "camera",
    "coins", "page", "text", "immunohistochemistry", "retina", "hubble_deep_field", "clock", "cell",
]
SKLEARN_PHOTOS = ["china.jpg", "flower.jpg"]
SURFACES_PER_SCENE = 4  # floor, two walls, box (the box's faces share one photo, cropped apart)
SPLIT_WIDTH = 800  # photos at least this wide give two textures, their left and right halves


def progress(iterable, **kwargs):
    return tqdm(iterable, disable=None, **kwargs)


def load_photos() -> list[np.ndarray]:
    """Textures from all bundled photographs that load offline, as BGR uint8 images."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    photos = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
    photos.append(skimage.data.stereo_motorcycle()[0])  # the left view only
    photos += [load_sample_image(name) for name in SKLEARN_PHOTOS]
    textures = []
    for photo in map(_to_bgr, photos):
        width = photo.shape[1]
        textures += [photo[:, :width // 2], photo[:, width // 2:]] if width >= SPLIT_WIDTH else [photo]
    return textures


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(float(image.max()), 1e-9))).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def scene_quads(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """3D corners (4x3, counter-clockwise seen from outside) of the room and of the box faces."""
    width, depth, height = rng.uniform(1.8, 2.4), rng.uniform(1.8, 2.4), rng.uniform(1.3, 1.7)
    room = [
        np.array([[0, 0, 0], [width, 0, 0], [width, depth, 0], [0, depth, 0]], float),  # floor
        np.array([[0, 0, height], [0, depth, height], [0, depth, 0], [0, 0, 0]], float),  # wall x=0
        np.array([[width, 0, height], [0, 0, height], [0, 0, 0], [width, 0, 0]], float),  # wall y=0
    ]
    size = rng.uniform(0.45, 0.65)
    x0, y0 = rng.uniform(0.7, 1.0, size=2)
    x1, y1, z1 = x0 + size, y0 + size, size
    box = [
        np.array([[x0, y1, z1], [x1, y1, z1], [x1, y0, z1], [x0, y0, z1]], float),  # top
        np.array([[x1, y0, z1], [x1, y1, z1], [x1, y1, 0], [x1, y0, 0]], float),  # +x face
        np.array([[x1, y1, z1], [x0, y1, z1], [x0, y1, 0], [x1, y1, 0]], float),  # +y face
        np.array([[x0, y0, z1], [x1, y0, z1], [x1, y0, 0], [x0, y0, 0]], float),  # -y face
        np.array([[x0, y1, z1], [x0, y0, z1], [x0, y0, 0], [x0, y1, 0]], float),  # -x face
    ]
    return room, box


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation and translation of a camera at ``eye`` looking at ``target``."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return rotation, -rotation @ eye


def draw_quad(canvas: np.ndarray, texture: np.ndarray, corners_3d: np.ndarray,
              K: np.ndarray, R: np.ndarray, t: np.ndarray) -> None:
    """Paint a textured planar quad onto ``canvas`` (in place) through a pinhole camera."""
    cam = corners_3d @ R.T + t
    if np.any(cam[:, 2] < 0.05):
        return
    pixels = cam @ K.T
    pixels = (pixels[:, :2] / pixels[:, 2:]).astype(np.float32)
    h, w = texture.shape[:2]
    source = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    homography = cv2.getPerspectiveTransform(source, pixels)
    size = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpPerspective(texture, homography, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), homography, size,
                               flags=cv2.INTER_NEAREST)
    canvas[mask > 0] = warped[mask > 0]


def render_view(room, box, textures, K, eye, target, size) -> np.ndarray:
    """One view: room surfaces first, then the box's camera-facing faces (a convex object)."""
    width, height = size
    R, t = look_at(eye, target)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:] = (200, 180, 150)
    for quad, texture in zip(room, textures[:3]):
        draw_quad(canvas, texture, quad, K, R, t)
    box_texture = textures[3]
    half_h, half_w = box_texture.shape[0] // 2, box_texture.shape[1] // 2
    crops = [box_texture[:half_h, :half_w], box_texture[:half_h, half_w:],
             box_texture[half_h:, :half_w], box_texture[half_h:, half_w:], box_texture]
    for quad, crop in zip(box, crops):
        normal = np.cross(quad[1] - quad[0], quad[2] - quad[0])
        if np.dot(normal, eye - quad.mean(axis=0)) > 0:
            draw_quad(canvas, crop, quad, K, R, t)
    return canvas


def photograph(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Varied exposure (gain and gamma) and mild sensor noise."""
    gain, gamma = rng.uniform(0.75, 1.25), rng.uniform(0.85, 1.15)
    exposed = 255.0 * np.clip(gain * (image / 255.0) ** gamma, 0, 1)
    noisy = exposed + rng.normal(0, 2.5, size=image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def random_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of half to four fifths of each side, mirrored half of the time."""
    height, width = photo.shape[:2]
    h, w = (int(side * rng.uniform(0.5, 0.8)) for side in (height, width))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    crop = photo[top:top + h, left:left + w]
    return np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop)


def render_set(out_dir: Path, scenes: int, views: int, size: tuple[int, int], seed: int, spread: float = 50,
               distractors: int = 0) -> Path:
    """Render the photo set into ``out_dir/photos`` and the truth into ``out_dir/truth.csv``.

    Views of a scene lie on an arc of ``spread`` degrees. Scenes beyond the number that distinct
    bundled photographs allow (five) are textured with crops of them, so that scenes share
    textures; ``distractors`` photos of no scene (flat crops, label ``distractor_N``) join the set."""
    rng = np.random.default_rng(seed)
    photos = load_photos()
    order = rng.permutation(len(photos))
    distinct_scenes = len(photos) // SURFACES_PER_SCENE
    width, height = size
    focal = 0.9 * width
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    rendered: list[tuple[str, np.ndarray]] = []
    for scene in progress(range(scenes), desc="rendering scenes", unit="scene"):
        if scene < distinct_scenes:
            textures = [photos[i] for i in order[scene * SURFACES_PER_SCENE:(scene + 1) * SURFACES_PER_SCENE]]
        else:  # the bundled photographs are used up: crops of them, shared with other scenes (confusers)
            textures = [random_crop(photos[rng.integers(len(photos))], rng) for _ in range(SURFACES_PER_SCENE)]
        room, box = scene_quads(rng)
        target = np.array([0.9, 0.9, 0.35])
        start = rng.uniform(15, 25)
        for azimuth in np.linspace(start, start + spread, views) + rng.normal(0, 1.0, views):
            elevation = np.radians(rng.uniform(25, 38))
            radius = rng.uniform(3.3, 3.9)
            a = np.radians(azimuth)
            eye = target + radius * np.array([np.cos(a) * np.cos(elevation),
                                              np.sin(a) * np.cos(elevation), np.sin(elevation)])
            image = render_view(room, box, textures, K, eye, target, size)
            rendered.append((f"scene_{scene}", photograph(image, rng)))
    for distractor in range(distractors):  # a flat crop of a photograph, of no scene
        crop = random_crop(photos[rng.integers(len(photos))], rng)
        rendered.append((f"distractor_{distractor}", photograph(cv2.resize(crop, size), rng)))
    photo_dir = out_dir / "photos"
    photo_dir.mkdir(parents=True, exist_ok=True)
    truth = out_dir / "truth.csv"
    with truth.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for index, position in enumerate(rng.permutation(len(rendered))):
            label, image = rendered[position]
            name = f"photo_{index:04d}.jpg"
            cv2.imwrite(str(photo_dir / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            writer.writerow([f"photos/{name}", label])
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (photos/ and truth.csv)")
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--views", type=int, default=14, help="viewpoints per scene")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=float, default=50, help="degrees of the arc of a scene's viewpoints")
    parser.add_argument("--distractors", type=int, default=0, help="photos of no scene (flat crops)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    truth = render_set(args.out, args.scenes, args.views, (width, height), args.seed, args.spread, args.distractors)
    print(f"rendered {args.scenes} scenes x {args.views} views into {args.out / 'photos'}; "
          f"truth (evaluation only): {truth}")


if __name__ == "__main__":
    main()
