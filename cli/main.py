"""``hashkit``: reconstruct, train, encode, query. Each command parses, calls the library, reports."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperOption

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError
from hashkit.hashing.memory import MAX_BATCH, MAX_BITS, MAX_EPOCHS, MAX_INPUT_SIZE, MAX_SIDE, MAX_WIDTH

REGISTRY_TEXTS = {  # help placeholder -> the registry function (module, name, arguments) that writes it, or a constant
    "{methods}": ("hashkit.hashing.methods", "method_choices", ()),
    "{indexes}": ("hashkit.hashing.search.base", "index_choices", (False,)),
    "{saveable_indexes}": ("hashkit.hashing.search.base", "index_choices", (True,)),
    "{index_params}": ("hashkit.hashing.search.base", "index_params", ()),
    "{exhaustive_up_to}": ("hashkit.sfm_pairs.pair_selection", "EXHAUSTIVE_UP_TO", ()),
    "{sequential_overlap}": ("hashkit.sfm_pairs.pair_selection", "SEQUENTIAL_OVERLAP", ()),
}


class RegistryHelp(TyperCommand):
    """A command whose options' help lists what the registries hold (methods, indexes) and the
    constants of heavy modules, read from them only when the help is shown: importing the methods
    takes seconds."""

    def format_help(self, ctx: typer.Context, formatter: object) -> None:
        for param in self.params:
            for placeholder, (module, name, arguments) in REGISTRY_TEXTS.items():
                if isinstance(param, TyperOption) and param.help and placeholder in param.help:
                    value = getattr(importlib.import_module(module), name)
                    param.help = param.help.replace(placeholder, str(value(*arguments) if callable(value) else value))
        super().format_help(ctx, formatter)


app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Offline image indexing with deep hashing: photos -> 3D pairs -> model -> codes -> search.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
SEED_MAX = 2**32 - 1  # NumPy's seeds
C_INT_MAX = 2**31 - 1  # COLMAP's options are C ints
SeedOption = Annotated[int, typer.Option(min=0, max=SEED_MAX,
                                          help="Random seed; the same inputs and seed give the same result.")]
DeviceOption = Annotated[str, typer.Option(help="auto (a GPU when there is one), cpu or cuda.")]
WorkersOption = Annotated[Optional[int], typer.Option(
    min=0, max=256, help="Processes decoding images (default: none on a CPU, cores - 1 up to 4 beside a GPU).")]


def user_errors(command: Callable) -> Callable:
    """Print a UserError, or an operating-system error (a path that cannot be read or written, a
    full disk, memory), as one line on stderr and exit 1, without a traceback; on Ctrl-C say what
    was kept and exit 130."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""))
        except MemoryError:
            fail("out of memory; try smaller inputs or batches")
        except Exception as error:  # a library's write failed for lack of space: told in one line too
            from hashkit.hashing.files.disk_space import is_out_of_space
            if not is_out_of_space(error):
                raise
            fail(f"no space left on the disk: {str(error).splitlines()[0]}")
        except KeyboardInterrupt:
            kept = INTERRUPTED.get(command.__name__.removesuffix("_command"), "nothing was written")
            typer.echo(f"interrupted: {kept}", err=True)
            raise typer.Exit(130) from None
    return wrapper


def echo(text: str, err: bool = False) -> None:
    """``text`` on stdout (or stderr), a file name that is not UTF-8 as its own bytes, as ``ls`` shows it."""
    typer.echo(text.encode("utf-8", "surrogateescape"), err=err)


def fail(message: str) -> None:
    echo(f"error: {message}", err=True)
    raise typer.Exit(1) from None


INTERRUPTED = {  # what an interrupted command leaves behind
    "reconstruct": "COLMAP's finished stages are kept in OUTPUT/sfm; rerun the same command to continue",
    "train": "no model was written (an existing one is untouched); the last finished epoch is kept in "
             "OUTPUT.checkpoint: rerun with --resume to continue",
    "encode": "the codes committed so far are kept in the store; rerun the same command to continue",
    "query": "no results were written (existing ones are untouched)",
    "index_build": "no index was written (an existing one is untouched)",
    "merge": "no merged store was written (an existing one is untouched)",
}


