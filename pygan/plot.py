"""Pictures without a plotting library: a small PNG writer, image grids, and scatter plots of toy
samples against the true density."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._files import make_temp


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a uint8 image ``(H, W)`` (grey) or ``(H, W, 3)`` (RGB) as a PNG file, atomically."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or 0 in img.shape:
        raise ValueError(f"image: expected uint8 (H, W) or (H, W, 3), got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    rows = np.ascontiguousarray(img).reshape(h, -1)
    raw = b"".join(b"\0" + rows[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(p)
    with os.fdopen(fd, "wb") as f:
        f.write(png)
    os.replace(tmp, p)


def image_grid(images: np.ndarray, columns: int = 10, pad: int = 2, scale: int = 2) -> np.ndarray:
    """Tile images ``(N, H, W)`` or ``(N, 1, H, W)`` with values in [0, 1] into one uint8 picture."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"images: expected (N, H, W) or (N, 1, H, W), got {np.shape(images)}")
    n, h, w = x.shape
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    canvas = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    canvas = np.kron(np.clip(canvas, 0, 1), np.ones((scale, scale)))
    return (canvas * 255 + 0.5).astype(np.uint8)


def scatter(samples: np.ndarray, means: np.ndarray, sigma: float, size: int = 512) -> np.ndarray:
    """Generated 2-D points (dark blue) over the true mixture (3-sigma discs in orange, centres
    marked), or for 1-D data a histogram of the samples (blue) against the true density (orange)."""
    s = np.asarray(samples, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    if m.shape[1] == 1:
        lo, hi = m.min() - 6 * sigma, m.max() + 6 * sigma
        bins = np.linspace(lo, hi, size // 4 + 1)
        counts, _ = np.histogram(s[:, 0], bins=bins)
        hist = counts / (max(len(s), 1) * (bins[1] - bins[0]))  # a density over all samples, even those off the plot
        centres = (bins[:-1] + bins[1:]) / 2
        true = np.mean([np.exp(-((centres - mu) ** 2) / (2 * sigma**2)) for mu in m[:, 0]], axis=0) / (sigma * np.sqrt(2 * np.pi))
        top = max(hist.max(initial=0), true.max()) * 1.1
        for i in range(len(centres)):
            x0 = i * 4
            hpx = int(size * min(hist[i] / top, 1.0))
            img[size - hpx :, x0 : x0 + 3] = (40, 70, 200)
            tpx = min(size - 1, int(size * true[i] / top))
            img[max(size - tpx - 2, 0) : size - tpx + 1, x0 : x0 + 4] = (240, 140, 20)
        return img
    span = np.abs(m).max() + max(0.25 * np.abs(m).max(), 12 * sigma)

    def to_px(p: np.ndarray) -> np.ndarray:
        return np.round((p + span) / (2 * span) * (size - 1)).astype(np.int64)

    yy, xx = np.mgrid[0:size, 0:size]
    radius = 3 * sigma / (2 * span) * (size - 1)
    for c in to_px(m):
        disc = (xx - c[0]) ** 2 + (yy - (size - 1 - c[1])) ** 2 <= max(radius, 2.0) ** 2
        img[disc] = (250, 200, 140)
    px = to_px(s)
    inside = (px >= 0).all(axis=1) & (px < size).all(axis=1)
    for dy in (0, 1):
        for dx in (0, 1):
            img[np.clip(size - 1 - px[inside, 1] + dy, 0, size - 1), np.clip(px[inside, 0] + dx, 0, size - 1)] = (20, 40, 160)
    for c in to_px(m):
        img[np.clip(size - 1 - c[1], 0, size - 1), np.clip(c[0] - 3, 0, size) : np.clip(c[0] + 4, 0, size)] = (200, 60, 0)
    return img
