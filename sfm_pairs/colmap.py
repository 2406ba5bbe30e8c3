"""COLMAP through pycolmap: feature extraction, matching of chosen image pairs, and mapping
(incremental, global or hierarchical), resumable.

The photos are given to COLMAP through a folder of numbered links (``sfm/images/000000.jpg``
and on), so that COLMAP's pair lists never see a path with spaces or odd characters. Each stage
leaves a ``<stage>.done`` marker in the SfM folder once complete; a rerun skips marked stages.
Matching also records how many pairs it has finished, so a rerun continues where it stopped;
mapping is redone from scratch when its marker is missing or was left by other settings. Before
each call, the disk is checked for room for what the call may write at most (COLMAP ends the
process when a write to its database fails).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

if threading.current_thread() is threading.main_thread():  # signal handlers are set from the main thread only
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # pycolmap's import put glog's handler there, which prints a
    # C++ stack dump on a plain kill; the default ends the process at once and quietly (finished stages are kept)

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.disk_space import METADATA_BYTES, ensure_room
from hashkit.hashing.files.outputs import written_atomically
from hashkit.hashing.progress import progress

MAPPERS = ("incremental", "global", "hierarchical")
CALL_SECONDS = 10.0  # extraction and matching run in calls of about this long: the progress bar moves, a rerun
# resumes after the last finished call, and each call's fixed cost (reading descriptors, starting threads) stays small
FIRST_CALL = {"extract": 16, "match": 500}  # images, pairs: the first call, before its speed is known
FEATURE_BYTES = 2 * (128 + 6 * 4)  # a SIFT feature in the database (descriptor, keypoint), twice for the log
MATCH_BYTES = 2 * 2 * 8  # a match (two feature indices), as a raw match and as an inlier, twice for the log
_NOT_A_GEOMETRY = {int(config.value) for config in (pycolmap.TwoViewGeometryConfiguration.UNDEFINED,
                                                   pycolmap.TwoViewGeometryConfiguration.DEGENERATE,
                                                   pycolmap.TwoViewGeometryConfiguration.WATERMARK)}


@dataclass(frozen=True)
class ColmapOptions:
    mapper: str
    max_image_size: int
    max_features: int  # SIFT features kept per photo (the strongest)
    min_model_size: int = 3
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False  # COLMAP's own log lines on stderr


@dataclass
class SfmModel:
    """A 3D model as pair mining sees it, in photo numbers (indices into the photo list)."""

    registered: np.ndarray  # the photos registered in the model
    tracks: list[np.ndarray]  # per 3D point, the photos observing it


@dataclass
class SfmResult:
    models: list[SfmModel]  # largest first
    verified: np.ndarray  # (V, 2) photo numbers: pairs with a verified two-view geometry
    inliers: np.ndarray  # (V,) their inlier matches
    seconds: dict[str, float]  # wall time of each stage run now (0 for a stage done before)


PhotoNumber = Callable[[str], "int | None"]  # an image name in COLMAP's files -> its photo number (None: not used)


def sfm_result(models: list[pycolmap.Reconstruction], database: Path | None, number: PhotoNumber,
               seconds: dict[str, float]) -> SfmResult:
    """The models (largest first, by photos registered) and the verified geometries of
    ``database`` (none without one), in photo numbers."""
    tracked = sorted((model_tracks(model, number) for model in models), key=lambda model: -len(model.registered))
    verified, inliers = verified_geometries(database, number) if database is not None else \
        (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    return SfmResult(tracked, verified, inliers, {stage: round(value, 3) for stage, value in seconds.items()})


def link_name(index: int, name: str) -> str:
    """The name under which COLMAP sees photo number ``index`` (called ``name``)."""
    return f"{index:06d}{Path(name).suffix.lower()}"


def image_index(link: str) -> int:
    """The photo number of a link name."""
    return int(Path(link).stem)


def _stage_done(sfm_dir: Path, stage: str, settings: str = "") -> bool:
    marker = sfm_dir / f"{stage}.done"
    return marker.exists() and marker.read_text() == settings


def _mark_done(sfm_dir: Path, stage: str, settings: str = "") -> None:
    (sfm_dir / f"{stage}.done").write_text(settings)


def link_photos(photo_root: Path, names: list[str], images_dir: Path) -> list[str]:
    """Numbered links in ``images_dir`` to the photos; returns the link names."""
    images_dir.mkdir(parents=True, exist_ok=True)
    links = [link_name(i, name) for i, name in enumerate(names)]
    for link, name in zip(links, names):
        target, path = photo_root / name, images_dir / link
        if not path.is_symlink() or os.readlink(path) != str(target):
            path.unlink(missing_ok=True)
            path.symlink_to(target)
    return links


def timed_calls(start: int, total: int, first: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges (start, stop) up to ``total``: the first of ``first`` items, each later one
    sized from the speed of the one before to take about CALL_SECONDS (never below ``first``)."""
    size = first
    while start < total:
        stop = min(start + size, total)
        began = time.perf_counter()
        yield start, stop
        seconds_per_item = max(time.perf_counter() - began, 1e-6) / (stop - start)
        size = max(first, int(CALL_SECONDS / seconds_per_item))
        start = stop


