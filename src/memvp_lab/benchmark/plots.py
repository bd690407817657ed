"""One PNG per study, drawn on matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

from pathlib import Path


def _figure(width: float, height: float, panels: int = 1):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    axes = [figure.add_subplot(1, panels, i + 1) for i in range(panels)]
    return figure, axes


def _save(figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return path


def compare(result: dict, path: Path) -> Path:
    """Train time, inference time and training memory of each method, relative to the reference,
    with the paper's ratios as markers where it gives them."""
    keys = (
        ("train_s_per_step", "training time"),
        ("inference_s_per_batch", "inference time"),
        ("train_memory_mb", "training memory"),
    )
    methods = list(result["methods"])
    figure, (ax,) = _figure(1.6 + 1.3 * len(methods), 3.4)
    width = 0.8 / len(keys)
    for j, (key, label) in enumerate(keys):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(methods))]
        ratios = [result["ratios_to_reference"][m].get(key, 0.0) for m in methods]
        ax.bar(xs, ratios, width, label=label)
        for x, m in zip(xs, methods):
            paper = (result.get("paper_ratios") or {}).get(m, {}).get(key)
            if paper is not None:
                ax.plot([x], [paper], marker="_", markersize=14, color="black")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_ylabel(f"relative to {result['reference']}")
    ax.set_title(f"{result['study']} (black marks: paper)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(figure, path)


def flops_table(result: dict, path: Path) -> Path:
    """Counted LM GFLOPs against the paper's, one point per cell, with the tolerance band."""
    figure, (ax,) = _figure(4.6, 4.2)
    top = 0.0
    for row, by_task in result["cells"].items():
        points = [(c["paper"], c["measured"]) for c in by_task.values() if c["paper"] is not None]
        if points:
            marker = "*" if row.endswith("/memvp") else "o"
            ax.scatter(*zip(*points), marker=marker, s=28, label=row)
            top = max(top, *(max(p) for p in points))
    top *= 1.08
    tol = result["tolerance"]
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.fill_between([0, top], [0, top * (1 - tol)], [0, top * (1 + tol)], color="grey", alpha=0.15)
    ax.set_xlabel("paper GFLOPs")
    ax.set_ylabel("counted GFLOPs")
    ax.set_title(f"{result['study']}: band = ±{100 * tol:.0f}%", fontsize=9)
    ax.legend(fontsize=5, ncol=2)
    return _save(figure, path)


def text_length(result: dict, path: Path) -> Path:
    """Seconds per training step and per inference batch against text length, with and without
    the input-space visual tokens."""
    figure, axes = _figure(8.0, 3.4, panels=2)
    xs = [p["text_tokens"] for p in result["points"]]
    for ax, what, label in zip(axes, ("train", "inference"), ("training step", "inference batch")):
        ax.plot(
            xs,
            [p[f"{what}_s_with"] for p in result["points"]],
            marker="o",
            label=f"+{result['visual_tokens']} visual tokens",
        )
        ax.plot(xs, [p[f"{what}_s_without"] for p in result["points"]], marker="o", label="text only")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("text tokens")
        ax.set_ylabel(f"s per {label}")
        ax.legend(fontsize=7)
    figure.suptitle(f"{result['study']}: {result['method']}", fontsize=9)
    return _save(figure, path)


def overhead(result: dict, path: Path) -> Path:
    """MemVP / text-only ratios per backbone: FLOPs by the formula, step times measured."""
    names = list(result["cases"])
    series = (
        ("lm_flops_ratio_analytic", "LM FLOPs (Eq. 13-15)"),
        ("model_flops_ratio_counted", "FLOPs with the projector"),
        ("train_ratio", "train step time"),
        ("inference_ratio", "inference time"),
    )
    figure, (ax,) = _figure(1.6 + 1.6 * len(names), 3.4)
    width = 0.8 / len(series)
    for j, (key, label) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, [result["cases"][n][key] for n in names], width, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("MemVP / text only")
    ax.set_ylim(bottom=0.8)
    ax.legend(fontsize=7)
    return _save(figure, path)


def prefix_cache(result: dict, path: Path) -> Path:
    """Training step time with and without the frozen-prefix cache, per case."""
    names = list(result["cases"])
    figure, (ax,) = _figure(1.6 + 1.4 * len(names), 3.4)
    width = 0.38
    for j, (key, label) in enumerate((("train_s_full", "every layer"), ("train_s_cached", "cached prefix"))):
        xs = [i + (j - 0.5) * width for i in range(len(names))]
        ax.bar(xs, [result["cases"][n][key] for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("train s / step")
    ax.legend(fontsize=7)
    return _save(figure, path)


def cost_scaling(result: dict, path: Path) -> Path:
    """Total GFLOPs per sample against the number of visual tokens, one panel per model shape,
    one colour per method, one line style per text length (log-log)."""
    shapes = list(dict.fromkeys(r["shape"] for r in result["rows"]))
    figure, axes = _figure(4.4 * len(shapes), 3.8, panels=len(shapes))
    styles = ["-", "--", ":", "-."]
    for ax, shape in zip(axes, shapes):
        rows = [r for r in result["rows"] if r["shape"] == shape]
        lengths = sorted({r["text_length"] for r in rows})
        for k, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
            for j, length in enumerate(lengths):
                points = sorted(
                    (r["visual_tokens"], r["total_gflops"])
                    for r in rows
                    if r["method"] == method and r["text_length"] == length
                )
                ax.plot(
                    *zip(*points),
                    styles[j % len(styles)],
                    color=f"C{k}",
                    marker="o",
                    markersize=3,
                    label=f"{method}" if j == 0 else None,
                )
        for j, length in enumerate(lengths):
            ax.plot([], [], styles[j % len(styles)], color="grey", label=f"L={length}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("visual tokens per image (m)")
        ax.set_ylabel("GFLOPs per sample (LM + per-image work)")
        ax.set_title(shape, fontsize=9)
        ax.legend(fontsize=6)
    return _save(figure, path)
