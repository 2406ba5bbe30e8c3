"""How `hashkit reconstruct`'s defaults were chosen: matching, SIFT size and mapper, measured on real photos.

    python benchmarks/reconstruct_defaults.py --photos PHOTOS [--settings NAME ...] [--repeats 3]

PHOTOS is the real-photo set of benchmarks/real.py (``real.py assemble``: photos/ and truth.csv,
docs/real_photos.md). The photos reconstructed are those of the held-out protocol's training
half (real.py's ``split_scenes``: 237 photos of 28 scenes), the collection `hashkit reconstruct`
meets in the real-photo benchmark, at the photos' own sizes (224 to 4032 px). Each setting of
SETTINGS is one row, reconstructed in a fresh folder; ``defaults`` is `hashkit reconstruct` with
no option at all, run --repeats times (wall time and kept: the median over the runs). The reference is exhaustive
matching with SIFT at 1,600 px and 8,192 features (the former defaults up to 200 photos), mapped
incrementally and, on the same matches, globally; a row's 'kept' is the share of the reference's
correct positives (pairs of photos of one true scene) it also finds, against the reference mapper
that found more. Rows of settings not run now are kept from the last run.
Results: benchmarks/results/reconstruct_defaults.{md,json}; work folders: benchmarks/data/reconstruct-defaults.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import pycolmap
from common import cpu_description
from real import DISTRACTOR, linked_folder, read_truth, split_scenes

from hashkit.hashing.files.pairs_file import read_pairs
from hashkit.sfm_pairs.reconstruct import ReconstructOptions, reconstruct

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REFERENCES = ("exhaustive-1600-incremental", "exhaustive-1600-global")
SETTINGS = {  # name -> hashkit reconstruct's options (the rest: its defaults)
    "exhaustive-1600-incremental": dict(matcher="exhaustive", max_image_size=1600, max_features=8192,
                                        mapper="incremental"),
    "exhaustive-1600-global": dict(matcher="exhaustive", max_image_size=1600, max_features=8192, mapper="global"),
    "retrieval-1600-incremental": dict(matcher="retrieval", max_image_size=1600, max_features=8192,
                                       mapper="incremental"),
    "retrieval-1600-global": dict(matcher="retrieval", max_image_size=1600, max_features=8192, mapper="global"),
    "retrieval-1024-4096-global": dict(matcher="retrieval", max_image_size=1024, max_features=4096, mapper="global"),
    "retrieval-800-4096-global": dict(matcher="retrieval", max_image_size=800, max_features=4096, mapper="global"),
    "retrieval-800-4096-incremental": dict(matcher="retrieval", max_image_size=800, max_features=4096,
                                           mapper="incremental"),
    "retrieval-640-2048-global": dict(matcher="retrieval", max_image_size=640, max_features=2048, mapper="global"),
    "exhaustive-800-4096-global": dict(matcher="exhaustive", max_image_size=800, max_features=4096, mapper="global"),
    "defaults": {},
}


def training_half(photos: Path, folder: Path) -> dict[str, str]:
    """Links to the held-out protocol's training photos in ``folder``; their names -> true scenes."""
    truth = read_truth(photos)
    first, _ = split_scenes(truth)
    names = sorted(name for name in truth if truth[name] in first)
    linked_folder(photos, names, folder)
    return {Path(name).name: truth[name] for name in names}


def reconstruction_folder(work: Path, name: str) -> Path:
    """A setting's work folder: the reference's global row maps in the incremental row's folder."""
    return work / (REFERENCES[0] if name == REFERENCES[1] else name)


def correct_file(work: Path, name: str, run: int) -> Path:
    """Where a run's correct positives are kept (outside its folder, which the next run clears)."""
    folder = work / "correct-positives"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{run}.json"


