"""``hashkit query``: batch Hamming search (k nearest or within a radius) of a query store against a
database store, plus metrics."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hashkit.hashing import __version__
from hashkit.hashing.errors import UserError
from hashkit.hashing.files.labels import (
    LabelSet,
    is_landmark_csv,
    label_matrix,
    load_labels,
    load_landmark_lists,
    vocabulary,
)
from hashkit.hashing.files.locking import exclusive_lock
from hashkit.hashing.files.outputs import hdf5_in_memory, output_file, write_bytes
from hashkit.hashing.files.text_column import encoded
from hashkit.hashing.memory import available_memory
from hashkit.hashing.progress import progress
from hashkit.hashing.search.base import Database, SearchIndex, index_class
from hashkit.hashing.search.saved_index import load_saved_index
from hashkit.hashing.search.scan import CHUNK_ROWS
from hashkit.hashing.storage.store import StoreContents, StoreSet, check_same_model, read_store

from .metrics import LabelRelevance, ListedRelevance, evaluate_relevance

STORED = "stored"  # --ground-truth: the labels stored with the codes
REPORT_QUERIES, REPORT_RESULTS = 12, 10  # sample queries on the report page, results shown for each
SCHEMA = "hashkit.results"
SCHEMA_VERSION = 2  # 2: index, exact and layout attributes; radius results
_STR = h5py.string_dtype("utf-8")
RESULT_BYTES = 200  # memory per k-nearest result: distances and rows (a few copies) and its path string


@dataclass
class QuerySummary:
    results: str
    queries: int
    database: int
    k: int
    index: str = "flat"
    exact: bool = True
    radius: int | None = None
    results_found: int | None = None  # radius search: results over all queries
    metrics_path: str | None = None
    metrics: dict | None = None
    report: str | None = None  # the report's index.html
    saved_index: str | None = None  # approximate indexes: "loaded", "none" (built here) or "stale" (rebuilt here)
    index_params: dict | None = None
    warnings: list[str] = field(default_factory=list)


def query(db_paths: Path | list[Path], queries_path: Path, k: int, output: Path, ground_truth: str | None = None,
          metrics_path: Path | None = None, exclude_self: bool = True, overwrite: bool = False,
          index: str = "flat", radius: int | None = None, report: Path | None = None,
          index_params: dict[str, object] | None = None) -> QuerySummary:
    """Search every query code in the database and write ``output`` (and metrics, with ground truth).

    ``db_paths``: one store, or several stores of one model searched as one database (their rows
    numbered through the stores in order, as ``hashkit merge`` would join them).

    ``index``: a registered index (``search.base.indexes``; ``flat``, the exact scan, by default),
    with ``index_params`` its search-time settings (``SearchIndex.tune``). With
    ``radius``, every database row within that Hamming distance is returned instead of the k
    nearest. ``ground_truth``: ``stored`` (the labels stored with the codes), or a source for
    ``labels.load_labels``; when None, the stored labels if both stores hold some. With
    ``report``, that folder gets the curves and a page of sample queries (``report.write_report``).
    """
    output = Path(output)
    metrics_path = Path(metrics_path) if metrics_path else output.parent / "metrics.json"
    kind = index_class(index)
    if index_params and not kind.search_params:
        raise UserError(f"index {kind.name} takes no --index-param")
    if k < 1:
        raise UserError(f"-k must be at least 1, got {k}")
    if radius is not None and radius < 0:
        raise UserError(f"--radius must be at least 0, got {radius}")
    if radius is not None and not kind.searches_radius:
        raise kind.no_radius_search()
    queries = read_store(queries_path)
    db_paths = [Path(db_paths)] if isinstance(db_paths, (str, Path)) else [Path(p) for p in db_paths]
    with StoreSet(db_paths) as db:  # the database is streamed: codes in chunks, only the paths needed
        check_same_model(db_paths[0], db.meta, queries_path, queries.meta)
        if not db.count or not len(queries.codes):
            raise UserError(f"{db.describe_files() if not db.count else queries_path} holds no codes")
        warnings = []
        if radius is None and k > db.count:
            warnings.append(f"-k {k} is more than the {db.count} database codes: capped at {db.count}")
            k = db.count
        held = kind.memory_needed(db.count, db.meta.bits)
        if radius is None or held:  # a radius search's results: as many as there are
            _check_search_memory(len(queries.paths), k if radius is None else 0, kind, held, db.count)
        if ground_truth is None and _has_labels(queries) and db.has_labels():
            ground_truth = STORED
        self_rows = None  # each query's own row, found among its results (they are k + 1 for it)
        if not exclude_self:
            self_rows = np.full(len(queries.paths), -1)
        elif ground_truth:  # the evaluation leaves it out of the whole ranking: looked up among all the paths
            self_rows = db.rows_of(queries.paths)
        relevance = None
        if ground_truth:  # check the ground truth before any output is written
            relevance = _relevance(ground_truth, db, queries, queries_path, self_rows)
        outputs = _checked_outputs(output, metrics_path if ground_truth else None, report, overwrite)
        summary = QuerySummary(str(output), len(queries.paths), db.count, k, kind.name, kind.exact, radius,
                               index_params=index_params or {}, warnings=warnings)
        with ExitStack() as locks:
            for path in outputs:
                locks.enter_context(exclusive_lock(path))
            top, results = _search(db, queries, kind, index_params or {}, k, radius, self_rows, summary)
            metrics = None
            if relevance is not None:
                metrics = evaluate_relevance(db.codes(), queries.codes, relevance, k).as_dict()
                metrics.update(ground_truth=str(ground_truth),
                               database_store=str(db_paths[0]) if len(db_paths) == 1 else [str(p) for p in db_paths],
                               query_store=str(queries_path), bits=db.meta.bits, method=db.meta.method,
                               hashkit_version=__version__)
            write_bytes(output, results)  # written once the evaluation is done: a run killed before leaves none
            if metrics is not None:
                write_bytes(metrics_path, (json.dumps(metrics, indent=2) + "\n").encode())
                summary.metrics_path, summary.metrics = str(metrics_path), metrics
            if report is not None:
                title = f"{db.meta.method}, {db.meta.bits} bits: {Path(queries_path).name} in {db.describe_files()}"
                _report(Path(report), summary.metrics, top, queries.paths, db, relevance, title)
                summary.report = str(Path(report) / "index.html")
    return summary


def _checked_outputs(output: Path, metrics_path: Path | None, report: Path | None, overwrite: bool) -> list[Path]:
    """The files a query writes (results, metrics, the report's page), checked before any is
    written: none may exist unless ``overwrite``, and no two may be the same file."""
    outputs = [output_file(path, overwrite) for path in (output, metrics_path) if path is not None]
    if report is not None:
        if Path(report).exists() and not Path(report).is_dir():
            raise UserError(f"--report {report} is a file; give a folder")
        outputs.append(output_file(Path(report) / "index.html", overwrite))
    real = [os.path.realpath(path) for path in outputs]
    if len(set(real)) < len(real):
        raise UserError(f"{' and '.join(str(path) for path in outputs)} name the same file; give each output its own")
    return outputs


def _search(db: StoreSet, queries: StoreContents, kind: type[SearchIndex], index_params: dict[str, object], k: int,
            radius: int | None, self_rows: np.ndarray | None, summary: QuerySummary) -> tuple[list[np.ndarray], bytes]:
    """Run the search and note how in ``summary``; each query's first results, and the results
    file's bytes. ``self_rows``: each query's own row, left out (-1: none); None: the first of its
    results holding its path."""
    index = None
    if kind.saveable:
        if len(db.readers) == 1:  # a saved index belongs to one store
            index, summary.saved_index = load_saved_index(db.paths_of_files[0], kind, db.codes(), db.meta)
        else:
            summary.saved_index = "none"
    if index is None:
        index = kind.build(Database(db.count, db.meta.bits, db.codes,
                                    lambda: _counted(db.code_chunks(CHUNK_ROWS), db.count)))
    index.tune(index_params)
    if radius is None:
        distances, ids = index.knn(queries.codes, k + 1)
        paths = _PathsOf(db, ids)
        if self_rows is None:
            self_rows = paths.own_rows(np.repeat(np.arange(len(ids)), ids.shape[1]), ids.ravel(), queries.paths)
        distances, ids = _drop_self(distances, ids, self_rows, k)
        results = _knn_results(distances, ids, queries.paths, paths, db, kind)
        return [row[row >= 0][:REPORT_RESULTS] for row in ids], results
    offsets, distances, ids = index.radius(queries.codes, radius)
    paths = _PathsOf(db, ids)
    if self_rows is None:
        self_rows = paths.own_rows(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)), ids, queries.paths)
    offsets, distances, ids = _drop_self_ragged(offsets, distances, ids, self_rows)
    results = _radius_results(offsets, distances, ids, queries.paths, paths, db, kind, radius)
    summary.results_found = int(offsets[-1])
    return [ids[offsets[q]:offsets[q + 1]][:REPORT_RESULTS] for q in range(len(queries.paths))], results


def _check_search_memory(queries: int, k: int, kind: type[SearchIndex], held: int, db_rows: int) -> None:
    """Refuse a k-nearest search whose results, with what the index ``kind`` holds (``held`` bytes),
    would not fit in the memory available; ``k`` 0 for a radius search (its results, as many as
    there are, not counted)."""
    results, available = queries * (k + 1) * RESULT_BYTES, available_memory()
    if available is None or results + held <= available:
        return
    if held:
        raise UserError(f"--index {kind.name} needs about {held / 2**30:.1f} GiB for itself over {db_rows} codes "
                        f"(and {results / 2**30:.1f} GiB for the results), more than the {available / 2**30:.1f} GiB "
                        "available; use --index flat, which streams the store")
    raise UserError(f"{queries} queries x top {k} need about {results / 2**30:.1f} GiB for their results, more "
                    f"than the {available / 2**30:.1f} GiB available; lower -k or query fewer codes at a time")


def _counted(chunks: Iterator[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """``chunks`` of the database, each counted on a progress bar once it has been scanned."""
    with progress(total=rows, desc="scanning", unit="code", unit_scale=True) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(len(chunk))


def _report(folder: Path, metrics: dict | None, top: list[np.ndarray], query_paths: list[str], db: StoreSet,
            relevance: LabelRelevance | ListedRelevance | None, title: str) -> None:
    """The report page for up to REPORT_QUERIES queries spread evenly over the query store."""
    from .report import write_report  # matplotlib and OpenCV: only when a report is asked for

    sample = np.unique(np.linspace(0, len(query_paths) - 1, min(len(query_paths), REPORT_QUERIES)).astype(int))
    marks = None if relevance is None else [relevance.is_relevant(q, top[q]) for q in sample]
    write_report(folder, metrics, [query_paths[q] for q in sample], [db.paths_at(top[q]) for q in sample],
                 marks, title)


def _has_labels(store: StoreContents) -> bool:
    return any(store.labels or ())


def _relevance(ground_truth: str, db: StoreSet, queries: StoreContents, queries_path: Path,
               self_rows: np.ndarray) -> LabelRelevance | ListedRelevance:
    """Relevance from a landmark CSV (per-query relevant and junk lists; the listed images are looked
    up in one pass over the database's paths) or from labels (every database label or path is read)."""
    if is_landmark_csv(ground_truth):
        relevant, junk = load_landmark_lists(ground_truth, db.rows_of, queries.paths)
        if not any(len(rows) for rows in relevant):
            raise UserError(f"--ground-truth {ground_truth} lists no relevant database image for any query")
        return ListedRelevance(relevant, junk, db.count, self_rows)
    db_sets, query_sets = _label_sets(ground_truth, db, queries, queries_path)
    classes = vocabulary(label_set for label_set in db_sets + query_sets if label_set)
    return LabelRelevance(label_matrix(db_sets, classes), label_matrix(query_sets, classes), self_rows)


def _label_sets(ground_truth: str, db: StoreSet, queries: StoreContents,
                queries_path: Path) -> tuple[list[LabelSet | None], list[LabelSet | None]]:
    """The label set (None: unknown) of each database and query row; an error if either has none."""
    if ground_truth == STORED:
        for labelled, path in ((db.has_labels(), db.describe_files()), (_has_labels(queries), queries_path)):
            if not labelled:
                raise UserError(f"--ground-truth stored: {path} holds no labels (encode with --labels)")
        return db.labels(), queries.labels
    db_paths = db.paths()
    labels = load_labels(ground_truth, db_paths + queries.paths)
    db_sets, query_sets = [labels.get(p) for p in db_paths], [labels.get(p) for p in queries.paths]
    for name, sets in (("database", db_sets), ("query", query_sets)):
        if not any(sets):
            raise UserError(f"--ground-truth {ground_truth} gives a label to none of the {name} images "
                            "(paths in a CSV are relative to the CSV's folder)")
    return db_sets, query_sets


def _drop_self(distances: np.ndarray, ids: np.ndarray, self_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own row from its results, keep k columns (padded with -1)."""
    out_d = np.full((len(ids), k), -1, np.int32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for q, (row_d, row_i) in enumerate(zip(distances, ids)):
        keep = (row_i != self_rows[q]) | (self_rows[q] < 0)
        kept_d, kept_i = row_d[keep][:k], row_i[keep][:k]
        out_d[q, :len(kept_d)], out_i[q, :len(kept_i)] = kept_d, kept_i
    return out_d, out_i


def _drop_self_ragged(offsets: np.ndarray, distances: np.ndarray, ids: np.ndarray,
                      self_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius results without each query's own row."""
    query_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    keep = ids != self_rows[query_of]
    counts = np.bincount(query_of[keep], minlength=len(offsets) - 1)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), distances[keep], ids[keep]


class _PathsOf:
    """The database paths of a search's result rows, read once (-1 gives "")."""

    def __init__(self, db: StoreSet, rows: np.ndarray):
        rows = np.unique(rows[rows >= 0])
        self.path_of = dict(zip(rows.tolist(), db.paths_at(rows)))

    def __call__(self, rows: np.ndarray) -> list[str]:
        return [self.path_of.get(row, "") for row in np.asarray(rows).ravel().tolist()]

    def own_rows(self, query_of: np.ndarray, rows: np.ndarray, query_paths: list[str]) -> np.ndarray:
        """Each query's own row among its results (``rows``, of queries ``query_of``): the lowest
        holding the query's path, as ``StoreSet.rows_of`` would find it there (-1: none)."""
        own = np.full(len(query_paths), -1, np.int64)
        for q, row, path in zip(query_of.tolist(), rows.tolist(), self(rows)):
            if path == query_paths[q] and (own[q] < 0 or row < own[q]):
                own[q] = row
        return own


def _knn_results(distances: np.ndarray, ids: np.ndarray, query_paths: list[str], paths: _PathsOf, db: StoreSet,
                 index: type[SearchIndex]) -> bytes:
    result_paths = np.array([encoded(path) for path in paths(ids)], dtype=object).reshape(ids.shape)
    with _results_file(db, index, "knn") as (f, image):
        f.create_dataset("ids", data=ids)
        f.create_dataset("distances", data=distances)
        f.create_dataset("query_paths", data=[encoded(path) for path in query_paths], dtype=_STR)
        f.create_dataset("paths", data=result_paths, dtype=_STR)
    return image.getvalue()


def _radius_results(offsets: np.ndarray, distances: np.ndarray, ids: np.ndarray, query_paths: list[str],
                    paths: _PathsOf, db: StoreSet, index: type[SearchIndex], radius: int) -> bytes:
    with _results_file(db, index, "radius") as (f, image):
        f.attrs["radius"] = radius
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("ids", data=ids)
        f.create_dataset("distances", data=distances)
        f.create_dataset("query_paths", data=[encoded(path) for path in query_paths], dtype=_STR)
        f.create_dataset("paths", data=[encoded(path) for path in paths(ids)], dtype=_STR)
    return image.getvalue()


@contextmanager
def _results_file(db: StoreSet, index: type[SearchIndex], layout: str) -> Iterator[tuple[h5py.File, io.BytesIO]]:
    """A new results file built in memory (its bytes in the BytesIO once the block ends)."""
    with hdf5_in_memory() as (f, image):
        f.attrs.update(schema=SCHEMA, schema_version=SCHEMA_VERSION, database=str(db.paths_of_files[0].resolve()),
                       databases=json.dumps([str(p.resolve()) for p in db.paths_of_files]),
                       bits=db.meta.bits, index=index.name, exact=index.exact, layout=layout,
                       hashkit_version=__version__)
        yield f, image
