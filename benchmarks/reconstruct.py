"""Reconstruction as photo sets grow, and on real photos: exhaustive against retrieval matching,
incremental against global mapping, hashkit's overhead over bare pycolmap calls, and on real
photos the whole user path (reconstruct, train BCDH on the mined pairs, encode, query) against
ITQ, LSH and the frozen backbone's float features.

    python benchmarks/reconstruct.py --rendered 100 300 1000 --real SCENE_DIR [SCENE_DIR ...]

Rendered sets come from examples/render_scenes.py (320 x 240; 15 views per scene on a 50-degree
arc; a tenth of the photos are distractors of no scene; scenes beyond five share textures). Each
--real folder holds the photos of one real scene (docs/scaling.md names public sources); the
benchmark links them into one shuffled folder, the scene of each photo being the truth.
hashkit's overhead compares the best of --overhead-rounds runs of hashkit (exhaustive matching,
incremental mapping, in a fresh folder each time) with the best of as many runs of a bare
pycolmap script doing the same COLMAP calls, the two taking turns.
--partitioned COUNT reconstructs a rendered set whole and in --parts parts (both with
reconstruct's defaults but retrieval matching, or --partition-mapper's mapper; the parts in
parallel, the cores shared), and times mining the whole run's COLMAP workspace again through
--colmap (the import of an existing reconstruction); --partitioned-real FOLDER does the same on
a folder of photos/ and truth.csv.
Results: benchmarks/results/reconstruct.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
import torch
from common import cosine_ranking_scores, cpu_description

from hashkit.hashing.evaluation.query import query
from hashkit.hashing.files.images import find_images
from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.hashing.storage.encode import encode
from hashkit.hashing.training.train import TrainOptions, train
from hashkit.sfm_pairs.partition import PartitionOptions, reconstruct_partitioned
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, pairs_from_workspace, reconstruct

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VIEWS, SIZE, DISTRACTORS = 15, "320x240", 0.1
SEED = 0
NEIGHBORS = 20
MAPPERS = ("incremental", "global")
VARIANTS = tuple((matcher, mapper) for matcher in ("exhaustive", "retrieval") for mapper in MAPPERS)


def render(count: int, folder: Path) -> tuple[Path, dict[str, str]]:
    """A rendered set of ``count`` photos: scenes of VIEWS views and a tenth of distractors."""
    scenes = round(count * (1 - DISTRACTORS) / VIEWS)
    if not (folder / "truth.csv").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / "render_scenes.py"), str(folder), "--scenes",
                        str(scenes), "--views", str(VIEWS), "--distractors", str(count - scenes * VIEWS),
                        "--size", SIZE, "--seed", str(SEED)], check=True)
    return truth_of(folder)


def truth_of(folder: Path) -> tuple[Path, dict[str, str]]:
    """A set as examples/render_scenes.py and benchmarks/real.py assemble lay it out: photos/ and truth.csv."""
    with (folder / "truth.csv").open() as f:
        return folder / "photos", {str((folder / row["path"]).resolve()): row["label"] for row in csv.DictReader(f)}


def mix_real(scene_dirs: list[Path], folder: Path) -> tuple[Path, dict[str, str]]:
    """Links to every photo of the scene folders, in one folder in a seeded random order."""
    photos = [(path, scene.name) for scene in scene_dirs for path in find_images(scene)]
    order = np.random.default_rng(SEED).permutation(len(photos))
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "photos").mkdir(parents=True)
    truth = {}
    for position, index in enumerate(order):
        path, scene = photos[index]
        link = folder / "photos" / f"photo_{position:04d}{path.suffix.lower()}"
        link.symlink_to(path.resolve())
        truth[str(link.resolve())] = scene
    return folder / "photos", truth


def true_pairs(paths: list[Path], truth: dict[str, str]) -> set[tuple[int, int]]:
    scenes = [truth[str(p.resolve())] for p in paths]
    return {(i, j) for i in range(len(scenes)) for j in range(i + 1, len(scenes))
            if scenes[i] == scenes[j] and not scenes[i].startswith("distractor")}


def run_variant(photos: Path, work: Path, matcher: str, mapper: str, cache: Path, max_image_size: int) -> dict:
    started = time.perf_counter()
    summary = reconstruct(photos, work, ReconstructOptions(matcher=matcher, mapper=mapper, num_neighbors=NEIGHBORS,
                                                           feature_cache=cache, seed=SEED,
                                                           max_image_size=max_image_size))
    seconds = time.perf_counter() - started
    return {"matcher": matcher, "mapper": mapper, "wall_seconds": round(seconds, 2), "stages": summary.seconds,
            "pairs_matched": summary.pairs_matched, "verified_pairs": summary.verified_pairs,
            "registered": summary.registered, "models": len(summary.model_sizes), "groups": summary.groups,
            "positives": summary.positives}


def positives_of(folder: Path, photos: Path, mapper: str, max_image_size: int) -> tuple[set, set]:
    """The positives a matcher's folder gives with ``mapper`` (mined again from its finished
    stages, a matter of seconds), and those of them that join photos of one true scene."""
    reconstruct(photos, folder, ReconstructOptions(matcher=folder.name, mapper=mapper, num_neighbors=NEIGHBORS,
                                                   seed=SEED, max_image_size=max_image_size))
    return set(map(tuple, read_pairs(folder / "pairs.h5").positives.tolist()))


def add_quality(section: dict, photos: Path, truth: dict[str, str], work: Path) -> None:
    """Precision and recall of each row's positives against the true scenes, and how many of
    exhaustive matching's positives (all, and the correct ones) retrieval keeps."""
    paths = [photos / name for name in read_pairs(work / section["rows"][0]["matcher"] / "pairs.h5").images]
    wanted = true_pairs(paths, truth)
    found = {}
    for row in reversed(section["rows"]):  # each folder ends with its incremental mapper's pairs.h5
        found[row["matcher"], row["mapper"]] = positives_of(work / row["matcher"], photos, row["mapper"],
                                                            section["max_image_size"])
        correct = found[row["matcher"], row["mapper"]] & wanted
        row.update(precision=round(len(correct) / max(len(found[row["matcher"], row["mapper"]]), 1), 4),
                   recall=round(len(correct) / max(len(wanted), 1), 4))
    section["true_pairs"] = len(wanted)
    for row in section["rows"]:
        reference = found.get(("exhaustive", row["mapper"]))
        if row["matcher"] == "retrieval" and reference:
            mine = found["retrieval", row["mapper"]]
            row["kept_of_exhaustive_positives"] = round(len(mine & reference) / max(len(reference), 1), 4)
            row["kept_of_exhaustive_correct_positives"] = round(
                len(mine & reference & wanted) / max(len(reference & wanted), 1), 4)


