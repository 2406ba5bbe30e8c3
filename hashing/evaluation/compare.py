"""``hashkit compare``: several evaluated runs (metrics.json files) side by side."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..storage.locking import output_file
from .report import plot_curves


def compare(metrics_files: list[Path], plot: Path | None = None) -> list[dict]:
    """One row per run: its name (the file's folder and name), method, bits and headline
    metrics at its k. With ``plot``, the runs' precision-recall curves are drawn there and
    their precision@k curves beside it."""
    runs = {}
    for path in metrics_files:
        try:
            metrics = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path} as a metrics.json ({type(error).__name__})") from error
        if "evaluated_queries" not in metrics or "pr_curve" not in metrics:
            raise UserError(f"{path} is not a metrics.json written by this version of 'hashkit query'")
        runs[f"{Path(path).parent.name}/{Path(path).name}"] = metrics
    if plot is not None:
        plot = output_file(plot, overwrite=True)
        if any(m["pr_curve"] is None for m in runs.values()):
            raise UserError("a run with no evaluated query has no curves to plot")
        plot_curves(runs, plot, plot.with_name(f"{plot.stem}-precision_at_k{plot.suffix or '.png'}"))
    rows = []
    for name, m in runs.items():
        k = m["k"]
        rows.append({"run": name, "method": m.get("method"), "bits": m.get("bits"), "k": k,
                     "queries": m["evaluated_queries"], "mAP": m["mAP"], "mAP@k": m[f"mAP@{k}"],
                     "precision@k": m[f"precision@{k}"], "tie-aware mAP": m["tie_aware"]["mAP"],
                     "precision@radius2": m["precision@radius2"]})
    return rows
