"""COLMAP through pycolmap: feature extraction, matching and incremental mapping, resumable.

Each stage leaves a ``<stage>.done`` marker in the SfM folder once complete; a rerun skips
marked stages and redoes an unmarked one from scratch, so a crash costs one stage at most.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap
from hashkit.hashing.errors import UserError
from hashkit.hashing.progress import note, progress

MATCHERS = ("exhaustive", "sequential")
EXTRACTION_CHUNK = 32  # images per extraction call, so the progress bar moves


@dataclass(frozen=True)
class ColmapOptions:
    matcher: str = "exhaustive"
    max_image_size: int = 1600
    min_model_size: int = 3
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False  # COLMAP's own log lines on stderr


def _stage_done(sfm_dir: Path, stage: str) -> bool:
    return (sfm_dir / f"{stage}.done").exists()


def _mark_done(sfm_dir: Path, stage: str) -> None:
    (sfm_dir / f"{stage}.done").touch()


def extract(database: Path, photo_root: Path, names: list[str], options: ColmapOptions) -> None:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.num_threads
    for start in progress(range(0, len(names), EXTRACTION_CHUNK), desc="SIFT features", unit="batch"):
        pycolmap.extract_features(database, photo_root, image_names=names[start:start + EXTRACTION_CHUNK],
                                  extraction_options=extraction, device=pycolmap.Device.auto)


def match(database: Path, options: ColmapOptions) -> None:
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    note(f"matching features ({options.matcher})...")
    if options.matcher == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.auto)
    else:
        pycolmap.match_sequential(database, matching_options=matching, device=pycolmap.Device.auto)


def map_models(database: Path, photo_root: Path, models_dir: Path, num_images: int,
               options: ColmapOptions) -> None:
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.min_model_size = options.min_model_size
    mapping.num_threads = options.num_threads
    mapping.random_seed = options.seed
    mapping.multiple_models = True
    bar = progress(total=num_images, desc="registering images", unit="image")
    pycolmap.incremental_mapping(database, photo_root, models_dir, options=mapping,
                                 next_image_callback=lambda: bar.update(1))
    bar.close()


def run_colmap(photo_root: Path, names: list[str], sfm_dir: Path,
               options: ColmapOptions) -> list[pycolmap.Reconstruction]:
    """Run the unfinished stages in ``sfm_dir`` and return every 3D model, largest first."""
    if options.matcher not in MATCHERS:
        raise UserError(f"unknown matcher {options.matcher!r}; choose one of {', '.join(MATCHERS)}")
    sfm_dir.mkdir(parents=True, exist_ok=True)
    pycolmap.logging.minloglevel = pycolmap.logging.Level.ERROR.value if not options.verbose else 0
    database = sfm_dir / "database.db"
    models_dir = sfm_dir / "models"
    if not _stage_done(sfm_dir, "extract"):
        database.unlink(missing_ok=True)
        extract(database, photo_root, names, options)
        _mark_done(sfm_dir, "extract")
    if not _stage_done(sfm_dir, "match"):
        match(database, options)
        _mark_done(sfm_dir, "match")
    if not _stage_done(sfm_dir, "map"):
        shutil.rmtree(models_dir, ignore_errors=True)
        models_dir.mkdir()
        map_models(database, photo_root, models_dir, len(names), options)
        _mark_done(sfm_dir, "map")
    models = [pycolmap.Reconstruction(path) for path in sorted(models_dir.iterdir()) if path.is_dir()]
    return sorted(models, key=lambda model: -model.num_reg_images())


def model_tracks(model: pycolmap.Reconstruction, index_of: dict[str, int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The registered images of ``model`` and its 3D point tracks, as indices into our image list."""
    image_index = {image_id: index_of[image.name] for image_id, image in model.images.items()
                   if image.has_pose}
    tracks = [np.array([image_index[e.image_id] for e in point.track.elements
                        if e.image_id in image_index], dtype=np.int64)
              for point in model.points3D.values()]
    return np.array(sorted(image_index.values()), dtype=np.int64), tracks