def extract(database: Path, images_dir: Path, links: list[str], options: ColmapOptions) -> None:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.sift.max_num_features = options.max_features
    extraction.num_threads = options.num_threads
    # SIFT keeps up to max_num_orientations features at each of max_num_features keypoints
    per_image = extraction.sift.max_num_features * extraction.sift.max_num_orientations * FEATURE_BYTES
    with progress(total=len(links), desc="SIFT features", unit="image") as bar:
        for start, stop in timed_calls(0, len(links), FIRST_CALL["extract"]):
            ensure_room(database, (stop - start) * per_image + METADATA_BYTES,
                        "rerun the same command to extract the features again")
            pycolmap.extract_features(database, images_dir, image_names=links[start:stop],
                                      extraction_options=extraction, device=pycolmap.Device.auto)
            bar.update(stop - start)


def match(database: Path, sfm_dir: Path, links: list[str], pairs: np.ndarray, options: ColmapOptions) -> None:
    """Match and verify ``pairs`` (indices into ``links``) in calls of about CALL_SECONDS, recording
    the pairs done in ``sfm_dir/match.progress``; a rerun continues after the last finished call."""
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    done_file = sfm_dir / "match.progress"
    done = int(done_file.read_text()) if done_file.exists() else 0
    bar = progress(total=len(pairs), initial=done, desc="matching", unit="pair")
    chunk_file = sfm_dir / "match-chunk.txt"
    features = _feature_counts(database, links)
    for start, stop in timed_calls(done, len(pairs), FIRST_CALL["match"]):
        chunk = pairs[start:stop]
        ensure_room(database, int(np.minimum(features[chunk[:, 0]], features[chunk[:, 1]]).sum()) * MATCH_BYTES
                    + METADATA_BYTES, f"the {start} pairs matched so far are kept; rerun the same command to continue")
        chunk_file.write_text("".join(f"{links[i]} {links[j]}\n" for i, j in chunk))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = str(chunk_file)
        pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=pairing,
                                   device=pycolmap.Device.auto)
        with written_atomically(done_file) as tmp:
            tmp.write_text(str(stop))
        bar.update(len(chunk))
    bar.close()
    chunk_file.unlink(missing_ok=True)


def _feature_counts(database: Path, links: list[str]) -> np.ndarray:
    """The number of SIFT features of each photo (in ``links``' order) in COLMAP's database."""
    with closing(read_only(database)) as db:
        rows = db.execute("SELECT images.name, keypoints.rows FROM images JOIN keypoints USING (image_id)")
        found = dict(rows.fetchall())
    return np.array([found.get(link, 0) for link in links], np.int64)


def map_models(database: Path, images_dir: Path, models_dir: Path, num_images: int,
               options: ColmapOptions) -> None:
    ensure_room(models_dir, database.stat().st_size + METADATA_BYTES,
                "the features and matches are kept; rerun the same command to map again")
    if options.mapper == "global":
        mapping = pycolmap.GlobalPipelineOptions()
        mapping.min_model_size = options.min_model_size
        mapping.num_threads = options.num_threads
        mapping.random_seed = options.seed
        mapping.multiple_models = True
        with progress(total=1, desc="global mapping", unit="run") as bar:
            pycolmap.global_mapping(database, images_dir, models_dir, options=mapping)
            bar.update(1)
        return
    incremental = pycolmap.IncrementalPipelineOptions()
    incremental.min_model_size = options.min_model_size
    incremental.num_threads = options.num_threads
    incremental.random_seed = options.seed
    incremental.multiple_models = True
    if options.mapper == "hierarchical":  # clusters of at most 500 overlapping images, mapped and merged
        mapping = pycolmap.HierarchicalPipelineOptions()
        mapping.incremental_options = incremental
        mapping.num_threads = options.num_threads
        with progress(total=1, desc="hierarchical mapping", unit="run") as bar:
            pycolmap.hierarchical_mapping(database, images_dir, models_dir, options=mapping)
            bar.update(1)
        return
    bar = progress(total=num_images, desc="registering images", unit="image")
    pycolmap.incremental_mapping(database, images_dir, models_dir, options=incremental,
                                 next_image_callback=lambda: bar.update(1))
    bar.close()


