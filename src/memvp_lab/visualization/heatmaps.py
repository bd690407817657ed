"""Heat maps of visual-memory retrieval over the image (paper Fig. 5) and the blocked cells of a
distortion (paper Fig. 6), drawn on matplotlib's Agg canvas (no display needed).

One figure per question: the image, then one panel per chosen token with the token's retrieval
weights over the visual grid overlaid (each panel scaled to its own range), then, when slots were
blocked, the image with the blocked cells marked. With per-layer maps, one more row per FFN.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PANEL_INCHES = 2.2  # width and height of one panel
TITLE_INCHES = 0.9  # room for the question, the answers and the panel titles
DPI = 100


def figure_inches(columns: int, rows: int) -> tuple[float, float]:
    """(width, height) of a figure with ``columns`` x ``rows`` panels."""
    return columns * PANEL_INCHES, rows * PANEL_INCHES + TITLE_INCHES


def _short(site: str) -> str:
    """``model.layers.3.mlp`` -> ``layers.3.mlp``: the part that tells the layers apart."""
    parts = site.split(".")
    return ".".join(parts[-3:]) if len(parts) > 3 else site


def _show(ax, image: np.ndarray | None, grid: tuple[int, int]) -> None:
    rows, cols = grid
    if image is not None:
        ax.imshow(image, extent=(0, cols, rows, 0), interpolation="bilinear")
    else:
        ax.set_facecolor("0.85")
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax, heat: np.ndarray, image: np.ndarray | None) -> None:
    rows, cols = heat.shape
    _show(ax, image, (rows, cols))
    lo, hi = float(heat.min()), float(heat.max())
    ax.imshow(
        heat,
        extent=(0, cols, rows, 0),
        cmap="jet",
        alpha=0.5 if image is not None else 1.0,
        vmin=lo,
        vmax=hi if hi > lo else lo + 1e-12,
        interpolation="nearest",
    )
    ax.text(
        0.02,
        0.02,
        f"{lo:.3g} .. {hi:.3g}",
        transform=ax.transAxes,
        fontsize=6,
        color="white",
        bbox=dict(facecolor="black", alpha=0.5, pad=1, linewidth=0),
    )


def draw_question(
    path: str | Path,
    *,
    image: np.ndarray | None,
    question: str,
    answer: str,
    maps: np.ndarray,
    labels: Sequence[str],
    layer_maps: np.ndarray | None = None,
    sites: Sequence[str] = (),
    blocked: Sequence[int] = (),
    answer_blocked: str | None = None,
    reference: str | None = None,
) -> Path:
    """Writes one question's PNG; returns its path.

    Args:
        image: (H, W, 3) in [0, 1] as the encoder saw it, or None (heat maps on grey).
        maps: (tokens, rows, columns) retrieval weights averaged over the FFNs.
        labels: the tokens' texts.
        layer_maps: (sites, tokens, rows, columns) for one more row per FFN, or None.
        sites: the FFNs' names (row labels of ``layer_maps``).
        blocked: visual slots (row-major grid indices) that were blocked, most retrieved first.
        answer_blocked: the answer with them blocked.
        reference: the dataset's answer, if any.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    maps = np.asarray(maps)
    tokens, rows, cols = maps.shape
    layer_rows = 0 if layer_maps is None else len(layer_maps)
    columns = 1 + tokens + (1 if blocked else 0)
    fig = Figure(figsize=figure_inches(columns, 1 + layer_rows), dpi=DPI)
    FigureCanvasAgg(fig)
    top = 1 - TITLE_INCHES / figure_inches(columns, 1 + layer_rows)[1]
    axes = fig.subplots(
        1 + layer_rows,
        columns,
        squeeze=False,
        gridspec_kw=dict(left=0.02, right=0.98, bottom=0.02, top=top, wspace=0.08, hspace=0.25),
    )
    title = f"Q: {question}\nanswer: {answer!r}" + (f"   (reference: {reference!r})" if reference else "")
    if blocked:
        title += f"   |   {len(blocked)} most-retrieved cells blocked: {answer_blocked!r}"
    fig.suptitle(
        "\n".join(textwrap.fill(line, width=int(columns * 22)) for line in title.split("\n")),
        fontsize=8,
        y=0.995,
        va="top",
    )

    _show(axes[0, 0], image, (rows, cols))
    axes[0, 0].set_title("image", fontsize=8)
    for t in range(tokens):
        _overlay(axes[0, t + 1], maps[t], image)
        axes[0, t + 1].set_title(f"'{labels[t]}'" + (" (mean)" if layer_rows else ""), fontsize=8)
    if blocked:
        ax = axes[0, -1]
        _show(ax, image, (rows, cols))
        for rank, slot in enumerate(blocked):
            r, c = divmod(int(slot), cols)
            ax.add_patch(
                Rectangle((c, r), 1, 1, fill=True, facecolor="black", alpha=0.35, edgecolor="red", linewidth=1.2)
            )
            ax.text(c + 0.5, r + 0.5, str(rank + 1), ha="center", va="center", fontsize=6, color="white")
        ax.set_title(f"blocked: {answer_blocked!r}", fontsize=8)
    for s in range(layer_rows):
        axes[s + 1, 0].axis("off")
        axes[s + 1, 0].text(
            0.5,
            0.5,
            _short(sites[s]) if s < len(sites) else f"FFN {s}",
            ha="center",
            va="center",
            fontsize=8,
            transform=axes[s + 1, 0].transAxes,
        )
        for t in range(tokens):
            _overlay(axes[s + 1, t + 1], np.asarray(layer_maps[s, t]), image)
        if blocked:
            axes[s + 1, -1].axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
