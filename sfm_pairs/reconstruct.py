"""``hashkit reconstruct``: a photo folder to 3D models to ``pairs.h5``."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap

from hashkit.hashing.errors import UserError
from hashkit.hashing.images import IMAGE_EXTENSIONS, find_images, read_rgb
from hashkit.hashing.locking import exclusive_lock, output_folder
from hashkit.hashing.progress import progress

from .colmap import ColmapOptions, model_tracks, run_colmap
from .mining import covisible_pairs, cross_model_negatives
from .pairs_file import Pairs, write_pairs


@dataclass(frozen=True)
class ReconstructOptions:
    matcher: str = "exhaustive"
    min_shared_points: int = 15
    negatives_per_image: int = 10
    max_image_size: int = 1600
    min_model_size: int = 3
    seed: int = 0
    overwrite: bool = False
    verbose: bool = False  # COLMAP's own log on stderr


@dataclass
class ReconstructSummary:
    pairs_path: str
    images: int
    unreadable: list[str]
    registered: int
    model_sizes: list[int] = field(default_factory=list)
    positives: int = 0
    negatives: int = 0


def reconstruct(photos_dir: Path, work_dir: Path,
                options: ReconstructOptions = ReconstructOptions()) -> ReconstructSummary:
    """Reconstruct every scene in ``photos_dir`` and mine pairs into ``work_dir/pairs.h5``.

    Rerunning resumes: COLMAP stages already finished in ``work_dir/sfm`` are not redone.
    """
    photos_dir, work_dir = Path(photos_dir).resolve(), Path(work_dir)
    found = find_images(photos_dir)
    if not found:
        raise UserError(f"no images in {photos_dir} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    output_folder(work_dir)
    with exclusive_lock(work_dir / "reconstruct"):
        sfm_dir = work_dir / "sfm"
        if options.overwrite:
            shutil.rmtree(sfm_dir, ignore_errors=True)
        readable, unreadable = _split_readable(found, photos_dir)
        if not readable:
            raise UserError(f"none of the {len(found)} images in {photos_dir} could be decoded")
        _pin_photo_set(sfm_dir, readable)
        models = run_colmap(photos_dir, readable, sfm_dir, ColmapOptions(
            matcher=options.matcher, max_image_size=options.max_image_size,
            min_model_size=options.min_model_size, seed=options.seed, verbose=options.verbose))
        if not models:
            raise UserError(f"COLMAP reconstructed no 3D model from {len(readable)} images: the photos "
                            "need overlapping views of the same scenes (at least "
                            f"{options.min_model_size} per scene)")
        pairs = _mine(photos_dir, readable, unreadable, models, options)
        pairs_path = work_dir / "pairs.h5"
        write_pairs(pairs_path, pairs)
    return ReconstructSummary(
        pairs_path=str(pairs_path), images=len(found), unreadable=unreadable,
        registered=int((pairs.model_id >= 0).sum()),
        model_sizes=[int((pairs.model_id == m).sum()) for m in range(len(models))],
        positives=len(pairs.positives), negatives=len(pairs.negatives))


def _split_readable(paths: list[Path], root: Path) -> tuple[list[str], list[str]]:
    """Relative names of the images that decode, and of those that do not."""
    readable, unreadable = [], []
    for path in progress(paths, desc="checking images", unit="image"):
        name = path.relative_to(root).as_posix()
        (readable if read_rgb(path) is not None else unreadable).append(name)
    return readable, unreadable


def _pin_photo_set(sfm_dir: Path, names: list[str]) -> None:
    """Record the photo set of a new SfM folder; refuse to resume one built from other photos."""
    listing = sfm_dir / "images.txt"
    text = "\n".join(names) + "\n"
    if listing.exists():
        if listing.read_text(encoding="utf-8") != text:
            raise UserError(f"{sfm_dir} was built from a different set of photos; "
                            "use --overwrite to reconstruct again")
        return
    sfm_dir.mkdir(parents=True, exist_ok=True)
    listing.write_text(text, encoding="utf-8")


def _mine(photos_dir: Path, names: list[str], unreadable: list[str],
          models: list[pycolmap.Reconstruction], options: ReconstructOptions) -> Pairs:
    index_of = {name: i for i, name in enumerate(names)}
    model_id = np.full(len(names), -1, np.int32)
    positives, shared = [], []
    for m, model in enumerate(models):
        registered, tracks = model_tracks(model, index_of)
        model_id[registered] = m
        pairs, counts = covisible_pairs(tracks, options.min_shared_points)
        positives.append(pairs)
        shared.append(counts)
    settings = {key: value for key, value in asdict(options).items() if key not in ("overwrite", "verbose")}
    settings["pycolmap_version"] = pycolmap.__version__
    return Pairs(
        photo_root=photos_dir, images=names, model_id=model_id,
        positives=np.concatenate(positives), shared_points=np.concatenate(shared),
        negatives=cross_model_negatives(model_id, options.negatives_per_image, options.seed),
        unreadable=unreadable, settings=settings)
