"""Pictures: PNG files written and read with Pillow, image grids, scatter plots of toy samples
against the true density, and a run's training curves drawn with Matplotlib (its object API on
the Agg canvas: no display, no global pyplot state, safe in any thread)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._files import atomic_write


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 image ``(H, W)`` (grey), ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA) as a PNG
    file (Pillow), atomically."""
    from PIL import Image

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)) or 0 in img.shape:
        raise ValueError(f"image: expected uint8 (H, W), (H, W, 3) or (H, W, 4), got {img.dtype} {img.shape}")
    with atomic_write(Path(path)) as f:
        Image.fromarray(np.ascontiguousarray(img)).save(f, format="PNG")


def write_gif(path: str | os.PathLike[str], frames: Sequence[np.ndarray], frame_ms: int = 100) -> None:
    """Write uint8 frames (each ``(H, W)`` or ``(H, W, 3)``, one size) as a looping animated GIF
    (Pillow), atomically."""
    from PIL import Image

    if not frames or any(np.asarray(f).dtype != np.uint8 or np.shape(f) != np.shape(frames[0]) for f in frames):
        raise ValueError("frames: expected one or more uint8 images of one shape")
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    with atomic_write(Path(path)) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)


#: The statistics the curves draw, by panel: (title, [(key, label)]).
CURVE_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("losses", (("d_loss", "D loss"), ("g_loss", "G loss"))),
    ("discriminator outputs", (("d_x", "D(x)"), ("d_g_z", "D(G(z))"))),
    ("discriminator accuracy", (("d_acc_real", "on real"), ("d_acc_fake", "on generated"))),
)
#: Epoch-row keys that are bookkeeping, not metrics.
_NOT_METRICS = {"kind", "epoch", "steps", "seconds", "best_epoch", "batch", "warnings"}


def _figure_to_array(fig: Any) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def curves(epoch_rows: Sequence[dict[str, Any]], step_rows: Sequence[dict[str, Any]], title: str = "") -> np.ndarray:
    """A run's training curves as an RGB picture: losses, D(x) and D(G(z)), the discriminator's
    accuracy (step rows as thin lines, epoch means as dots, against epochs), and one panel per
    evaluated metric of the epoch rows (``val_parzen``, ``modes_covered``, ``fid``, ...)."""
    from matplotlib.figure import Figure

    metrics = sorted({k for r in epoch_rows for k, v in r.items()
                      if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
                      and not any(k == key for _, keys in CURVE_PANELS for key, _ in keys)
                      and not k.endswith(("_stderr", "_total"))})
    panels = [p for p in CURVE_PANELS if any(k in r for r in [*epoch_rows, *step_rows] for k, _ in p[1])]
    count = len(panels) + len(metrics)
    if count == 0:
        raise ValueError("epoch_rows: no statistics to draw (an empty or foreign log)")
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=90)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.9, wspace=0.25, hspace=0.55)
    batches = {r["epoch"]: r["batch"] for r in step_rows if "batch" in r}
    per_epoch = max(batches.values(), default=1) or 1

    def x_of(r: dict[str, Any]) -> float:  # a step row's position in epochs
        return r["epoch"] - 1 + r.get("batch", per_epoch) / per_epoch

    for i, (name, keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for j, (key, label) in enumerate(keys):
            colour = f"C{j}"
            pts = [(x_of(r), r[key]) for r in step_rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), color=colour, linewidth=0.7, alpha=0.45)
            ep = [(r["epoch"], r[key]) for r in epoch_rows if isinstance(r.get(key), (int, float))]
            if ep:
                ax.plot(*zip(*ep), "o-", color=colour, markersize=3, linewidth=1.2, label=f"{label} (epoch mean)")
            elif pts:
                ax.plot([], [], color=colour, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, len(panels) + i + 1)
        ep = [(r["epoch"], r[key]) for r in epoch_rows if isinstance(r.get(key), (int, float))]
        ax.plot(*zip(*ep), "o-", color="C2", markersize=3)
        best = [r["best_epoch"] for r in epoch_rows if "best_epoch" in r]
        if best:
            ax.axvline(best[-1], color="C3", linestyle=":", linewidth=1, label=f"best epoch {best[-1]}")
            ax.legend(fontsize=7)
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _figure_to_array(fig)


#: The separators between a grid's images: mid grey, visible against black and white digits.
GRID_SEPARATOR = 0.5