def positives_record(pairs_path: Path, scene: dict[str, str], correct_file: Path) -> dict:
    """The positives of a pairs file against the true scenes; those joining two photos of one
    scene (by name) are written to ``correct_file``."""
    pairs = read_pairs(pairs_path)
    names = [Path(name).name for name in pairs.images]
    found = {tuple(sorted((names[i], names[j]))) for i, j in pairs.positives.tolist()}
    correct = sorted([a, b] for a, b in found if scene[a] == scene[b] and not scene[a].startswith(DISTRACTOR))
    correct_file.write_text(json.dumps(correct))
    true_pairs = sum(n * (n - 1) // 2 for n in _scene_sizes(scene))
    return {"positives": len(found), "correct": len(correct), "precision": round(len(correct) / max(len(found), 1), 4),
            "recall": round(len(correct) / max(true_pairs, 1), 4)}


def run_setting(name: str, photos: Path, scene: dict[str, str], work: Path, repeats: int) -> dict:
    """One setting reconstructed ``repeats`` times in fresh folders (the reference's global row on
    the incremental row's matches); run k's correct positives go to ``correct_file(work, name, k)``."""
    options = ReconstructOptions(**SETTINGS[name])  # no feature cache: retrieval's selection as in a first run
    folder = reconstruction_folder(work, name)
    runs = []
    for k in range(repeats):
        if name != REFERENCES[1]:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{name}: run {k + 1} of {repeats}", flush=True)
        started = time.perf_counter()
        summary = reconstruct(photos, folder, options)
        wall = round(time.perf_counter() - started, 1)
        runs.append({"wall": wall, "stages": summary.seconds, "pairs_matched": summary.pairs_matched,
                     "verified": summary.verified_pairs, "registered": summary.registered,
                     "models": len(summary.model_sizes),
                     **positives_record(folder / "pairs.h5", scene, correct_file(work, name, k))})
    return {"name": name, "options": {k: str(v) for k, v in SETTINGS[name].items()} or "none (the defaults)",
            "matcher": summary.matcher, "mapper": options.mapper, "max_image_size": options.max_image_size,
            "max_features": options.max_features, "runs": runs,
            "wall_median": statistics.median(run["wall"] for run in runs)}


def mine_again(row: dict, photos: Path, scene: dict[str, str], work: Path) -> None:
    """A single-run row's positives mined again from its finished folder (after a change to pair
    mining): COLMAP's stages are not redone, so the row's times stand."""
    name = row["name"]
    folder = reconstruction_folder(work, name)
    print(f"{name}: mining again", flush=True)
    reconstruct(photos, folder, ReconstructOptions(**SETTINGS[name]))
    row["runs"][0].update(positives_record(folder / "pairs.h5", scene, correct_file(work, name, 0)))


def _scene_sizes(scene: dict[str, str]) -> list[int]:
    return list(Counter(label for label in scene.values() if not label.startswith(DISTRACTOR)).values())


def add_kept(rows: list[dict], work: Path) -> None:
    """Each run's share of the reference's correct positives (the reference mapper that found
    more), and each row's median over its runs."""
    def correct(name: str, k: int) -> set[tuple[str, str]]:
        return {tuple(pair) for pair in json.loads(correct_file(work, name, k).read_text())}
    names = {row["name"] for row in rows}
    references = [correct(name, 0) for name in REFERENCES if name in names]
    if not references:
        return
    reference = max(references, key=len)
    for row in rows:
        for k, run in enumerate(row["runs"]):
            run["kept"] = round(len(correct(row["name"], k) & reference) / max(len(reference), 1), 4)
        row["kept_median"] = statistics.median(run["kept"] for run in row["runs"])


def write_markdown(path: Path, report: dict) -> None:
    lines = ["# Choosing `hashkit reconstruct`'s defaults on real photos", "",
             f"Machine: {report['machine']}. Produced by `python benchmarks/reconstruct_defaults.py` (protocol in "
             f"its docstring). Photos: the real-photo benchmark's held-out training half, {report['photos']} photos "
             f"of {report['scenes']} scenes at their own sizes. Retrieval: each photo with its 20 nearest by "
             "ImageNet MobileNetV2 features. Wall: seconds of the whole `reconstruct` call on this machine (the median "
             "where several runs; stage times of the first run). Where several runs, the other columns list each "
             "run's value. Kept: share of the reference's correct positives (exhaustive matching, "
             "SIFT 1,600 px and 8,192 features, the mapper that found more) that the row finds too. Correct = the "
             "two photos show one true scene.", "",
             "| setting | matching | SIFT px | SIFT features | mapping | wall s | extract s | select s "
             "| match s | map s | pairs matched | verified | registered | models | positives | precision "
             "| recall (all true pairs) | kept of reference (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        runs, s = r["runs"], r["runs"][0]["stages"]

        def each(key: str) -> str:
            return ", ".join(str(run[key]) for run in runs)
        median = f" (runs: {each('wall')})" if len(runs) > 1 else ""
        kept = f"{r.get('kept_median', '-')}" + (f" ({each('kept')})" if len(runs) > 1 else "")
        lines.append(f"| {r['name']} | {r['matcher']} | {r['max_image_size']} | {r['max_features']} | {r['mapper']} "
                     f"| {r['wall_median']}{median} | {s.get('extract', 0)} | {s.get('select', 0)} "
                     f"| {s.get('match', 0)} | {s.get('map', 0)} | {each('pairs_matched')} | {each('verified')} "
                     f"| {each('registered')} | {each('models')} | {each('positives')} | {each('precision')} "
                     f"| {each('recall')} | {kept} |")
    lines += ["", "Stage times are 0 where a stage reused an earlier run (the reference's global row maps the "
              "incremental row's matches). Commands: " + "; ".join(sorted({f"`{r['command']}`"
                                                                           for r in report["rows"]}))]
    again = sorted({r["mined_again"] for r in report["rows"] if "mined_again" in r})
    if again:
        lines += ["Positives mined again from the rows' finished COLMAP folders after a change to pair mining "
                  "(times unchanged): " + "; ".join(f"`{command}`" for command in again)]
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, required=True, help="the real-photo set (real.py assemble)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=3, help="runs of the defaults (other settings: one)")
    parser.add_argument("--mine-again", action="store_true",
                        help="mine the --settings' kept folders again instead of reconstructing (single-run rows)")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "data" / "reconstruct-defaults")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    saved = args.results / "reconstruct_defaults.json"
    report = json.loads(saved.read_text()) if saved.exists() else {"rows": []}
    scene = training_half(args.photos, args.work / "photos")
    report.update(machine=f"{cpu_description()}, pycolmap {pycolmap.__version__}, no GPU",
                  photos=len(scene), scenes=len(_scene_sizes(scene)))
    args.results.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python benchmarks/reconstruct_defaults.py", *sys.argv[1:]])
    for name in sorted(args.settings, key=lambda n: n not in REFERENCES):  # the references first, in order
        if args.mine_again:
            row = next(r for r in report["rows"] if r["name"] == name and len(r["runs"]) == 1)
            mine_again(row, args.work / "photos", scene, args.work)
            row["mined_again"] = command
        else:
            row = run_setting(name, args.work / "photos", scene, args.work, args.repeats if name == "defaults" else 1)
            row["command"] = command
        report["rows"] = [r for r in report["rows"] if r["name"] != name] + [row]
        report["rows"].sort(key=lambda r: list(SETTINGS).index(r["name"]))
        add_kept(report["rows"], args.work)
        saved.write_text(json.dumps(report, indent=1) + "\n")
        write_markdown(args.results / "reconstruct_defaults.md", report)
    print((args.results / "reconstruct_defaults.md").read_text())


if __name__ == "__main__":
    main()
