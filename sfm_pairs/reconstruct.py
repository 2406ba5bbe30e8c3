"""``hashkit reconstruct``: a photo folder to 3D models to ``pairs.h5``, or, from an existing
COLMAP workspace (``--colmap``), its models to ``pairs.h5``."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.images import IMAGE_EXTENSIONS, find_images, read_rgb
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import file_digest, output_folder
from hashkit.hashing.files.pairs_file import Pairs, write_pairs
from hashkit.hashing.files.pairs_merge import linked_groups
from hashkit.hashing.progress import progress

from .colmap import ColmapOptions, SfmResult, run_colmap, sfm_result
from .mining import (
    covisible_pairs,
    cross_group_negatives,
    union_of_pairs,
    values_of_pairs,
    verified_pairs,
)
from .pair_selection import choose_matcher, exhaustive_pairs, retrieval_pairs, sequential_pairs
from .workspace import read_workspace

POSITIVES = ("auto", "models", "verified", "both")


@dataclass(frozen=True)
class ReconstructOptions:
    matcher: str = "auto"  # auto: exhaustive up to pair_selection.EXHAUSTIVE_UP_TO photos, retrieval above
    num_neighbors: int = 20  # retrieval: pairs of each photo with its nearest photos
    retrieval_model: Path | None = None  # retrieval by a trained hashkit model's codes (default: ImageNet features)
    feature_cache: Path | None = None  # retrieval's backbone feature cache (None: none)
    mapper: str = "global"  # GLOMAP: registered more of the real photos than incremental mapping did
    positives: str = "auto"  # auto: models, plus verified pairs except those joining two models
    min_shared_points: int = 15
    min_inliers: int = 30  # verified positives: inlier matches of the two-view geometry
    negatives_per_image: int = 10
    max_image_size: int = 800  # SIFT's longest side (benchmarks/results/reconstruct_defaults.md)
    max_features: int = 4096  # SIFT features kept per photo
    min_model_size: int = 3
    seed: int = 0
    overwrite: bool = False
    verbose: bool = False  # COLMAP's own log on stderr
    colmap_threads: int = -1  # COLMAP's threads (-1: every core); partitioned runs share the cores among parts


@dataclass
class ReconstructSummary:
    pairs_path: str
    images: int
    unreadable: list[str]
    registered: int
    matcher: str
    pairs_matched: int
    verified_pairs: int
    model_sizes: list[int] = field(default_factory=list)
    groups: int = 0
    positives: int = 0
    positives_from_models: int = 0
    positives_verified_only: int = 0
    negatives: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: check, extract, select, match, map, mine
    missing: list[str] = field(default_factory=list)  # --colmap: photos the workspace names that PHOTOS lacks
    parts: list[int] = field(default_factory=list)  # --parts: the photos of each part


def reconstruct(photos_dir: Path, work_dir: Path, options: ReconstructOptions = ReconstructOptions(),
                names: list[str] | None = None) -> ReconstructSummary:
    """Reconstruct every scene in ``photos_dir`` (or the photos ``names`` of it, relative paths)
    and mine pairs into ``work_dir/pairs.h5``.

    Rerunning resumes: COLMAP stages already finished in ``work_dir/sfm`` are not redone.
    """
    if options.positives not in POSITIVES:
        raise UserError(f"unknown --positives {options.positives!r}; choose one of {', '.join(POSITIVES)}")
    photos_dir, work_dir = Path(photos_dir).resolve(), Path(work_dir)
    found = _photos(photos_dir) if names is None else [photos_dir / name for name in names]
    matcher = choose_matcher(options.matcher, len(found))
    output_folder(work_dir)
    with exclusive_lock(work_dir / "reconstruct"):
        sfm_dir = work_dir / "sfm"
        if options.overwrite:
            shutil.rmtree(sfm_dir, ignore_errors=True)
        started = time.perf_counter()
        readable, unreadable = _split_readable(found, photos_dir)
        checked = time.perf_counter() - started
        _pin(sfm_dir, "images.txt", "".join(f"{name}\n" for name in readable), "a different set of photos")
        _pin(sfm_dir, "matching.json", json.dumps(_matching_settings(matcher, options), sort_keys=True),
             "other matching settings (--matcher, --num-neighbors, --model, --max-image-size, --max-features)")
        sfm = run_colmap(photos_dir, readable, sfm_dir, lambda: _select_pairs(matcher, photos_dir, readable, options),
                         ColmapOptions(mapper=options.mapper, max_image_size=options.max_image_size,
                                       max_features=options.max_features,
                                       min_model_size=options.min_model_size, num_threads=options.colmap_threads,
                                       seed=options.seed, verbose=options.verbose))
        summary = _mine_and_write(work_dir, photos_dir, readable, unreadable, sfm, matcher, options, {})
    summary.pairs_matched = _pairs_matched(sfm_dir)
    summary.seconds = {"check": round(checked, 3), **sfm.seconds, "mine": summary.seconds["mine"]}
    return summary


def pairs_from_workspace(photos_dir: Path, work_dir: Path, workspace_path: Path,
                         options: ReconstructOptions = ReconstructOptions()) -> ReconstructSummary:
    """Mine ``work_dir/pairs.h5`` from an existing COLMAP workspace (``workspace.read_workspace``)
    whose image names are relative to ``photos_dir``, as ``reconstruct`` mines its own models: the
    same positives, groups and negatives. Models with fewer than ``options.min_model_size`` of the
    photos are left out; photos the workspace names but ``photos_dir`` lacks are reported."""
    if options.positives not in POSITIVES:
        raise UserError(f"unknown --positives {options.positives!r}; choose one of {', '.join(POSITIVES)}")
    photos_dir, work_dir = Path(photos_dir).resolve(), Path(work_dir)
    workspace = read_workspace(workspace_path)
    named = workspace.image_names()
    on_disk = {path.relative_to(photos_dir).as_posix(): path for path in _photos(photos_dir)}
    present = [path for name, path in on_disk.items() if name in named]
    if not present:
        raise UserError(f"none of the {len(named)} images that {workspace_path} names is in {photos_dir} "
                        "(its image names are relative to the folder of photos COLMAP read)")
    output_folder(work_dir)
    with exclusive_lock(work_dir / "reconstruct"):
        started = time.perf_counter()
        readable, unreadable = _split_readable(present, photos_dir)
        checked = time.perf_counter() - started
        number = {name: i for i, name in enumerate(readable)}.get
        sfm = sfm_result(workspace.models, workspace.database, number, {})
        sfm.models = [model for model in sfm.models if len(model.registered) >= options.min_model_size]
        summary = _mine_and_write(work_dir, photos_dir, readable, unreadable, sfm, "imported", options,
                                  {"colmap_workspace": str(Path(workspace_path).resolve())})
    summary.missing = sorted(named - on_disk.keys())
    summary.seconds = {"check": round(checked, 3), "mine": summary.seconds["mine"]}
    return summary


def photo_names(photos_dir: Path) -> list[str]:
    """The images under ``photos_dir``, as relative names."""
    return [path.relative_to(photos_dir).as_posix() for path in _photos(photos_dir)]


def _photos(photos_dir: Path) -> list[Path]:
    found = find_images(photos_dir)
    if not found:
        raise UserError(f"no images in {photos_dir} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return found


def _mine_and_write(work_dir: Path, photos_dir: Path, readable: list[str], unreadable: list[str], sfm: SfmResult,
                    matcher: str, options: ReconstructOptions, settings: dict) -> ReconstructSummary:
    """Mine the pairs of ``sfm`` into ``work_dir/pairs.h5``; the summary of what was found."""
    started = time.perf_counter()
    pairs = _mine(photos_dir, readable, unreadable, sfm, matcher, options)
    pairs.settings.update(settings)
    pairs_path = work_dir / "pairs.h5"
    write_pairs(pairs_path, pairs)
    from_models = int((pairs.shared_points > 0).sum())
    return ReconstructSummary(
        pairs_path=str(pairs_path), images=len(readable) + len(unreadable), unreadable=unreadable,
        registered=int((pairs.model_id >= 0).sum()), matcher=matcher, pairs_matched=0,
        verified_pairs=len(sfm.verified), model_sizes=[len(model.registered) for model in sfm.models],
        groups=len(np.unique(pairs.group[pairs.group >= 0])), positives=len(pairs.positives),
        positives_from_models=from_models, positives_verified_only=len(pairs.positives) - from_models,
        negatives=len(pairs.negatives), seconds={"mine": round(time.perf_counter() - started, 3)})


def _matching_settings(matcher: str, options: ReconstructOptions) -> dict:
    settings = {"matcher": matcher, "max_image_size": options.max_image_size, "max_features": options.max_features}
    if matcher == "retrieval":
        settings.update(num_neighbors=options.num_neighbors, model=None if options.retrieval_model is None
                        else file_digest(options.retrieval_model))
    return settings


def _select_pairs(matcher: str, photos_dir: Path, names: list[str], options: ReconstructOptions) -> np.ndarray:
    if matcher == "exhaustive":
        return exhaustive_pairs(len(names))
    if matcher == "sequential":
        return sequential_pairs(len(names))
    return retrieval_pairs([photos_dir / name for name in names], options.num_neighbors, options.retrieval_model,
                           options.feature_cache)


def _pairs_matched(sfm_dir: Path) -> int:
    done = sfm_dir / "match.progress"
    return int(done.read_text()) if done.exists() else 0


def _split_readable(paths: list[Path], root: Path) -> tuple[list[str], list[str]]:
    """Relative names of the images that decode, and of those that do not; an error if none does."""
    readable, unreadable = [], []
    for path in progress(paths, desc="checking images", unit="image"):
        name = path.relative_to(root).as_posix()
        (readable if read_rgb(path) is not None else unreadable).append(name)
    if not readable:
        raise UserError(f"none of the {len(paths)} images in {root} could be decoded")
    return readable, unreadable


def _pin(sfm_dir: Path, filename: str, text: str, what: str) -> None:
    """Record ``text`` in a new SfM folder; refuse to resume one whose record differs."""
    record = sfm_dir / filename
    if record.exists():  # names kept as their bytes (surrogateescape): a photo's name need not be UTF-8
        if record.read_text(encoding="utf-8", errors="surrogateescape") != text:
            raise UserError(f"{sfm_dir} was built from {what}; use --overwrite to reconstruct again")
        return
    sfm_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(text, encoding="utf-8", errors="surrogateescape")


def _mine(photos_dir: Path, names: list[str], unreadable: list[str], sfm: SfmResult, matcher: str,
          options: ReconstructOptions) -> Pairs:
    """Positives from the models and/or verified geometries, per ``options.positives``; groups of
    images linked by positives or by a model; negatives across groups."""
    n = len(names)
    model_id = np.full(n, -1, np.int32)
    from_models, shared = [np.zeros((0, 2), np.int32)], [np.zeros(0, np.int32)]
    for m, model in enumerate(sfm.models):
        model_id[model.registered] = m
        pairs, counts = covisible_pairs(model.tracks, options.min_shared_points)
        from_models.append(pairs)
        shared.append(counts)
    model_pairs, shared_points = np.concatenate(from_models), np.concatenate(shared)
    all_verified, all_inliers = verified_pairs(sfm.verified, sfm.inliers, 1)
    keep = all_inliers >= options.min_inliers
    if options.positives == "auto":  # no verified pair between two models that COLMAP kept apart
        first, second = model_id[all_verified[:, 0]], model_id[all_verified[:, 1]]
        keep &= (first < 0) | (second < 0) | (first == second)
    if options.positives == "models":
        keep[:] = False
    if options.positives == "verified":
        model_pairs = model_pairs[:0]
    positives = union_of_pairs(model_pairs, all_verified[keep])
    # Every photo of a model belongs to its group, even one with no positive of its own.
    membership = [np.stack([np.full(len(rows), rows[0]), rows], 1) for m in range(len(sfm.models))
                  if options.positives != "verified" and len(rows := np.flatnonzero(model_id == m))]
    group = linked_groups(n, np.concatenate([positives.astype(np.int64), *membership]))
    if len(positives) == 0:
        raise UserError(f"no positive pair among {n} images (--positives {options.positives}): COLMAP built "
                        f"{len(sfm.models)} 3D models and verified {int((all_inliers >= options.min_inliers).sum())} "
                        f"pairs with at least {options.min_inliers} inlier matches; the photos need overlapping "
                        "views of the same scenes")
    settings = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()
                if key not in ("overwrite", "verbose", "feature_cache", "colmap_threads")}
    settings.update(matcher=matcher, pycolmap_version=pycolmap.__version__)
    return Pairs(
        photo_root=photos_dir, images=names, model_id=model_id, positives=positives,
        shared_points=values_of_pairs(positives, model_pairs, shared_points),
        inlier_matches=values_of_pairs(positives, all_verified, all_inliers),
        negatives=cross_group_negatives(group, options.negatives_per_image, options.seed),
        group=group, unreadable=unreadable, settings=settings)
