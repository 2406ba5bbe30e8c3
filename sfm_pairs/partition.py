"""Partitioned reconstruction: a collection too big for one mapping run, split into parts that
keep each scene together, each part reconstructed on its own (in parallel here, or as the tasks
of a Slurm job array), and their pairs merged into one ``pairs.h5``.

The parts are clusters (k-means) of the photos' retrieval descriptors, so that the views of one
scene fall in one part; each part then also takes the ``overlap`` nearest photos of each of its
photos that another part holds, so that a scene cut in two is joined again through the photos
both parts registered (``pairs_merge.merged_pairs``). The plan (``WORK/parts.json``) is made
once and reused by every run that names the same photos and settings, so the tasks of a job
array, which each run one part, all see the same parts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import faiss
import numpy as np

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import write_bytes
from hashkit.hashing.files.pairs_file import read_pairs, write_pairs
from hashkit.hashing.files.pairs_merge import merged_pairs
from hashkit.hashing.search.scan import cpu_cores

from .mining import cross_group_negatives
from .pair_selection import global_features, nearest_by_features
from .reconstruct import ReconstructOptions, ReconstructSummary, photo_names, reconstruct

PLAN = "parts.json"
PLAN_SCHEMA = "hashkit.parts"


@dataclass(frozen=True)
class PartitionOptions:
    parts: int  # how many parts
    overlap: int = 5  # each photo's nearest photos in other parts that its part takes too
    jobs: int = 0  # parts reconstructed at once on this machine (0: as many as the cores allow, at most parts)


def split_photos(features: np.ndarray, parts: int, overlap: int, seed: int) -> list[np.ndarray]:
    """The photo indices of each part: k-means clusters of the unit descriptors (``parts`` of them,
    or fewer where photos are few), each with the ``overlap`` nearest photos of its photos that
    other clusters hold; sorted, parts by size, largest first."""
    vectors = np.ascontiguousarray(features, np.float32).copy()
    faiss.normalize_L2(vectors)
    parts = max(1, min(parts, len(vectors)))
    kmeans = faiss.Kmeans(vectors.shape[1], parts, niter=25, nredo=8, seed=seed, spherical=True,
                          min_points_per_centroid=1)  # the best of 8 starts: one can leave a scene split
    kmeans.train(vectors)
    _, cluster = kmeans.index.search(vectors, 1)
    cluster = cluster[:, 0]
    neighbours = nearest_by_features(vectors, overlap)[:, 1:] if overlap else np.zeros((len(vectors), 0), np.int64)
    members = []
    for part in np.unique(cluster):
        own = np.flatnonzero(cluster == part)
        near = neighbours[own].reshape(-1)
        members.append(np.union1d(own, near[(near >= 0) & (cluster[np.maximum(near, 0)] != part)]))
    return sorted(members, key=lambda rows: (-len(rows), rows[0]))


def load_or_make_plan(work_dir: Path, names: list[str], make: Callable[[], list[np.ndarray]],
                      settings: dict) -> list[list[str]]:
    """The parts (photo names) in ``work_dir/parts.json``, made by ``make()`` when the file is
    missing; a plan made for other photos or settings is refused. Concurrent runs (a job array's
    tasks) wait for the one that makes it."""
    plan_path = Path(work_dir) / PLAN
    stamp = {"schema": PLAN_SCHEMA, "photos_sha256": hashlib.sha256("\n".join(names).encode(
        "utf-8", "surrogateescape")).hexdigest(), **settings}
    with exclusive_lock(plan_path, wait=True):
        if plan_path.exists():
            plan = json.loads(plan_path.read_text(encoding="utf-8", errors="surrogateescape"))
            if {key: plan.get(key) for key in stamp} != stamp:
                raise UserError(f"{plan_path} was made for other photos or settings (--parts, --part-overlap, "
                                "--seed); use --overwrite to plan and reconstruct again")
            return plan["parts"]
        parts = [[names[i] for i in rows] for rows in make()]
        write_bytes(plan_path, json.dumps({**stamp, "parts": parts}, indent=1).encode("utf-8", "surrogateescape"))
        return parts


def part_dir(work_dir: Path, part: int) -> Path:
    return Path(work_dir) / f"part-{part:03d}"


def reconstruct_partitioned(photos_dir: Path, work_dir: Path, partition: PartitionOptions,
                            options: ReconstructOptions = ReconstructOptions(),
                            only: int | None = None) -> ReconstructSummary:
    """Plan the parts of ``photos_dir`` (or load the plan) and reconstruct them into
    ``work_dir/part-NNN/``, ``partition.jobs`` at a time, then merge their pairs into
    ``work_dir/pairs.h5``. With ``only``, reconstruct that part alone (a job array's task) and
    return its summary; a later run without it finds the finished parts done and merges."""
    photos_dir, work_dir = Path(photos_dir).resolve(), Path(work_dir)
    if partition.parts < 1 or partition.overlap < 0:
        raise UserError("--parts must be at least 1 and --part-overlap at least 0")
    names = photo_names(photos_dir)
    if options.overwrite:
        (work_dir / PLAN).unlink(missing_ok=True)
    settings = {"part_count": partition.parts, "overlap": partition.overlap, "seed": options.seed}
    plan = load_or_make_plan(work_dir, names, lambda: split_photos(
        global_features([photos_dir / name for name in names], options.feature_cache), partition.parts,
        partition.overlap, options.seed), settings)
    if only is not None:
        if not 0 <= only < len(plan):
            raise UserError(f"--part {only}: the plan in {work_dir / PLAN} has parts 0 to {len(plan) - 1}")
        return reconstruct_part(photos_dir, part_dir(work_dir, only), options, plan[only])
    jobs = partition.jobs or max(1, min(len(plan), cpu_cores()))
    part_options = replace(options, colmap_threads=max(1, cpu_cores() // jobs))
    folders = [part_dir(work_dir, part) for part in range(len(plan))]
    if jobs == 1:
        summaries = [reconstruct_part(photos_dir, folder, part_options, photos)
                     for folder, photos in zip(folders, plan)]
    else:  # fresh processes: COLMAP and torch are not safe to fork
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            summaries = list(pool.map(reconstruct_part, [photos_dir] * len(plan), folders,
                                      [part_options] * len(plan), plan))
    return _merged(work_dir, names, summaries, options)


def reconstruct_part(photos_dir: Path, folder: Path, options: ReconstructOptions,
                     photos: list[str]) -> ReconstructSummary:
    """Reconstruct one part into ``folder``, or, when it is done (``folder/summary.json``, written
    last), read its summary, so that a merge after a job array redoes nothing."""
    done = folder / "summary.json"
    if done.exists() and not options.overwrite:
        return ReconstructSummary(**json.loads(done.read_text(encoding="utf-8", errors="surrogateescape")))
    summary = reconstruct(photos_dir, folder, options, photos)
    write_bytes(done, json.dumps(asdict(summary)).encode("utf-8", "surrogateescape"))
    return summary


def _merged(work_dir: Path, names: list[str], summaries: list[ReconstructSummary],
            options: ReconstructOptions) -> ReconstructSummary:
    """The parts' pairs as one ``work_dir/pairs.h5``: groups joined through shared photos,
    negatives drawn afresh across the merged groups; the summary of the whole."""
    parts = [read_pairs(summary.pairs_path) for summary in summaries]
    merged = merged_pairs(parts)
    merged.negatives = cross_group_negatives(merged.group, options.negatives_per_image, options.seed)
    merged.settings = {"partitioned": [part.settings for part in parts]}
    pairs_path = work_dir / "pairs.h5"
    with exclusive_lock(pairs_path):
        write_pairs(pairs_path, merged)
    from_models = int((merged.shared_points > 0).sum())
    return ReconstructSummary(
        pairs_path=str(pairs_path), images=len(names),
        unreadable=sorted({name for summary in summaries for name in summary.unreadable}),
        registered=int((merged.model_id >= 0).sum()), matcher=summaries[0].matcher,
        pairs_matched=sum(summary.pairs_matched for summary in summaries),
        verified_pairs=sum(summary.verified_pairs for summary in summaries),
        model_sizes=sorted((size for summary in summaries for size in summary.model_sizes), reverse=True),
        groups=len(np.unique(merged.group[merged.group >= 0])), positives=len(merged.positives),
        positives_from_models=from_models, positives_verified_only=len(merged.positives) - from_models,
        negatives=len(merged.negatives),
        seconds={stage: round(sum(summary.seconds.get(stage, 0) for summary in summaries), 3)
                 for stage in summaries[0].seconds},
        parts=[summary.images for summary in summaries])