def verified_geometries(database: Path, number: PhotoNumber) -> tuple[np.ndarray, np.ndarray]:
    """Photo-number pairs with a verified two-view geometry and their inlier match counts, read
    from COLMAP's tables (``images``, ``two_view_geometries``: ``rows`` is the inlier count) with a
    read-only connection, so that a finished database is left untouched."""
    with closing(read_only(database)) as db:
        photo = {image_id: number(name) for image_id, name in database_images(db)}
        rows = db.execute("SELECT pair_id, rows, config FROM two_view_geometries WHERE rows > 0").fetchall()
    pairs, inliers = [], []
    for pair_id, count, config in rows:
        first, second = (photo.get(image_id) for image_id in pycolmap.pair_id_to_image_pair(pair_id))
        if config in _NOT_A_GEOMETRY or first is None or second is None:
            continue
        pairs.append((first, second))
        inliers.append(count)
    return np.array(pairs, np.int64).reshape(-1, 2), np.array(inliers, np.int64)


def run_colmap(photo_root: Path, names: list[str], sfm_dir: Path, select_pairs: Callable[[], np.ndarray],
               options: ColmapOptions) -> SfmResult:
    """Run the unfinished stages in ``sfm_dir``: extract, match the pairs ``select_pairs()`` gives
    (indices into ``names``; asked once, then kept in ``sfm_dir/pairs-to-match.txt``), map."""
    if options.mapper not in MAPPERS:
        raise UserError(f"unknown mapper {options.mapper!r}; choose one of {', '.join(MAPPERS)}")
    sfm_dir.mkdir(parents=True, exist_ok=True)
    pycolmap.logging.minloglevel = 0 if options.verbose else pycolmap.logging.Level.FATAL.value
    database, images_dir = sfm_dir / "database.db", sfm_dir / "images"
    if database.exists() and not images_dir.is_dir():
        raise UserError(f"{sfm_dir} was made by an older hashkit; use --overwrite to reconstruct again")
    links = link_photos(photo_root, names, images_dir)
    seconds = dict.fromkeys(("extract", "select", "match", "map"), 0.0)
    clock = time.perf_counter
    if not _stage_done(sfm_dir, "extract"):
        started = clock()
        database.unlink(missing_ok=True)
        (sfm_dir / "match.progress").unlink(missing_ok=True)
        extract(database, images_dir, links, options)
        _mark_done(sfm_dir, "extract")
        seconds["extract"] = clock() - started
    if not _stage_done(sfm_dir, "match"):
        started = clock()
        pairs = _pairs_to_match(sfm_dir, links, select_pairs)
        seconds["select"], started = clock() - started, clock()
        match(database, sfm_dir, links, pairs, options)
        _mark_done(sfm_dir, "match")
        seconds["match"] = clock() - started
    models_dir = sfm_dir / f"models-{options.mapper}"
    settings = json.dumps({"min_model_size": options.min_model_size, "seed": options.seed}, sort_keys=True)
    if not _stage_done(sfm_dir, f"map-{options.mapper}", settings):
        started = clock()
        shutil.rmtree(models_dir, ignore_errors=True)
        models_dir.mkdir()
        map_models(database, images_dir, models_dir, len(names), options)
        _mark_done(sfm_dir, f"map-{options.mapper}", settings)
        seconds["map"] = clock() - started
    models = [pycolmap.Reconstruction(path) for path in sorted(models_dir.iterdir()) if path.is_dir()]
    return sfm_result(models, database, image_index, seconds)


def _pairs_to_match(sfm_dir: Path, links: list[str], select_pairs: Callable[[], np.ndarray]) -> np.ndarray:
    """The pairs to match: chosen once and kept, so that a resumed matching works on the same list."""
    listing = sfm_dir / "pairs-to-match.txt"
    if not listing.exists():
        pairs = select_pairs()
        with written_atomically(listing) as tmp:
            tmp.write_text("".join(f"{links[i]} {links[j]}\n" for i, j in pairs))
        return pairs
    rows = [line.split() for line in listing.read_text().splitlines() if line]
    return np.array([[image_index(a), image_index(b)] for a, b in rows], np.int64).reshape(-1, 2)


def read_only(database: Path) -> sqlite3.Connection:
    """A read-only connection to a COLMAP database, so that a finished one is left untouched."""
    return sqlite3.connect(f"{Path(database).resolve().as_uri()}?mode=ro", uri=True)


def database_images(db: sqlite3.Connection) -> list[tuple[int, str]]:
    """(image id, name) of every image in a COLMAP database."""
    return db.execute("SELECT image_id, name FROM images").fetchall()


def model_tracks(model: pycolmap.Reconstruction, number: PhotoNumber) -> SfmModel:
    """The registered photos of ``model`` and its 3D point tracks, as photo numbers (images that
    ``number`` gives none are left out)."""
    photo = {image_id: number(image.name) for image_id, image in model.images.items() if image.has_pose}
    photo = {image_id: value for image_id, value in photo.items() if value is not None}
    tracks = [np.array([photo[e.image_id] for e in point.track.elements if e.image_id in photo], dtype=np.int64)
              for point in model.points3D.values()]
    return SfmModel(np.array(sorted(photo.values()), dtype=np.int64), tracks)
