"""Metrics as people read them: a run's headline lines (``hashkit query``), the row of a run in a
comparison table (``hashkit compare``, ``hashkit inspect``), and the table itself."""

from __future__ import annotations

from pathlib import Path

from hashkit.hashing.errors import UserError


def metrics_lines(m: dict, database: int) -> list[str]:
    """The headline metrics of one evaluated run (metrics.json contents) over ``database`` codes."""
    lines = [f"evaluated queries: {m['evaluated_queries']} of {m['queries']} (ground truth: {m['ground_truth']})"]
    if not m["evaluated_queries"]:
        return lines + ["no query has a relevant database item: no means to report"]
    k, tie_aware, collapse = m["k"], m["tie_aware"], m["collapse"]
    lines += [f"mAP: {m['mAP']:.4f}   mAP@{k}: {m[f'mAP@{k}']:.4f}   precision@{k}: {m[f'precision@{k}']:.4f}   "
              f"recall@{k}: {m[f'recall@{k}']:.4f}",
              f"tie-aware mAP: {tie_aware['mAP']:.4f}   tie-aware mAP@{k}: {tie_aware[f'mAP@{k}']:.4f}   "
              f"tie-aware precision@{k}: {tie_aware[f'precision@{k}']:.4f}",
              f"precision within radius 2: {m['precision@radius2']:.4f}   distinct codes: "
              f"{collapse['distinct_codes']} of {database}   median nearest bucket: "
              f"{collapse['median_nearest_bucket']:g} rows"]
    if "wmAP" in m:  # multi-label ground truth
        lines.append(f"NDCG@{k}: {m[f'NDCG@{k}']:.4f}   ACG@{k}: {m[f'ACG@{k}']:.4f}   wmAP: {m['wmAP']:.4f}")
    return lines


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


def format_table(rows: list[dict]) -> list[str]:
    """Rows of equal keys as an aligned text table (None as '-')."""
    columns = list(rows[0])
    cells = [list(columns)] + [["-" if r[c] is None else f"{r[c]:.4f}" if isinstance(r[c], float)
                                        else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