def bare_pycolmap(photos: Path, work: Path, max_image_size: int) -> dict[str, float]:
    """The same COLMAP work as exhaustive + incremental, as a short script would call pycolmap:
    seconds of each call."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    names = [p.relative_to(photos).as_posix() for p in find_images(photos)]
    pycolmap.logging.minloglevel = pycolmap.logging.Level.FATAL.value
    database = work / "database.db"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = max_image_size
    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.multiple_models = True
    mapping.random_seed = SEED
    (work / "models").mkdir()
    seconds = {}
    for stage, call in (("extract", lambda: pycolmap.extract_features(database, photos, image_names=names,
                                                                       extraction_options=extraction)),
                        ("match", lambda: pycolmap.match_exhaustive(database)),
                        ("map", lambda: pycolmap.incremental_mapping(database, photos, work / "models",
                                                                     options=mapping))):
        started = time.perf_counter()
        call()
        seconds[stage] = round(time.perf_counter() - started, 3)
    return seconds


def overhead(photos: Path, work: Path, max_image_size: int, rounds: int) -> dict:
    """hashkit's exhaustive + incremental run (in a fresh folder) and the bare pycolmap script, in
    turns, ``rounds`` times each (a machine whose speed drifts slows both alike); hashkit's overhead
    from the best run of each, for the whole command, its COLMAP stages, and extraction with
    matching (incremental mapping's time varies from run to run with its registration order)."""
    hashkit, bare = [], []
    for _ in range(rounds):
        shutil.rmtree(work / "overhead", ignore_errors=True)
        hashkit.append(run_variant(photos, work / "overhead", "exhaustive", "incremental", work / "cache",
                                   max_image_size))
        bare.append(bare_pycolmap(photos, work / "bare", max_image_size))
    shutil.rmtree(work / "overhead", ignore_errors=True)

    def best(runs: list[dict], stages: tuple[str, ...]) -> float:
        return min(sum(run[stage] for stage in stages) for run in runs)

    stages = [row["stages"] for row in hashkit]
    best_bare = best(bare, ("extract", "match", "map"))
    return {"overhead_rounds": rounds, "bare_pycolmap_seconds": min(bare, key=lambda run: sum(run.values())),
            "hashkit_best_wall_seconds": min(row["wall_seconds"] for row in hashkit),
            "overhead_whole_command": round(min(row["wall_seconds"] for row in hashkit) / best_bare - 1, 4),
            "overhead_colmap_stages": round(best(stages, ("extract", "select", "match", "map")) / best_bare - 1, 4),
            "overhead_extract_and_match": round(best(stages, ("extract", "select", "match"))
                                                / best(bare, ("extract", "match")) - 1, 4)}


def scale_section(name: str, photos: Path, truth: dict[str, str], work: Path, exhaustive: bool,
                  max_image_size: int, mappers: tuple[str, ...] = MAPPERS, bare: bool = True,
                  rounds: int = 3) -> dict:
    """Every variant on one photo set (exhaustive matching only with ``exhaustive``, the mappers
    in ``mappers``), and with ``bare`` hashkit's overhead over bare pycolmap (``overhead``)."""
    cache = work / "cache"
    rows = []
    for matcher, mapper in VARIANTS:
        if (matcher == "exhaustive" and not exhaustive) or mapper not in mappers:
            continue
        folder = work / matcher  # both mappers of a matcher share its matches
        if mapper == mappers[0]:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{name}: {matcher} + {mapper}", flush=True)
        rows.append(run_variant(photos, folder, matcher, mapper, cache, max_image_size))
    section = {"name": name, "photos": len(truth), "max_image_size": max_image_size, "work": str(work),
               "photo_folder": str(photos), "rows": rows}
    if exhaustive and bare and "incremental" in mappers:
        print(f"{name}: hashkit against bare pycolmap, {rounds} rounds", flush=True)
        section.update(overhead(photos, work, max_image_size, rounds))
    add_quality(section, photos, truth, work)
    return section


def user_path(photos: Path, truth: dict[str, str], pairs_path: Path, work: Path) -> dict:
    """BCDH from the mined pairs against ITQ, LSH and float features, all evaluated on the true scenes."""
    paths = find_images(photos)
    work.mkdir(parents=True, exist_ok=True)
    labels_csv = work / "truth.csv"
    labels_csv.write_text("".join(f"{p},{truth[str(p.resolve())]}\n" for p in paths))
    cache = work / "cache"
    common = dict(backbone="mobilenet_v2", weights="imagenet", image_size=224, bits=64, seed=SEED,
                  feature_cache=cache, overwrite=True, freeze_backbone=True)
    runs = {"bcdh (3D pairs)": (dict(method="bcdh", epochs=30, batch_size=64, lr=1e-3), {"pairs_path": pairs_path}),
            "itq": (dict(method="itq"), {"images_dir": photos}),
            "lsh": (dict(method="lsh"), {"images_dir": photos})}
    rows = []
    for name, (options, source) in runs.items():
        model = work / f"{options['method']}.pt"
        train(model, TrainOptions(**common, **options), **source)
        store = work / f"{options['method']}.h5"
        encode(model, [photos], store, overwrite=True, feature_cache=cache, workers=0)
        summary = query(store, store, 10, work / f"{options['method']}-results.h5", ground_truth=str(labels_csv),
                        metrics_path=work / f"{options['method']}.json", overwrite=True)
        rows.append({"method": name, "bits": 64, "mAP": round(summary.metrics["tie_aware"]["mAP"], 4),
                     "evaluated_queries": summary.metrics["evaluated_queries"]})
    labels = [truth[str(p.resolve())] for p in paths]
    rows.append({"method": "MobileNetV2 float features (cosine)", "bits": 1280 * 32,
                 "mAP": round(cosine_ranking_scores(paths, labels, cache, 10)[0], 4), "evaluated_queries": None})
    return {"rows": rows}


def add_mapper_rows(report: dict, mapper: str, count: int, work_root: Path, save: Callable[[], None]) -> None:
    """Rows of ``mapper`` on each matcher folder of the saved rendered section of ``count`` photos,
    reusing its extraction and matches, the matcher with fewest verified pairs first, skipping rows
    the section already has; the section's quality columns are computed again and the report saved
    after each row."""
    section = next(s for s in report["sections"] if s["name"] == f"rendered, {count}")
    photos, truth = render(count, work_root / f"rendered-{count}-set")
    work = work_root / f"rendered-{count}"
    section["command"] += "; then " + " ".join(["python benchmarks/reconstruct.py", *sys.argv[1:]])
    verified = {row["matcher"]: row["verified_pairs"] for row in section["rows"]}
    done = {row["matcher"] for row in section["rows"] if row["mapper"] == mapper}
    for matcher in sorted(verified.keys() - done, key=verified.get):
        print(f"rendered, {count}: {matcher} + {mapper} on the saved matches", flush=True)
        row = run_variant(photos, work / matcher, matcher, mapper, work / "cache", section["max_image_size"])
        section["rows"] = [r for r in section["rows"] if (r["matcher"], r["mapper"]) != (matcher, mapper)] + [row]
        section["rows"].sort(key=lambda r: VARIANTS.index((r["matcher"], r["mapper"])))
        add_quality(section, photos, truth, work)
        save()


def partitioned_row(name: str, photos: Path, truth: dict[str, str], work: Path, parts: int, mapper: str,
                    repeats: int) -> dict:
    """One photo set reconstructed whole and in ``parts`` parts with ``mapper`` (reconstruct's
    other defaults, retrieval matching), ``repeats`` times in turns, and imported from the whole
    run's workspace. Each run starts from an empty folder and an empty retrieval feature cache.
    The row holds every run's figures and their medians: wall times, the partitioned positives
    against the true scenes and the whole run's correct positives, and the scenes the whole run
    keeps in one group that the parts split."""
    options = ReconstructOptions(matcher="retrieval", num_neighbors=NEIGHBORS, mapper=mapper, seed=SEED)
    runs = [partitioned_run(name, photos, truth, work, parts, options) for _ in range(repeats)]
    shutil.rmtree(work / "imported", ignore_errors=True)
    started = time.perf_counter()  # the last whole run's own workspace, its photos under COLMAP's names
    pairs_from_workspace(work / "whole" / "sfm" / "images", work / "imported", work / "whole" / "sfm", options)
    import_seconds = round(time.perf_counter() - started, 2)
    plan = json.loads((work / "partitioned" / "parts.json").read_text())
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {"set": name, "photos": len(truth), "parts": parts, "mapper": mapper,
            "max_image_size": options.max_image_size, "max_features": options.max_features,
            "import_seconds": import_seconds, "part_sizes": [len(part) for part in plan["parts"]],
            **medians, "runs": runs}


def slowest_part_seconds(folder: Path) -> float:
    """The longest of the parts' own times (the sum of each part's stages, from its summary.json):
    a cluster's wall time for the parts when each part has a machine of its own."""
    return round(max(sum(json.loads(summary.read_text())["seconds"].values())
                     for summary in folder.glob("part-*/summary.json")), 2)


def partitioned_run(name: str, photos: Path, truth: dict[str, str], work: Path, parts: int,
                    options: ReconstructOptions) -> dict:
    """One run of ``partitioned_row`` with ``options``: the set in parts, then whole (the parts
    first, so that a whole run too long to wait for still leaves the parts' time), each from empty
    folders and an empty feature cache of its own."""
    seconds = {}
    for kind in ("partitioned", "whole"):
        for folder in (work / kind, work / f"{kind}-cache"):
            shutil.rmtree(folder, ignore_errors=True)
        cached = replace(options, feature_cache=work / f"{kind}-cache")
        print(f"{name}: {kind}", flush=True)
        started = time.perf_counter()
        if kind == "whole":
            reconstruct(photos, work / kind, cached)
        else:
            reconstruct_partitioned(photos, work / kind, PartitionOptions(parts), cached)
        seconds[kind] = round(time.perf_counter() - started, 2)
        print(f"{name}: {kind} took {seconds[kind]} s", flush=True)
    found = {kind: read_pairs(work / kind / "pairs.h5") for kind in ("whole", "partitioned")}
    positives, scenes_split = {}, 0
    for kind, pairs in found.items():
        paths = [str(path.resolve()) for path in pairs.absolute_paths()]
        positives[kind] = {tuple(sorted((paths[i], paths[j]))) for i, j in pairs.positives.tolist()}
    wanted = {pair for pair in positives["whole"] | positives["partitioned"]
              if truth[pair[0]] == truth[pair[1]] and not truth[pair[0]].startswith("distractor")}
    every_true = true_pairs(find_images(photos), truth)
    group_of = {kind: {str(path.resolve()): group for path, group in zip(pairs.absolute_paths(), pairs.group.tolist())
                       if group >= 0} for kind, pairs in found.items()}
    for scene in {label for label in truth.values() if not label.startswith("distractor")}:
        members = [path for path, label in truth.items() if label == scene]
        whole = {group_of["whole"][path] for path in members if path in group_of["whole"]}
        parts_groups = {group_of["partitioned"][path] for path in members if path in group_of["partitioned"]}
        scenes_split += len(whole) == 1 and len(parts_groups) > 1
    correct = {kind: positives[kind] & wanted for kind in positives}
    return {"whole_seconds": seconds["whole"], "partitioned_seconds": seconds["partitioned"],
            "slowest_part_seconds": slowest_part_seconds(work / "partitioned"),
            "whole_positives": len(positives["whole"]), "partitioned_positives": len(positives["partitioned"]),
            "whole_precision": round(len(correct["whole"]) / max(len(positives["whole"]), 1), 4),
            "partitioned_precision": round(len(correct["partitioned"]) / max(len(positives["partitioned"]), 1), 4),
            "whole_recall": round(len(correct["whole"]) / max(len(every_true), 1), 4),
            "partitioned_recall": round(len(correct["partitioned"]) / max(len(every_true), 1), 4),
            "kept_of_whole_correct": round(len(correct["partitioned"] & correct["whole"])
                                           / max(len(correct["whole"]), 1), 4),
            "scenes_split": scenes_split}


def with_runs(row: dict, key: str) -> str:
    """A partitioned row's median of ``key``, followed by each run's value where it has several
    ('-' where the row lacks it: measured before the benchmark recorded it)."""
    if key not in row:
        return "-"
    runs = row.get("runs", [])
    return f"{row[key]:g}" + (f" ({', '.join(f'{run[key]:g}' for run in runs)})" if len(runs) > 1 else "")


def write_markdown(path: Path, report: dict) -> None:
    lines = ["# Reconstruction benchmark", "", f"Machine: {report['machine']}. Produced by "
             "`python benchmarks/reconstruct.py` (protocol in its docstring and in docs/scaling.md); "
             f"retrieval matches each photo with its {NEIGHBORS} nearest by ImageNet MobileNetV2 features (224 px).",
             "Times are wall seconds of one run each on this machine (hashkit's overhead over bare pycolmap: "
             "the best of as many runs of each as stated); the variants of a section come from one run, whose "
             "command is given under it.", ""]
    for section in sorted(report["sections"], key=lambda s: (not s["name"].startswith("real"), s["photos"])):
        lines += [f"## {section['name']} ({section['photos']} photos, SIFT on at most "
                  f"{section['max_image_size']} px)", "", f"`{section.get('command', '')}`", "",
                  "| matching | mapping | wall s | extract s | select s | match s | map s | pairs matched | verified "
                  "| registered | models | groups | positives | precision | recall (all true pairs) "
                  "| kept of exhaustive | kept of exhaustive's correct |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in section["rows"]:
            s = r["stages"]
            lines.append(f"| {r['matcher']} | {r['mapper']} | {r['wall_seconds']} | {s['extract']} | {s['select']} "
                         f"| {s['match']} | {s['map']} | {r['pairs_matched']} | {r['verified_pairs']} "
                         f"| {r['registered']} | {r['models']} | {r['groups']} | {r['positives']} | {r['precision']} "
                         f"| {r['recall']} | {r.get('kept_of_exhaustive_positives', '-')} "
                         f"| {r.get('kept_of_exhaustive_correct_positives', '-')} |")
        lines.append("")
        lines.append("Stage times are 0 where a stage reused the matcher's earlier run (the second mapper).")
        lines += section.get("notes", [])  # written by hand: what a run that was stopped did not measure
        if "bare_pycolmap_seconds" in section:
            bare = section["bare_pycolmap_seconds"]
            stages = "" if not isinstance(bare, dict) else \
                " (" + ", ".join(f"{stage} {value} s" for stage, value in bare.items()) + ")"
            total = round(sum(bare.values()), 2) if isinstance(bare, dict) else bare
            rounds = section.get("overhead_rounds")
            protocol = f"best of {rounds} runs of each, taking turns" if rounds else "one run of each"
            lines += [f"Bare pycolmap (extract_features, match_exhaustive, incremental_mapping in one script; "
                      f"{protocol}): {total} s{stages}; hashkit's COLMAP stages (exhaustive, incremental) take "
                      f"{section['overhead_colmap_stages']:+.1%} over it, the whole command "
                      f"{section['overhead_whole_command']:+.1%} (image check and pair mining included)"
                      + (f", extraction and matching alone {section['overhead_extract_and_match']:+.1%}"
                         if "overhead_extract_and_match" in section else "")
                      + ". Incremental mapping time varies from run to run (it depends on the order of "
                        "registration, and so on RANSAC's draws in verification)."]
        lines.append("")
    if report.get("partitioned"):
        lines += ["## Partitioned reconstruction and existing workspaces", "",
                  "Each set reconstructed whole and in `--parts` parts (`--matcher retrieval`, the mapping, SIFT size "
                  "and features of each row; the parts in parallel, the machine's cores shared among them), then the "
                  "whole run's COLMAP workspace mined again through `--colmap` (import). Slowest part: the longest "
                  "of the parts' own times (its stages, on its share of the cores), the parts' wall time on a cluster "
                  "with a machine per part. Positives counted as pairs of absolute paths; correct = the same true "
                  "scene. Scenes split: true scenes the whole run keeps in one group that the partitioned run leaves "
                  "in several. Targets: at least 95% of the whole run's correct positives in at most half its wall "
                  "time.", "",
                  "| set | photos | mapping | SIFT px / features | parts (photos each) | whole s | partitioned s "
                  "| slowest part s | import s | positives whole / parts | precision whole / parts "
                  "| recall whole / parts | kept of whole's correct | scenes split |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['set']} | {r['photos']} | {r['mapper']} | {r['max_image_size']} / {r['max_features']} "
                  f"| {r['parts']} ({', '.join(map(str, r['part_sizes']))}) "
                  f"| {with_runs(r, 'whole_seconds')} | {with_runs(r, 'partitioned_seconds')} "
                  f"| {with_runs(r, 'slowest_part_seconds')} | {r['import_seconds']} "
                  f"| {r['whole_positives']:g} / {r['partitioned_positives']:g} "
                  f"| {r['whole_precision']} / {r['partitioned_precision']} "
                  f"| {r['whole_recall']} / {r['partitioned_recall']} | {with_runs(r, 'kept_of_whole_correct')} "
                  f"| {with_runs(r, 'scenes_split')} |" for r in report["partitioned"]]
        notes = [f"- {r['set']}, {r['parts']} parts, {r['mapper']}: {r['note']}" for r in report["partitioned"]
                 if "note" in r]
        lines += [""] + notes if notes else []
        if any(len(r.get("runs", [])) > 1 for r in report["partitioned"]):
            lines += ["", "Where a row has several runs: the median, then each run in parentheses; the other columns "
                          "are medians."]
        lines.append("")
    if report.get("user_path"):
        lines += ["## The whole user path on the real photos", "",
                  "Reconstruct (exhaustive, incremental), then each method trained on those photos (BCDH on the "
                  "mined pairs; ITQ and LSH fitted on the photos' features; frozen ImageNet MobileNetV2, 224 px, "
                  "64 bits), all photos encoded, each photo queried against the others; relevant = same real scene. "
                  "Training saw these same photos but never their scenes (no held-out split: this is the user path "
                  "on one collection). Tie-aware mAP for codes.", "",
                  "| method | mAP |", "|---|---|"]
        lines += [f"| {r['method']} | {r['mAP']} |" for r in report["user_path"]["rows"]]
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendered", type=int, nargs="*", default=[100, 300, 1000])
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="one folder of photos per real scene")
    parser.add_argument("--exhaustive-up-to", type=int, default=1000,
                        help="skip exhaustive matching on larger rendered sets")
    parser.add_argument("--real-max-image-size", type=int, default=1600,
                        help="--max-image-size of the real photos' reconstructions (rendered sets are 320 px wide)")
    parser.add_argument("--mappers", nargs="+", choices=MAPPERS, default=list(MAPPERS),
                        help="mappers of the rendered sets")
    parser.add_argument("--bare-up-to", type=int, default=1000,
                        help="time bare pycolmap beside hashkit on rendered sets up to this size")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="hashkit (exhaustive + incremental) and bare pycolmap runs, in turns, for the overhead")
    parser.add_argument("--requality", action="store_true",
                        help="recompute the quality columns of reconstruct.json from the work folders (mining again, "
                             "seconds per variant); the timings are kept")
    parser.add_argument("--add-mapper", choices=MAPPERS,
                        help="run this mapper on the finished matches of the --rendered sets' saved sections and add "
                             "the rows they lack (wall time then counts mapping and mining only)")
    parser.add_argument("--partitioned", type=int, nargs="*", default=[],
                        help="rendered set sizes to reconstruct whole and partitioned (and to import)")
    parser.add_argument("--partitioned-real", type=Path, nargs="*", default=[],
                        help="folders of photos/ and truth.csv to reconstruct whole and partitioned")
    parser.add_argument("--parts", type=int, default=4, help="--partitioned: parts per set")
    parser.add_argument("--repeats", type=int, default=1, help="--partitioned: runs of each set (medians reported)")
    parser.add_argument("--partition-mapper", choices=MAPPERS, default=ReconstructOptions.mapper,
                        help="--partitioned: the mapper of the whole run and of the parts")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "reconstruct")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    saved = args.results / "reconstruct.json"
    report = json.loads(saved.read_text()) if saved.exists() else {"sections": []}  # other sections are kept
    report["machine"] = f"{cpu_description()}, pycolmap {pycolmap.__version__}, torch " \
                        f"{torch.__version__}, no GPU"
    args.results.mkdir(parents=True, exist_ok=True)

    def add(section: dict) -> None:
        section["command"] = " ".join(["python benchmarks/reconstruct.py", *sys.argv[1:]])
        report["sections"] = [s for s in report["sections"] if s["name"] != section["name"]] + [section]

    def save() -> None:  # after every section, so that a long run keeps what it measured
        saved.write_text(json.dumps(report, indent=2))
        write_markdown(args.results / "reconstruct.md", report)

    if args.requality:
        report = json.loads((args.results / "reconstruct.json").read_text())
        for section in report["sections"]:
            if section["name"].startswith("real"):
                photos, truth = mix_real([Path(p) for p in report["real_sources"]], args.work / "real-set")
                section.setdefault("max_image_size", args.real_max_image_size)
                add_quality(section, photos, truth, args.work / "real")
            else:
                count = section["photos"]
                photos, truth = render(count, args.work / f"rendered-{count}-set")
                add_quality(section, photos, truth, args.work / f"rendered-{count}")
        save()
        print((args.results / "reconstruct.md").read_text())
        return
    if args.add_mapper:
        for count in args.rendered:
            add_mapper_rows(report, args.add_mapper, count, args.work, save)
        print((args.results / "reconstruct.md").read_text())
        return
    if args.partitioned or args.partitioned_real:
        sets = [(f"rendered, {count}", *render(count, args.work / f"rendered-{count}-set"))
                for count in args.partitioned]
        sets += [(f"real, {folder.name}", *truth_of(folder)) for folder in args.partitioned_real]
        for name, photos, truth in sets:
            row = partitioned_row(name, photos, truth, args.work / f"partitioned-{name.replace(', ', '-')}",
                                  args.parts, args.partition_mapper, args.repeats)
            row["command"] = " ".join(["python benchmarks/reconstruct.py", *sys.argv[1:]])
            same = ("set", "parts", "mapper", "max_image_size", "max_features")
            report["partitioned"] = [r for r in report.get("partitioned", [])
                                     if any(r[key] != row[key] for key in same)] + [row]
            save()
        print((args.results / "reconstruct.md").read_text())
        return
    if args.real:
        photos, truth = mix_real(args.real, args.work / "real-set")
        add(scale_section(f"real photos of {len(args.real)} scenes", photos, truth, args.work / "real", True,
                          args.real_max_image_size, rounds=args.overhead_rounds))
        report["real_sources"] = [str(p) for p in args.real]
        save()
        report["user_path"] = user_path(photos, truth, args.work / "real" / "exhaustive" / "pairs.h5",
                                        args.work / "real" / "user")
        save()
    for count in args.rendered:
        photos, truth = render(count, args.work / f"rendered-{count}-set")
        add(scale_section(f"rendered, {count}", photos, truth, args.work / f"rendered-{count}",
                          count <= args.exhaustive_up_to, 1600, tuple(args.mappers), count <= args.bare_up_to,
                          args.overhead_rounds))
        save()
    print((args.results / "reconstruct.md").read_text())


if __name__ == "__main__":
    main()
