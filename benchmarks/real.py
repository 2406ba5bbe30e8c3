"""Retrieval on real photographs: the headline quality benchmark.

    python benchmarks/real.py assemble --sources DIR --out PHOTOS   # the photo set, from public repositories
    python benchmarks/real.py run --photos PHOTOS                   # or: make bench-real SOURCES=DIR

``assemble`` takes the photos that benchmarks/real_photos.tsv names (repository, commit, folder,
files; docs/real_photos.md says why each) from local clones of those repositories under DIR
(``DIR/owner/name`` or ``DIR/owner+name``, a clone or a bare repository) and writes them to
PHOTOS/photos in a seeded random order under neutral names, with PHOTOS/truth.csv (each photo's
real scene; distractor photos belong to no scene).

``run`` measures three protocols (``--protocols``; a run keeps the other protocols' sections of
the last results), every method in the same run on the same photos:

- held-out scenes: the scenes are split in two halves (seeded, balanced by photo count; the
  distractors too); ``hashkit reconstruct`` (its defaults) and every method's training see only
  the first half; the second half is encoded and queried, every photo against all others;
- the user's path: reconstruct, train, encode and query the whole collection;
- validation: the held-out protocol's training scenes in two folds, each method trained on one
  fold (its photos and the held-out reconstruction's pairs among them) and scored on the other.
  Settings are chosen here, never on the held-out test scenes.

Methods: BCDH from the mined pairs with ``hashkit train``'s defaults (what the README shows), and
started from the whitening learned from the pairs instead of PCA (``--param init=whitened-itq``);
the label-free peers DSAH, GreedyHash and Bi-half (frozen backbone, hidden layer of 1024, 20
epochs, batch 128, Adam 1e-3, as in benchmarks/quality.py, GreedyHash's hidden-layer row with
dropout 0.5 as there; GreedyHash and Bi-half also as ``-linear``, their authors' layout: the hash
layer alone on the features) trained on the same photos; ITQ and LSH fitted on them; and the float
features of the same backbone ranked by cosine. Backbone: ImageNet MobileNetV2 at 224 px for
everything. Relevant = same real scene; a query's own photo is left out; photos with no other
photo of their scene (distractors) are in the database but are not evaluated as queries. Headline:
tie-aware mAP, mAP@10, P@10 (hashkit query's conventions), and collapse: distinct codes and the
pairs of photos of different scenes (distractors included) on one code. Reconstruction runs once
per protocol; training, encoding and querying once per seed; rows are mean and standard deviation
over the seeds. Writes benchmarks/results/real.md and real.json; work files go to
benchmarks/data/real.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import COMMIT, cosine_ranking_scores, cpu_description

from hashkit.hashing.evaluation.query import query
from hashkit.hashing.files.images import find_images
from hashkit.hashing.files.pairs_file import read_pairs, write_pairs
from hashkit.hashing.storage.encode import encode
from hashkit.hashing.storage.store import read_store
from hashkit.hashing.training.collapse import code_collapse
from hashkit.hashing.training.train import TrainOptions, train
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, reconstruct

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "benchmarks" / "real_photos.tsv"
RESULTS = REPO / "benchmarks" / "results"
SPLIT_SEED = 0
K = 10
IMAGE_SIZE = 224
PEERS = dict(freeze_backbone=True, hidden=1024, epochs=20, batch_size=128, lr=1e-3)
METHODS = {  # name: (train options, trained from the pairs file)
    "bcdh": ({"method": "bcdh"}, True),  # hashkit train's defaults
    "bcdh-whitened": ({"method": "bcdh", "params": {"init": "whitened-itq"}}, True),  # started from learned whitening
    "dsah": ({"method": "dsah", **PEERS}, False),
    "greedyhash": ({"method": "greedyhash", **PEERS, "params": {"dropout": 0.5}}, False),  # as in quality.py
    "greedyhash-linear": ({"method": "greedyhash", **PEERS, "hidden": 0}, False),  # the authors' layout
    "bihalf": ({"method": "bihalf", **PEERS}, False),
    "bihalf-linear": ({"method": "bihalf", **PEERS, "hidden": 0}, False),  # the authors' layout
    "itq": ({"method": "itq"}, False),
    "lsh": ({"method": "lsh"}, False),
}
DISTRACTOR = "distractor"  # manifest scenes named so are single photos of no scene
HELD_OUT, USER = "held-out scenes", "the user's path"
VALIDATION = "validation (two folds of the held-out training scenes)"
SECTIONS = (HELD_OUT, VALIDATION, USER)


# ---- assembling the photo set ---------------------------------------------------------------

def read_manifest(path: Path) -> list[dict]:
    with path.open() as f:
        return [row for row in csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")]


def repository_dir(sources: Path, repo: str) -> Path:
    owner, name = repo.split("/")
    for candidate in (sources / owner / name, sources / f"{owner}+{name}" / "repo", sources / f"{owner}+{name}"):
        if candidate.exists():
            return candidate
    raise SystemExit(f"error: no clone of {repo} under {sources} (git clone https://github.com/{repo} "
                     f"{sources / owner / name})")


def git(repo_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo_dir), *args], check=True, capture_output=True).stdout


def manifest_files(repo_dir: Path, row: dict) -> list[str]:
    """Paths in the repository of a manifest row's photos, at its commit."""
    folder = row["folder"].strip("/")
    if row["files"] == "*":
        listed = git(repo_dir, "ls-tree", "--name-only", f"{row['commit']}:{folder}").decode().split("\n")
        names = [name for name in sorted(listed) if name.lower().endswith((".jpg", ".jpeg", ".png"))]
    else:
        names = row["files"].split(";")
    return [name if folder == "." else f"{folder}/{name}" for name in names]