def image_grid(images: np.ndarray, columns: int = 10, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images ``(N, H, W)``, ``(N, 1, H, W)`` (grey) or ``(N, 3, H, W)`` (RGB) with values in
    [0, 1] into one uint8 picture, ``(H', W')`` or ``(H', W', 3)`` (separated by mid-grey lines)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if not ((x.ndim == 3 or (x.ndim == 4 and x.shape[1] == 3)) and len(x)):
        raise ValueError(f"images: expected (N, H, W), (N, 1, H, W) or (N, 3, H, W), got {np.shape(images)}")
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    n, h, w = x.shape[:3]
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *x.shape[3:]), GRID_SEPARATOR, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    canvas = np.repeat(np.repeat(np.clip(canvas, 0, 1), scale, axis=0), scale, axis=1)
    return (canvas * 255 + 0.5).astype(np.uint8)


#: Colours of the toy pictures (RGB): generated samples, the true density's discs and curve, its
#: centres, and the histogram's bars.
SAMPLE_RGB, TRUE_RGB, CENTRE_RGB, BAR_RGB = (20, 40, 160), (240, 140, 20), (200, 60, 0), (40, 70, 200)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def scatter(samples: np.ndarray, means: np.ndarray, sigma: float, title: str = "",
            labels: np.ndarray | None = None, size: int = 600) -> np.ndarray:
    """An RGB picture (``size`` pixels square) of generated 2-D points over the true mixture
    (3-sigma discs, centres marked), with axes, a title and a legend; points coloured by class when
    ``labels`` are given (a conditional model). For 1-D data: a histogram of the samples (a density
    over all of them, even those off the plot) against the true density."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    s = np.asarray(samples, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.09, top=0.94)  # fixed margins: a layout engine costs more than the plot
    ax = fig.add_subplot()
    if m.shape[1] == 1:
        lo, hi = m.min() - 6 * sigma, m.max() + 6 * sigma
        bins = np.linspace(lo, hi, 121)
        width = bins[1] - bins[0]
        counts, _ = np.histogram(s[:, 0], bins=bins)
        ax.bar(bins[:-1], counts / (max(len(s), 1) * width), width=width, align="edge", color=_hex(BAR_RGB),
               label=f"generated ({len(s)} samples)")
        grid = np.linspace(lo, hi, 600)
        true = np.mean([np.exp(-((grid - mu) ** 2) / (2 * sigma**2)) for mu in m[:, 0]], axis=0) / (sigma * np.sqrt(2 * np.pi))
        ax.fill_between(grid, true, true * 0.97, color=_hex(TRUE_RGB), linewidth=0, label="true density")
        ax.plot(grid, true, color=_hex(TRUE_RGB), linewidth=2.5)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
    else:
        span = np.abs(m).max() + max(0.25 * np.abs(m).max(), 12 * sigma)
        for i, c in enumerate(m):
            ax.add_patch(Circle(tuple(c), 3 * sigma, color=_hex(TRUE_RGB), alpha=0.45, linewidth=0,
                                label="true modes (3 sigma)" if i == 0 else None))
        if labels is None:
            ax.scatter(s[:, 0], s[:, 1], s=4, color=_hex(SAMPLE_RGB), linewidths=0, label=f"generated ({len(s)})")
        else:
            lab = np.asarray(labels)
            for k in np.unique(lab):
                pts = s[lab == k]
                ax.scatter(pts[:, 0], pts[:, 1], s=4, color=f"C{int(k) % 10}", linewidths=0, label=f"class {int(k)}")
        ax.scatter(m[:, 0], m[:, 1], marker="x", s=30, color=_hex(CENTRE_RGB), label="mode centres")
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
        ax.set_aspect("equal")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    ax.grid(alpha=0.25)
    ax.legend(loc="upper right", fontsize=7, markerscale=2)
    if title:
        ax.set_title(title, fontsize=10)
    return _figure_to_array(fig)


def label_columns(grid: np.ndarray, columns: int, labels: Sequence[str], title: str = "") -> np.ndarray:
    """A grid picture (from :func:`image_grid`) with each of its ``columns`` named (a conditional
    model's classes) and a title, as an RGB picture."""
    from matplotlib.figure import Figure

    h, w = grid.shape[:2]
    fig = Figure(figsize=(w / 100 + 0.3, h / 100 + 0.7), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([(i + 0.5) * w / columns for i in range(columns)], labels=list(labels)[:columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([])
    if title:
        ax.set_xlabel(title, fontsize=9)
    return _figure_to_array(fig)