def report_summary(summary: dict, as_json: bool, lines: list[str]) -> None:
    echo(json.dumps(summary, indent=2) if as_json else "\n".join(lines))


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hashkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=version_callback, is_eager=True, help="Show the version and exit.")] = None) -> None:
    """Offline image indexing with deep hashing."""


def cache_dir(path: Optional[Path], disabled: bool) -> Optional[Path]:
    from hashkit.hashing.user_cache import default_cache_dir
    return None if disabled else (path or default_cache_dir())


FeatureCacheOption = Annotated[Optional[Path], typer.Option(
    help="Folder of the backbone feature cache [default: ~/.cache/hashkit/features].")]
NoCacheOption = Annotated[bool, typer.Option("--no-feature-cache", help="Compute backbone features afresh.")]


@app.command("reconstruct", cls=RegistryHelp)
@user_errors
def reconstruct_command(
    photos: Annotated[Path, typer.Argument(metavar="PHOTOS", help="Folder of photos (searched recursively).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Work folder: sfm/ and pairs.h5 go here.")],
    colmap: Annotated[Optional[Path], typer.Option(
        help="An existing COLMAP workspace to mine instead of reconstructing: a folder with a database (*.db) "
             "and/or sparse models (binary or text, at any depth: sparse/0, ...), a model folder, or a database, "
             "made by COLMAP, GLOMAP, hloc or another tool, its image names relative to PHOTOS. Nothing is "
             "extracted, matched or mapped; the matching and mapping options do not apply.")] = None,
    matcher: Annotated[str, typer.Option(
        help="Which photo pairs COLMAP matches: exhaustive (all; cost grows with the square of the photos), "
             "retrieval (each photo with its --num-neighbors nearest by a global descriptor; linear), "
             "sequential (each with the next {sequential_overlap} in file order), "
             "or auto (exhaustive up to {exhaustive_up_to} photos, retrieval above).")] = "auto",
    num_neighbors: Annotated[int, typer.Option(
        min=1, max=C_INT_MAX, help="retrieval: nearest photos matched with each photo.")] = 20,
    model: Annotated[Optional[Path], typer.Option(
        help="retrieval: a model from 'hashkit train' whose codes choose the pairs [default: ImageNet "
             "MobileNetV2 features].")] = None,
    mapper: Annotated[str, typer.Option(
        help="global (GLOMAP), incremental (COLMAP; the more robust on small, weakly connected sets), or "
             "hierarchical (COLMAP's incremental mapper on overlapping clusters of at most 500 images, merged: "
             "for one very large scene).")] = "global",
    positives: Annotated[str, typer.Option(
        help="Positive pairs from: models (covisible in a 3D model), verified (a two-view geometry with "
             "--min-inliers inlier matches), both, or auto (models, plus verified pairs except those "
             "joining two different models).")] = "auto",
    min_shared_points: Annotated[int, typer.Option(
        min=1, max=C_INT_MAX, help="3D points two images must share to be a positive pair.")] = 15,
    min_inliers: Annotated[int, typer.Option(
        min=1, max=C_INT_MAX, help="Inlier matches a verified pair needs to be a positive.")] = 30,
    negatives_per_image: Annotated[int, typer.Option(
        min=0, max=C_INT_MAX, help="Random negatives drawn from other groups per image.")] = 10,
    max_image_size: Annotated[int, typer.Option(min=32, max=MAX_SIDE, help="Longest side for SIFT extraction.")] = 800,
    max_features: Annotated[int, typer.Option(
        min=64, max=C_INT_MAX, help="SIFT features kept per photo (the strongest); matching time grows with their "
                                    "square.")] = 4096,
    min_model_size: Annotated[int, typer.Option(min=2, max=C_INT_MAX, help="Smallest 3D model kept, in images.")] = 3,
    parts: Annotated[int, typer.Option(
        min=1, max=10_000, help="Split the photos into this many parts that keep each scene together (clusters "
                                "of retrieval descriptors, overlapping), reconstruct each on its own and merge "
                                "their pairs: for collections too big for one mapping run (docs/scaling.md).")] = 1,
    part_overlap: Annotated[int, typer.Option(
        min=0, max=1000, help="--parts: each photo's nearest photos in other parts that its part takes too, so a "
                              "scene cut in two is joined through the photos both parts register.")] = 5,
    part_jobs: Annotated[int, typer.Option(
        min=0, max=1024, help="--parts: parts reconstructed at once on this machine (0: one per core, at most "
                              "the parts), the cores shared among them.")] = 0,
    part: Annotated[Optional[int], typer.Option(
        min=0, max=10_000, help="--parts: reconstruct this part alone (a job array's task, e.g. "
                                "$SLURM_ARRAY_TASK_ID); a later run without --part merges the finished parts.")]
        = None,
    feature_cache: FeatureCacheOption = None,
    no_feature_cache: NoCacheOption = False,
    seed: Annotated[int, typer.Option(
        min=0, max=SEED_MAX, help="Random seed of COLMAP's mapping and of the negatives drawn. COLMAP's threads can "
                                  "still make two runs differ by a few pairs (docs/reliability.md).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo COLMAP from scratch.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show COLMAP's own log on stderr.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reconstruct 3D models from PHOTOS with COLMAP (or read them from an existing workspace, --colmap)
    and mine image pairs into OUTPUT/pairs.h5."""
    from hashkit.sfm_pairs.reconstruct import ReconstructOptions, pairs_from_workspace, reconstruct
    options = ReconstructOptions(
        matcher=matcher, num_neighbors=num_neighbors, retrieval_model=model,
        feature_cache=cache_dir(feature_cache, no_feature_cache), mapper=mapper, positives=positives,
        min_shared_points=min_shared_points, min_inliers=min_inliers, negatives_per_image=negatives_per_image,
        max_image_size=max_image_size, max_features=max_features, min_model_size=min_model_size, seed=seed,
        overwrite=overwrite, verbose=verbose)
    if colmap is not None:
        summary = pairs_from_workspace(photos, output, colmap, options)
        matching = f"from the COLMAP workspace {colmap}: "
    else:
        if parts > 1 or part is not None:
            from hashkit.sfm_pairs.partition import PartitionOptions, reconstruct_partitioned
            summary = reconstruct_partitioned(photos, output, PartitionOptions(parts, part_overlap, part_jobs),
                                              options, part)
        else:
            summary = reconstruct(photos, output, options)
        matching = f"matching: {summary.matcher}, {summary.pairs_matched} pairs matched, "
    report_summary(asdict(summary), as_json, [
        f"images: {summary.images} ({len(summary.unreadable)} unreadable, {summary.registered} registered)"
        + (f"; {len(summary.missing)} named by the workspace are not in {photos}" if summary.missing else ""),
        matching + f"{summary.verified_pairs} verified",
    ] + ([f"parts: {len(summary.parts)} (photos per part: {summary.parts}), merged"] if summary.parts else []) + [
        f"3D models: {len(summary.model_sizes)} (images per model: {summary.model_sizes}); "
        f"{summary.groups} groups of linked images",
        f"pairs: {summary.positives} positive ({summary.positives_from_models} from models, "
        f"{summary.positives_verified_only} verified only), {summary.negatives} negative -> {summary.pairs_path}",
    ] + [f"unreadable: {name}" for name in summary.unreadable] + [f"missing: {name}" for name in summary.missing])


def learning_rate(value: float) -> float:
    """--lr's check: a usage error unless 0 < value <= 10."""
    if not 0 < value <= 10:
        raise typer.BadParameter(f"{value} is not in the range 0<x<=10.")
    return value


def parse_params(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings to a dict; values become int or float where they parse as such."""
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param expects KEY=VALUE, got {item!r}")
        for convert in (int, float, str):
            try:
                params[key] = convert(value)
                break
            except ValueError:
                continue
    return params



@app.command("train", cls=RegistryHelp)
@user_errors
def train_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Model file to write (model.pt).")],
    pairs: Annotated[Optional[list[Path]], typer.Option(
        help="pairs.h5 from 'hashkit reconstruct'; repeat it to train on several as one (photos identified by "
             "absolute path, each file's groups kept apart unless they share a photo).")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder of training images (no pairs needed).")] = None,
    labels: Annotated[Optional[str], typer.Option(
        help="Labels for supervised methods: 'folders' (one sub-folder per class), or a CSV of path,label "
             "or path,\"a;b;c\" rows.")] = None,
    method: Annotated[str, typer.Option(help="Hashing method. {methods}.")] = "bcdh",
    param: Annotated[Optional[list[str]], typer.Option(
        help="Method hyperparameter KEY=VALUE (repeatable; see docs/methods.md).")] = None,
    bits: Annotated[int, typer.Option(min=8, max=MAX_BITS, help="Code length, a multiple of 8.")] = 64,
    backbone: Annotated[str, typer.Option(help="mobilenet_v2, resnet18, resnet50, vgg16 or alexnet.")] = "mobilenet_v2",
    weights: Annotated[str, typer.Option(help="imagenet, none, or a state-dict file for the backbone.")] = "imagenet",
    image_size: Annotated[int, typer.Option(min=32, max=MAX_INPUT_SIZE, help="Square input size in pixels.")] = 224,
    hidden: Annotated[int, typer.Option(
        min=0, max=MAX_WIDTH, help="Width of a hidden layer before the hash layer (0: none).")] = 0,
    freeze_backbone: Annotated[Optional[bool], typer.Option(
        "--freeze-backbone/--train-backbone", show_default=False,
        help="Train only the head, on cached backbone features (fast), or the backbone too (default: the "
             "method's choice; frozen for bcdh).")] = None,
    epochs: Annotated[int, typer.Option(min=1, max=MAX_EPOCHS, help="Training epochs (deep methods).")] = 10,
    batch_size: Annotated[int, typer.Option(
        min=2, max=MAX_BATCH, help="Pairs per step (bcdh) or images per step.")] = 32,
    lr: Annotated[float, typer.Option(callback=learning_rate,
                                      help="Learning rate of the head; a trained backbone uses lr/10.")] = 1e-3,
    optimizer: Annotated[str, typer.Option(
        help="adam, or rmsprop (DeepHash-pytorch's choice for its methods; DPSH trains far better with it).")]
        = "adam",
    workers: WorkersOption = None,
    feature_cache: FeatureCacheOption = None,
    no_feature_cache: NoCacheOption = False,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
    overwrite: OverwriteOption = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue an interrupted run from its last finished epoch (OUTPUT.checkpoint, written "
                         "after every epoch); without a checkpoint, train from the start.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Train a hashing model from pairs or from images alone, and write it to OUTPUT. Under torchrun
    (torchrun --nproc-per-node N -m hashkit.cli.main train ...) the processes train together."""
    from hashkit.hashing.training.train import TrainOptions, train
    options = TrainOptions(method=method, params=parse_params(param or []), bits=bits, backbone=backbone,
                           weights=weights, image_size=image_size, hidden=hidden,
                           freeze_backbone=freeze_backbone, epochs=epochs, batch_size=batch_size, lr=lr,
                           optimizer=optimizer,
                           seed=seed, device=device, feature_cache=cache_dir(feature_cache, no_feature_cache),
                           overwrite=overwrite, resume=resume, **({} if workers is None else {"workers": workers}))
    summary = train(output, options, pairs_path=pairs, images_dir=images, labels=labels)
    from hashkit.hashing.training.distributed import main_process
    if not main_process():  # under torchrun, rank 0 reports
        return
    losses = ", ".join(f"{loss:.4f}" for loss in summary.epoch_losses) or "closed-form fit"
    report_summary(asdict(summary), as_json, [
        f"trained {summary.method} ({summary.bits} bits) on {summary.images} images"
        + (f" of {summary.classes} classes" if summary.classes else "") + f" in {summary.seconds:.1f}s"
        + (f" ({len(summary.unreadable)} undecodable images skipped)" if summary.unreadable else "")
        + (f", resumed after epoch {summary.resumed_from_epoch}" if summary.resumed_from_epoch else ""),
        f"loss per epoch: {losses}",
        f"training codes: {summary.collapse.distinct_codes} distinct for {summary.images} images"
        + (f", {summary.collapse.cross_group_pairs} pairs of different groups on one code"
           if summary.collapse.grouped_images else ""),
        f"model: {summary.model_path}",
    ] + [f"unreadable: {path}" for path in summary.unreadable])
    for warning in summary.warnings:
        echo(f"warning: {warning}", err=True)


@app.command("encode")
@user_errors
def encode_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file from 'hashkit train'.")],
    inputs: Annotated[list[Path], typer.Argument(
        metavar="INPUTS", help="Images, folders, or text files listing image paths.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Code store (codes.h5); appended to if it exists.")],
    batch_size: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="Images per forward pass.")] = 64,
    workers: WorkersOption = None,
    device: DeviceOption = "auto",
    feature_cache: FeatureCacheOption = None,
    no_feature_cache: NoCacheOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start a new store instead of appending.")] = False,
    labels: Annotated[Optional[str], typer.Option(
        help="Store each image's labels with its code: 'folders', a path,label CSV (a cell may hold 'a;b'), "
             "or a pairs.h5; images it does not label are stored as unknown.")] = None,
    shard: Annotated[Optional[str], typer.Option(
        help="Encode only shard i/n of the images (e.g. 0/4; by a checksum of each path), for 'hashkit merge' "
             "later. Under torchrun each process takes its own shard and writes OUTPUT-RRRRR-of-NNNNN.h5.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Encode images to binary codes in an HDF5 code store."""
    from hashkit.hashing.storage.encode import encode
    from hashkit.hashing.storage.shards import parse_shard
    summary = encode(model, inputs, output, batch_size=batch_size, workers=workers, device=device, overwrite=overwrite,
                     feature_cache=cache_dir(feature_cache, no_feature_cache), labels=labels,
                     shard=None if shard is None else parse_shard(shard))
    report_summary(asdict(summary), as_json, [
        (f"shard {summary.shard}: " if summary.shard else "") +
        f"encoded {summary.encoded} images ({summary.already_present} already in the store, "
        f"{len(summary.unreadable)} unreadable); {summary.total} codes in {summary.store}",
    ] + [f"unreadable: {path}" for path in summary.unreadable])


@app.command("query", cls=RegistryHelp)
@user_errors
def query_command(
    db: Annotated[list[Path], typer.Option(
        "--db", help="Database code store; repeat it to search several stores of one model (shards) as one.")],
    queries: Annotated[Path, typer.Option("--queries", help="Query code store (may be the database itself).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Results file (results.h5).")],
    k: Annotated[int, typer.Option("-k", min=1, help="Neighbours per query.")] = 100,
    ground_truth: Annotated[Optional[str], typer.Option(
        help="Evaluate against labels: 'stored' (those encoded with --labels; the default when both stores "
             "hold some), 'folders', a path,label CSV, or a pairs.h5 (its groups: 3D models joined by "
             "verified pairs).")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Metrics file (default: metrics.json beside OUTPUT).")] = None,
    keep_self: Annotated[bool, typer.Option("--keep-self", help="Keep a query's own image in its results.")] = False,
    radius: Annotated[Optional[int], typer.Option(
        min=0, help="Return every code within this Hamming distance instead of the k nearest.")] = None,
    index: Annotated[str, typer.Option(help="Search index. {indexes}.")] = "flat",
    index_param: Annotated[Optional[list[str]], typer.Option(
        help="Search setting KEY=VALUE of an approximate index (repeatable): {index_params}. Fewer flips, "
             "probes or candidates are faster and find fewer true neighbours.")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="Folder for a report: precision-recall and precision@k curves (PNG) and index.html with "
             "sample queries and their top results.")] = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Hamming search (k nearest, or within --radius) of every query code in the database; optional evaluation."""
    from hashkit.hashing.evaluation.query import query
    from hashkit.hashing.evaluation.summaries import metrics_lines
    summary = query(db, queries, k, output, ground_truth=ground_truth, metrics_path=metrics,
                    exclude_self=not keep_self, overwrite=overwrite, index=index, radius=radius, report=report,
                    index_params=parse_params(index_param or []))
    found = f"top {summary.k}" if radius is None else f"{summary.results_found} results within radius {radius}"
    lines = [f"{summary.queries} queries x {summary.database} codes, {found} -> {summary.results}"]
    if not summary.exact:
        saved = {"loaded": "saved index loaded", "none": "built for this query (hashkit index-build saves it)",
                 "stale": "saved index is stale (the store changed): rebuilt for this query; rerun hashkit index-build"}
        lines.append(f"note: index {summary.index} is approximate: results may miss true neighbours; "
                     f"{saved[summary.saved_index]}")
    if summary.metrics:
        lines += metrics_lines(summary.metrics, summary.database) + [f"metrics: {summary.metrics_path}"]
    if summary.report:
        lines.append(f"report: {summary.report}")
    for warning in summary.warnings + ([summary.metrics["tie_warning"]] if summary.metrics
                                       and summary.metrics["tie_warning"] else []):
        echo(f"warning: {warning}", err=True)
    report_summary(asdict(summary), as_json, lines)


@app.command("index-build", cls=RegistryHelp)
@user_errors
def index_build_command(
    db: Annotated[Path, typer.Option("--db", help="Code store to index.")],
    index: Annotated[str, typer.Option(help="Index to save. {saveable_indexes}.")] = "faiss-mih",
    as_json: JsonOption = False,
) -> None:
    """Build an approximate search index over a code store and save it next to the store."""
    from hashkit.hashing.search.saved_index import build_saved_index
    path, rows = build_saved_index(db, index)
    report_summary({"index": str(path), "rows": rows}, as_json, [f"{index} index over {rows} codes -> {path}"])


@app.command("merge")
@user_errors
def merge_command(
    shards: Annotated[list[Path], typer.Argument(metavar="SHARDS", help="Code stores of one model, in order.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The merged code store to write.")],
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Join shard code stores of one model (from 'encode --shard') into one store, each path once."""
    from hashkit.hashing.storage.merge import merge
    summary = merge(shards, output, overwrite)
    report_summary(asdict(summary), as_json, [
        f"merged {summary.shards} stores: {summary.rows} codes -> {summary.store}"
        + (f" ({summary.duplicates} repeated paths left out)" if summary.duplicates else "")])


@app.command("compare")
@user_errors
def compare_command(
    metrics_files: Annotated[list[Path], typer.Argument(
        metavar="METRICS", help="metrics.json files of the runs to compare.")],
    plot: Annotated[Optional[Path], typer.Option(
        help="Draw the runs' precision-recall curves on one plot (PNG); precision@k goes beside it "
             "(NAME-precision_at_k.png).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare evaluated runs: a table of their metrics, and their curves on one plot."""
    from hashkit.hashing.evaluation.compare import compare
    from hashkit.hashing.evaluation.summaries import format_table
    table = compare(metrics_files, plot)
    report_summary({"runs": table}, as_json, format_table(table))


@app.command("inspect")
@user_errors
def inspect_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="pairs.h5, model.pt, codes.h5, results.h5, "
                                         "metrics.json, a saved index or a feature cache file.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a hashkit file and show what it holds; exit 1 if it is damaged or inconsistent."""
    from .inspect_file import inspect_file
    summary = inspect_file(file)
    report_summary(summary, as_json, [f"{summary['path']}: {summary['kind']}, valid"]
                   + [f"  {key}: {value}" for key, value in summary.items() if key not in ("path", "kind")])


if __name__ == "__main__":
    sys.exit(app())
