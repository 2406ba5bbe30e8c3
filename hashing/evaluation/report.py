"""Pictures of query results: precision-recall and precision@k curves (PNG) and an HTML page
with a grid of sample queries and their top results as thumbnails, viewable offline."""

from __future__ import annotations

import html
import io
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from hashkit.hashing.files.images import read_rgb  # noqa: E402
from hashkit.hashing.files.outputs import output_folder, write_bytes  # noqa: E402

THUMB_SIZE = 112


def plot_curves(runs: dict[str, dict], pr_path: Path, precision_path: Path) -> None:
    """The precision-recall curves (by Hamming radius) and precision@k curves of every run
    (name -> metrics.json contents), each on one plot."""
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for name, metrics in runs.items():
        curve = metrics["pr_curve"]
        points = [(r, p) for r, p in zip(curve["recall"], curve["precision"]) if p is not None]
        axes.plot(*zip(*points), marker=".", label=name)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
             title="Precision-recall (Hamming radius 0 to bits)")
    _finish(figure, axes, pr_path)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for name, metrics in runs.items():
        curve = metrics["precision_curve"]
        axes.plot(curve["k"], curve["precision"], marker=".", label=name)
    axes.set(xlabel="k (log scale)", ylabel="precision@k", xscale="log", ylim=(0, 1.02), title="Precision@k")
    _finish(figure, axes, precision_path)


def _finish(figure, axes, path: Path) -> None:
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=120)
    plt.close(figure)
    write_bytes(path, image.getvalue())


def write_report(folder: Path, metrics: dict | None, query_paths: list[str], result_paths: list[list[str]],
                 relevance: list[list[bool]] | None, title: str) -> Path:
    """``folder``/index.html: the curves (when ``metrics``) and one row per sample query: its
    image, then its results in rank order, relevant ones framed green and others red when
    ``relevance`` is known. Thumbnails go to ``folder``/thumbs. Returns the page's path."""
    output_folder(folder / "thumbs")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}td{padding:2px;text-align:center;font-size:11px}"
             "img.t{border:4px solid #ccc}img.yes{border-color:#2a2}img.no{border-color:#c22}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if metrics:
        plot_curves({title: metrics}, folder / "pr_curve.png", folder / "precision_at_k.png")
        summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in metrics
                            if key.startswith(("mAP", "precision@")) and isinstance(metrics[key], float))
        parts += [f"<p>{html.escape(summary)}</p>",
                  "<p><img src='pr_curve.png' alt='precision-recall curve'>"
                  "<img src='precision_at_k.png' alt='precision at k curve'></p>"]
    parts.append("<table><tr><th>query</th><th colspan='99'>results, nearest first</th></tr>")
    for q, (query_path, results) in enumerate(zip(query_paths, result_paths)):
        cells = [_cell(folder, query_path, f"q{q}", "t", "query")]
        for rank, path in enumerate(results):
            known = relevance[q][rank] if relevance is not None else None
            style = "t" if known is None else f"t {'yes' if known else 'no'}"
            cells.append(_cell(folder, path, f"q{q}-r{rank}", style, f"#{rank + 1}"))
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></body></html>")
    page = folder / "index.html"
    write_bytes(page, "\n".join(parts).encode("utf-8", "replace"))  # a name's undecodable bytes shown as "?"
    return page


def _cell(folder: Path, image_path: str, name: str, style: str, caption: str) -> str:
    thumb = _thumbnail(image_path, folder / "thumbs" / f"{name}.jpg")
    label = html.escape(f"{caption}: {Path(image_path).name}")
    image = f"<img class='{style}' src='thumbs/{thumb.name}' alt='{label}' title='{label}'>" if thumb else "?"
    return f"<td>{image}<br>{html.escape(caption)}</td>"


def _thumbnail(image_path: str, target: Path) -> Path | None:
    image = read_rgb(Path(image_path))
    if image is None:
        return None
    scale = THUMB_SIZE / max(image.shape[:2])
    small = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    write_bytes(target, cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))[1].tobytes())
    return target
