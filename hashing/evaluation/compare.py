"""``hashkit compare``: several evaluated runs (metrics.json files) side by side."""

from __future__ import annotations

import json
from pathlib import Path

from hashkit.hashing.errors import UserError
from hashkit.hashing.files.outputs import output_file

from .summaries import metrics_row


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
