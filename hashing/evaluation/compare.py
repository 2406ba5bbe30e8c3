"""``hashkit compare``: several evaluated runs (metrics.json files) side by side."""

from __future__ import annotations

import json
from pathlib import Path

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.outputs import output_file


def compare(metrics_files: list[Path], plot: Path | None = None) -> list[dict]:
    """One row per run: its name (the file's folder and name), method, bits and headline
    metrics at its k. With ``plot``, the runs' precision-recall curves are drawn there and
    their precision@k curves beside it."""
    runs, rows = {}, []
    for path in metrics_files:
        try:
            metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path} as a metrics.json ({type(error).__name__})") from error
        name = f"{Path(path).parent.name}/{Path(path).name}"
        rows.append(metrics_row(path, name, metrics))
        runs[name] = metrics
    if plot is not None:
        plot = output_file(plot, overwrite=True)
        if any(m["pr_curve"] is None for m in runs.values()):
            raise UserError("a run with no evaluated query has no curves to plot")
        from .report import plot_curves  # matplotlib: only when a plot is asked for

        try:
            plot_curves(runs, plot, plot.with_name(f"{plot.stem}-precision_at_k{plot.suffix or '.png'}"))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"a metrics file's curves cannot be drawn ({type(error).__name__}: {error})") from error
    return rows


def metrics_row(path: Path, name: str, m: object) -> dict:
    """The table row (named ``name``) of the metrics ``m`` read from ``path``, once their fields
    and types are checked; a UserError when they are not the metrics 'hashkit query' writes."""
    try:
        if not isinstance(m, dict) or "evaluated_queries" not in m or "pr_curve" not in m:
            raise KeyError("evaluated_queries or pr_curve")
        k = m["k"]
        row = {"run": name, "method": m.get("method"), "bits": m.get("bits"), "k": k,
               "queries": m["evaluated_queries"], "mAP": m["mAP"], "mAP@k": m[f"mAP@{k}"],
               "precision@k": m[f"precision@{k}"], "tie-aware mAP": m["tie_aware"]["mAP"],
               "precision@radius2": m["precision@radius2"]}
    except (KeyError, TypeError) as error:
        raise UserError(f"{path} is not a metrics.json written by this version of 'hashkit query' "
                        f"({type(error).__name__}: {error})") from error
    numbers = [row[key] for key in ("mAP", "mAP@k", "precision@k", "tie-aware mAP", "precision@radius2")]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or not isinstance(row["queries"], int) \
            or any(value is not None and not isinstance(value, (int, float)) for value in numbers):
        raise UserError(f"{path} is not a metrics.json written by this version of 'hashkit query' "
                        "(a value of the wrong type)")
    return row