def assemble(sources: Path, out: Path, manifest: Path = MANIFEST) -> None:
    """PHOTOS/photos/photo_NNNN.ext in a seeded random order and PHOTOS/truth.csv (path,scene)."""
    photos = []
    distractors = 0
    for row in read_manifest(manifest):
        repo_dir = repository_dir(sources, row["repo"])
        for path in manifest_files(repo_dir, row):
            scene = row["scene"]
            if scene == DISTRACTOR:  # each a scene of its own, so that no other photo is relevant to it
                scene, distractors = f"{DISTRACTOR}-{distractors}", distractors + 1
            photos.append((repo_dir, row["commit"], path, scene))
    shutil.rmtree(out / "photos", ignore_errors=True)
    (out / "photos").mkdir(parents=True)
    rows = []
    for position, index in enumerate(np.random.default_rng(SPLIT_SEED).permutation(len(photos))):
        repo_dir, commit, path, scene = photos[index]
        name = f"photos/photo_{position:04d}{Path(path).suffix.lower()}"
        (out / name).write_bytes(git(repo_dir, "show", f"{commit}:{path}"))
        rows.append((name, scene))
    with (out / "truth.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    scenes = {scene for _, scene in rows if not scene.startswith(DISTRACTOR)}
    print(f"{len(rows)} photos of {len(scenes)} scenes and {len(rows) - sum(1 for _, s in rows if s in scenes)} "
          f"distractors -> {out}")


# ---- the protocols --------------------------------------------------------------------------

def read_truth(photos: Path) -> dict[str, str]:
    with (photos / "truth.csv").open() as f:
        return {row["path"]: row["label"] for row in csv.DictReader(f)}


def split_scenes(truth: dict[str, str]) -> tuple[set[str], set[str]]:
    """Two halves of the scenes, balanced by size: the scenes sorted by photo count, each
    consecutive two split at random; distractors likewise, one by one."""
    counts: dict[str, int] = {}
    for scene in truth.values():
        counts[scene] = counts.get(scene, 0) + 1
    rng = np.random.default_rng(SPLIT_SEED)
    halves: tuple[set[str], set[str]] = (set(), set())
    for distractors in (False, True):
        names = sorted((s for s in counts if s.startswith(DISTRACTOR) == distractors), key=lambda s: (counts[s], s))
        for start in range(0, len(names), 2):
            pair = names[start:start + 2]
            for half, scene in zip(rng.permutation(2), pair):
                halves[half].add(scene)
    return halves


def linked_folder(photos: Path, names: list[str], folder: Path) -> Path:
    """A folder of links to ``names`` (paths relative to ``photos``), made anew."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        (folder / Path(name).name).symlink_to((photos / name).resolve())
    return folder


def reconstruction_record(pairs_path: Path, truth_of: dict[str, str], seconds: float | None) -> dict:
    pairs = read_pairs(pairs_path)
    scenes = np.array([truth_of[Path(name).name] for name in pairs.images])
    distractor = np.char.startswith(scenes.astype(str), DISTRACTOR)
    same = scenes[pairs.positives[:, 0]] == scenes[pairs.positives[:, 1]]
    wrong_negatives = scenes[pairs.negatives[:, 0]] == scenes[pairs.negatives[:, 1]]
    true_pairs = sum(n * (n - 1) // 2 for n in np.unique(scenes[~distractor], return_counts=True)[1])
    return {"photos": len(scenes), "registered": int((pairs.model_id >= 0).sum()),
            "models": int(len(np.unique(pairs.model_id[pairs.model_id >= 0]))), "positives": len(pairs.positives),
            "wrong_positives": int((~same).sum()), "positive_recall": round(int(same.sum()) / max(true_pairs, 1), 4),
            "negatives": len(pairs.negatives), "same_scene_negatives": int(wrong_negatives.sum()),
            "seconds": None if seconds is None else round(seconds, 1)}


def scene_groups(paths: list[str], truth_of: dict[str, str]) -> np.ndarray:
    names = sorted(set(truth_of.values()))
    return np.array([names.index(truth_of[Path(p).name]) for p in paths])


def code_record(store: Path, truth_of: dict[str, str]) -> dict:
    contents = read_store(store)
    collapse = code_collapse(contents.codes, scene_groups(contents.paths, truth_of))
    return {"distinct_codes": collapse.distinct_codes, "cross_scene_pairs_on_one_code": collapse.cross_group_pairs}


def float_record(paths: list[Path], truth_of: dict[str, str], cache: Path) -> dict:
    """The backbone's float features ranked by cosine (no ties), scored like hashkit query."""
    started = time.perf_counter()
    scores = cosine_ranking_scores(paths, [truth_of[path.name] for path in paths], cache, K)
    return {"mAP": round(scores[0], 4), f"mAP@{K}": round(scores[1], 4), f"P@{K}": round(scores[2], 4),
            "distinct_codes": None, "cross_scene_pairs_on_one_code": None, "train_seconds": 0.0,
            "query_seconds": round(time.perf_counter() - started, 2)}


def method_record(name: str, bits: int, seed: int, source: dict, test_dir: Path, truth_csv: Path,
                  truth_of: dict[str, str], work: Path, cache: Path) -> dict:
    options, _ = METHODS[name]
    model = work / f"{name}-{bits}-{seed}.pt"
    started = time.perf_counter()
    summary = train(model, TrainOptions(**{**options, "bits": bits, "seed": seed, "feature_cache": cache,
                                           "image_size": IMAGE_SIZE, "overwrite": True}), **source)
    trained = time.perf_counter()
    store = work / f"{name}-{bits}-{seed}.h5"
    encode(model, [test_dir], store, overwrite=True, feature_cache=cache)
    result = query(store, store, K, work / f"{name}-{bits}-{seed}-results.h5", ground_truth=str(truth_csv),
                   metrics_path=work / f"{name}-{bits}-{seed}-metrics.json", overwrite=True)
    tie_aware = result.metrics["tie_aware"]
    return {"mAP": round(tie_aware["mAP"], 4), f"mAP@{K}": round(tie_aware[f"mAP@{K}"], 4),
            f"P@{K}": round(tie_aware[f"precision@{K}"], 4), **code_record(store, truth_of),
            "training_distinct_codes": summary.collapse.distinct_codes, "warnings": summary.warnings,
            "train_seconds": round(trained - started, 2), "query_seconds": round(time.perf_counter() - trained, 2)}


def run_protocol(name: str, photos: Path, truth: dict[str, str], train_names: list[str], test_names: list[str],
                 work: Path, seeds: list[int], bits_list: list[int], methods: list[str], max_image_size: int,
                 pairs_path: Path | None = None) -> dict:
    """Reconstruct the training photos (or use ``pairs_path``), then train, encode and query every
    method for every seed and bit length; the section's record."""
    truth_of = {Path(p).name: scene for p, scene in truth.items()}
    train_dir = linked_folder(photos, train_names, work / "train-photos")
    test_dir = linked_folder(photos, test_names, work / "test-photos")
    truth_csv = work / "truth.csv"
    truth_csv.write_text("path,label\n" + "".join(f"test-photos/{Path(n).name},{truth[n]}\n" for n in test_names))
    cache = work / "feature-cache"
    seconds_file = work / "reconstruct-seconds.json"  # a rerun resumes the finished reconstruction
    if pairs_path is None:
        pairs_path = work / "sfm" / "pairs.h5"
        if pairs_path.exists() and sorted(Path(n).name for n in read_pairs(pairs_path).images) != \
                sorted(Path(n).name for n in train_names):  # another split's reconstruction: made anew
            shutil.rmtree(pairs_path.parent)
        if not pairs_path.exists():
            started = time.perf_counter()
            reconstruct(train_dir, pairs_path.parent, ReconstructOptions(feature_cache=cache,
                                                                         max_image_size=max_image_size))
            seconds_file.write_text(json.dumps(time.perf_counter() - started))
    else:
        seconds_file.write_text(json.dumps(None))
    section = {"name": name, "train_photos": len(train_names), "test_photos": len(test_names),
               "train_scenes": len({truth[n] for n in train_names if not truth[n].startswith(DISTRACTOR)}),
               "test_scenes": len({truth[n] for n in test_names if not truth[n].startswith(DISTRACTOR)}),
               "reconstruction": reconstruction_record(pairs_path, truth_of, json.loads(seconds_file.read_text())),
               "runs": []}
    test_paths = find_images(test_dir)
    section["runs"].append({"method": "float features (cosine)", "bits": 1280 * 32, "seed": None,
                            **float_record(test_paths, truth_of, cache)})
    for seed in seeds:
        for bits in bits_list:
            for method in methods:
                source = {"pairs_path": pairs_path} if METHODS[method][1] else {"images_dir": train_dir}
                row = method_record(method, bits, seed, source, test_dir, truth_csv, truth_of, work / "models", cache)
                section["runs"].append({"method": method, "bits": bits, "seed": seed, **row})
                print(f"{name} {method} {bits} seed {seed}: mAP {row['mAP']}, distinct {row['distinct_codes']}, "
                      f"cross-scene pairs {row['cross_scene_pairs_on_one_code']}", flush=True)
    return section


def run_validation(photos: Path, truth: dict[str, str], train_names: list[str], held_out_pairs: Path, work: Path,
                   seeds: list[int], bits_list: list[int], methods: list[str]) -> dict:
    """Two scene-disjoint folds of the held-out protocol's training photos (``split_scenes``):
    each method trains on one fold, from its photos and the held-out reconstruction's pairs among
    them, and is scored on the other; runs of both folds together. Settings are chosen here, never
    on the held-out test scenes."""
    if not held_out_pairs.exists():
        raise SystemExit(f"error: the validation folds need the held-out reconstruction ({held_out_pairs}): "
                         "run the held-out protocol first")
    pairs = read_pairs(held_out_pairs)
    scene_of_image = np.array([truth[f"photos/{Path(name).name}"] for name in pairs.images])
    folds = split_scenes({name: truth[name] for name in train_names})
    section: dict = {"name": VALIDATION, "runs": []}
    for fold, (mine, other) in enumerate((folds, folds[::-1])):
        fold_pairs = work / str(fold) / "pairs.h5"
        fold_pairs.parent.mkdir(parents=True, exist_ok=True)
        write_pairs(fold_pairs, pairs.subset(np.isin(scene_of_image, list(mine))))
        record = run_protocol(f"validation fold {fold}", photos, truth, [n for n in train_names if truth[n] in mine],
                              [n for n in train_names if truth[n] in other], work / str(fold), seeds, bits_list,
                              methods, 0, fold_pairs)
        section["runs"] += record["runs"]
        section[f"fold {fold}"] = {key: record[key] for key in record if key != "runs"}
    return section


# ---- the results ----------------------------------------------------------------------------

def summarised(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over the seeds of each (method, bits)."""
    keys = ("mAP", f"mAP@{K}", f"P@{K}", "distinct_codes", "cross_scene_pairs_on_one_code", "train_seconds",
            "query_seconds")
    rows = []
    for method, bits in dict.fromkeys((r["method"], r["bits"]) for r in runs):
        mine = [r for r in runs if r["method"] == method and r["bits"] == bits]
        row = {"method": method, "bits": bits, "seeds": len(mine)}
        for key in keys:
            values = [r[key] for r in mine if r[key] is not None]
            row[key] = (round(float(np.mean(values)), 4), round(float(np.std(values)), 4)) if values else None
        rows.append(row)
    return rows


def section_intro(section: dict, max_image_size: int) -> str:
    """What a section trained and evaluated on, and its pairs."""
    if "reconstruction" not in section:  # the validation folds
        folds = [section[f"fold {fold}"] for fold in (0, 1)]
        return ("The held-out protocol's training scenes in two folds; each method trains on one fold (its photos, "
                "and the held-out reconstruction's pairs among them) and is scored on the other; values are mean ± "
                "standard deviation over both folds (and the seeds). " + "; ".join(
                    f"fold {fold}: {f['train_photos']} photos of {f['train_scenes']} scenes, "
                    f"{f['reconstruction']['positives']} positives and {f['reconstruction']['negatives']} negatives"
                    for fold, f in enumerate(folds)) + ".")
    rec = section["reconstruction"]
    return (f"Training: {section['train_photos']} photos of {section['train_scenes']} scenes; evaluated: "
            f"{section['test_photos']} photos of {section['test_scenes']} scenes. Reconstruction "
            f"(`hashkit reconstruct` defaults, --max-image-size {max_image_size}, {rec['seconds']} s): "
            f"{rec['registered']} of {rec['photos']} registered in {rec['models']} models, {rec['positives']} "
            f"positives ({rec['wrong_positives']} across scenes, recall {rec['positive_recall']} of same-scene pairs), "
            f"{rec['negatives']} negatives ({rec['same_scene_negatives']} within a scene).")


def markdown(report: dict) -> str:
    lines = ["# Real photographs: held-out scenes and the user's path", "",
             f"Machine: {report['machine']}. Photos: {report['photos']} of {report['scenes']} real scenes and "
             f"{report['distractors']} distractors (benchmarks/real_photos.tsv, docs/real_photos.md). "
             "Each section names the command and commit it ran at.", "",
             "Protocol (benchmarks/real.py's docstring): ImageNet MobileNetV2 at 224 px for every method; BCDH with "
             "`hashkit train --pairs pairs.h5`'s defaults; peers DSAH, GreedyHash, Bi-half with a frozen backbone, "
             "hidden 1024 (`-linear`: none, the authors' layout), 20 epochs, batch 128, Adam 1e-3 (GreedyHash "
             "with a hidden layer: dropout 0.5); ITQ and LSH fitted on the training photos. Every photo queries "
             "all others of its half; relevant = same real scene; distractors are never queries. mAP, "
             f"mAP@{K}, P@{K} are tie-aware; 'cross-scene pairs' are pairs of photos of different scenes "
             "(distractors included) on one code. Values: mean ± standard deviation over seeds "
             f"{report['seeds']} (training, encoding, querying per seed; reconstruction once, seconds of one run).", ""]
    for section in report["sections"]:
        lines += [f"## {section['name']}", "", f"`{section['command']}` at commit {section['commit']}.", "",
                  section_intro(section, report["max_image_size"]), "",
                  f"| method | bits | mAP | mAP@{K} | P@{K} | distinct codes | cross-scene pairs on one code | "
                  "train s | encode + query s |", "|---|---|---|---|---|---|---|---|---|"]
        for row in summarised(section["runs"]):
            def cell(key: str, row=row) -> str:
                value = row[key]
                if value is None:
                    return "-"
                return f"{value[0]:g} ± {value[1]:g}" if row["seeds"] > 1 else f"{value[0]:g}"
            bits = "float" if row["method"].startswith("float") else row["bits"]
            lines.append(f"| {row['method']} | {bits} | {cell('mAP')} | {cell(f'mAP@{K}')} | {cell(f'P@{K}')} | "
                         f"{cell('distinct_codes')} | {cell('cross_scene_pairs_on_one_code')} | "
                         f"{cell('train_seconds')} | {cell('query_seconds')} |")
        lines.append("")
    return "\n".join(lines)


def run(photos: Path, work: Path, seeds: list[int], bits_list: list[int], methods: list[str],
        protocols: list[str], max_image_size: int) -> None:
    truth = read_truth(photos)
    first, second = split_scenes(truth)
    everything = sorted(truth)
    report = {"machine": f"{cpu_description()}, torch {torch.__version__}, "
                         f"{'GPU' if torch.cuda.is_available() else 'no GPU'}",
              "photos": len(truth), "scenes": len({s for s in truth.values() if not s.startswith(DISTRACTOR)}),
              "distractors": sum(1 for s in truth.values() if s.startswith(DISTRACTOR)), "seeds": seeds,
              "max_image_size": max_image_size, "sections": []}
    run_by = {"commit": COMMIT,
              "command": "python benchmarks/real.py run " + " ".join(sys.argv[2:])}
    if "held-out" in protocols:
        report["sections"].append(run_protocol(
            HELD_OUT, photos, truth, [n for n in everything if truth[n] in first],
            [n for n in everything if truth[n] in second], work / "held-out", seeds, bits_list, methods,
            max_image_size))
    if "validation" in protocols:
        report["sections"].append(run_validation(photos, truth, [n for n in everything if truth[n] in first],
                                                 work / "held-out" / "sfm" / "pairs.h5", work / "validation", seeds,
                                                 bits_list, methods))
    if "user" in protocols:
        report["sections"].append(run_protocol(USER, photos, truth, everything, everything, work / "user",
                                               seeds, bits_list, methods, max_image_size))
    for section in report["sections"]:
        section.update(run_by)
    measured = {section["name"] for section in report["sections"]}
    if (RESULTS / "real.json").exists():  # the sections of other protocols are kept from the last run
        earlier = json.loads((RESULTS / "real.json").read_text())["sections"]
        report["sections"] += [section for section in earlier if section["name"] not in measured]
    report["sections"].sort(key=lambda section: SECTIONS.index(section["name"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "real.md").write_text(markdown(report))
    print(markdown(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("assemble", help="the photo set from clones of the manifest's repositories")
    make.add_argument("--sources", type=Path, required=True, help="folder of clones: owner/name or owner+name")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--manifest", type=Path, default=MANIFEST, help="the photos to take (default: %(default)s)")
    measure = commands.add_parser("run", help="both protocols, every method")
    measure.add_argument("--photos", type=Path, required=True, help="the folder assemble wrote")
    measure.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "real")
    measure.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    measure.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    measure.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    measure.add_argument("--max-image-size", type=int, default=ReconstructOptions.max_image_size,
                         help="hashkit reconstruct's --max-image-size (default: its own)")
    measure.add_argument("--protocols", nargs="+", default=["held-out", "validation", "user"],
                         choices=["held-out", "validation", "user"])
    args = parser.parse_args()
    if args.command == "assemble":
        assemble(args.sources, args.out, args.manifest)
    else:
        run(args.photos, args.work, args.seeds, args.bits, args.methods, args.protocols, args.max_image_size)


if __name__ == "__main__":
    main()
