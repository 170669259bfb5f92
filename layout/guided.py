"""Upsampling a low-resolution chroma layer to the full-resolution page, with its edges moved onto the lines.

Two steps, both driven by the page's own L* (the guide):

1. Optionally (``radius > 0``) the fast guided filter of He and Sun (2015; He, Sun and Tang 2013): the output is
   locally ``q = a * I + b`` with ``a, b`` fitted over box windows on a subsampled grid and interpolated at
   full resolution, so chroma edges follow edges of *tone*. Off by default: on manga line art both sides of
   a line are the same white, a box window cannot tell them apart, and the filter smears colour across the
   line over its whole window. Measured (``benchmarks/bench_compose.py --quality``: chroma downsampled 2-8x
   and upsampled back) at radius 8: mean |da*b*| 1.6-6x that of plain bilinear on real colour manga turned
   B/W, up to 20x on synthetic line art.
2. Line snapping (``snap`` page px): a paper pixel closer than ``snap`` to a dark line takes its chroma from
   ``snap`` px away from the line's edge, on its own side (along the gradient of the distance to the ink). A
   chroma edge that the colorizer put a little off the line, or blurred over it, ends on the line instead of
   leaking a halo onto the next region. Lines, screentones and lettering themselves are never touched: only
   chroma moves, and the page keeps its own L*.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

LINE_LEVEL = 50.0  # L* below which a page pixel is ink (line, fill, screentone dot): gray ~119 of 255


def grid_shape(height: int, width: int, radius: int = 8) -> tuple[int, int]:
    """The subsampled grid ``(h, w)`` on which the guided filter fits its coefficients.

    One cell is ``radius / 4`` page px (He and Sun's s = r/4), never finer than the page.
    """
    step = max(1.0, radius / 4.0)
    return max(1, int(math.ceil(height / step))), max(1, int(math.ceil(width / step)))


def _box(img: np.ndarray, r: int) -> np.ndarray:
    # normalised mean over a (2r+1)^2 window; BORDER_REFLECT keeps edge windows unbiased
    return cv2.boxFilter(img, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(chroma: np.ndarray, guide: np.ndarray, *, radius: int = 8,
                        eps: float = 1e-3) -> np.ndarray:
    """Fit the fast guided filter; returns float32 (gh, gw, 4): ``a`` (2 channels) then ``b`` on :func:`grid_shape`.

    chroma: float32 (h, w, 2) at any low resolution; guide: float32 (H, W), L* 0..100. The filtered chroma at
    full resolution is ``a * guide / 100 + b`` with ``a, b`` upsampled bilinearly. eps is relative to a guide
    scaled to 0..1, as in the paper.
    """
    H, W = guide.shape
    gh, gw = grid_shape(H, W, radius)
    p = chroma.astype(np.float32, copy=False)
    if p.shape[:2] != (gh, gw):
        shrink = p.shape[0] > gh and p.shape[1] > gw
        p = cv2.resize(p, (gw, gh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    I = cv2.resize(guide.astype(np.float32, copy=False), (gw, gh), interpolation=cv2.INTER_AREA) * np.float32(0.01)
    r = max(1, int(round(radius * gw / W)))
    mean_I = _box(I, r)
    var_I = _box(I * I, r) - mean_I * mean_I
    mean_p = _box(p, r)
    cov_Ip = _box(p * I[..., None], r) - mean_p * mean_I[..., None]
    a = cov_Ip / (np.maximum(var_I, 0.0) + np.float32(eps))[..., None]
    b = mean_p - a * mean_I[..., None]
    return np.concatenate([_box(a, r), _box(b, r)], axis=2)


def snap_offsets(guide_rows: np.ndarray, distance: float, *, line_level: float = LINE_LEVEL,
                 rows: slice | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Displacements (dx, dy), float32 page px, that move each paper pixel's chroma sample ``distance`` px
    away from the nearest line, or None when no pixel moves.

    guide_rows: float32 (n, W) L* rows; rows: the sub-range of them to return (the others are a halo of at
    least ``distance + 3`` rows that lets bands of a page be done one at a time).
    """
    paper = (guide_rows >= line_level).astype(np.uint8)
    rows = rows or slice(0, guide_rows.shape[0])
    if paper[rows].all() or not paper[rows].any():
        return None
    d = cv2.distanceTransform(paper, cv2.DIST_L2, cv2.DIST_MASK_5)
    np.minimum(d, np.float32(distance + 2.0), out=d)
    gx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)[rows]
    gy = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)[rows]
    # how far short of `distance` from the ink's edge a paper pixel is (its centre is d - 0.5 from the edge);
    # ink itself does not move
    pull = np.float32(distance + 0.5) - d[rows]
    np.maximum(pull, 0.0, out=pull)
    pull *= paper[rows]
    return gx * pull, gy * pull


def guided_upsample(chroma: np.ndarray, guide: np.ndarray, *, radius: int = 0, eps: float = 1e-3,
                    snap: float | None = None, line_level: float = LINE_LEVEL) -> np.ndarray:
    """Upsample chroma float32 (h, w, 2) to the guide's size, with its edges moved onto the page's lines.

    guide: float32 (H, W), L* of the full-resolution page (0..100). radius, eps: the fast guided filter's
    window radius (page px) and regularisation (guide scaled to 0..1); radius 0 (default, see the module
    notes) upsamples bilinearly instead. snap: page px over which chroma is pulled off the lines; None means
    half the upsampling factor (the half low-res pixel a sharp chroma edge can sit off its line), 0 turns it
    off. line_level: L* below which a pixel is ink.

    Returns float32 (H, W, 2), within the input's per-channel range. Done in bands of rows, so a 24 MP page
    needs no full-size temporaries besides the result.
    """
    if chroma.ndim != 3 or chroma.shape[2] != 2 or chroma.shape[0] < 1 or chroma.shape[1] < 1:
        raise ValueError(f"chroma must be a non-empty (h, w, 2) array, got shape {chroma.shape}")
    if guide.ndim != 2 or guide.size == 0:
        raise ValueError(f"guide must be a non-empty (H, W) array, got shape {guide.shape}")
    if radius < 0 or eps <= 0:
        raise ValueError(f"need radius >= 0 and eps > 0, got radius={radius}, eps={eps}")
    chroma = np.ascontiguousarray(chroma, dtype=np.float32)
    guide = np.asarray(guide, dtype=np.float32)
    H, W = guide.shape
    h, w = chroma.shape[:2]
    if snap is None:
        snap = 0.5 * max(H / h, W / w)
    snap = float(snap) if snap >= 1.0 else 0.0
    halo = int(math.ceil(snap)) + 3 if snap else 0

    if radius > 0:  # the guided filter's output is the image that snapping samples from, at full resolution
        source = guided_coefficients(chroma, guide, radius=radius, eps=eps)
    else:
        source = chroma
    sh, sw = source.shape[:2]
    kx, ky = sw / W, sh / H
    xs = ((np.arange(W, dtype=np.float64) + 0.5) * kx - 0.5).astype(np.float32)

    if radius == 0 and not snap:
        return cv2.resize(source, (W, H), interpolation=cv2.INTER_LINEAR)
    out = np.empty((H, W, 2), np.float32)
    band = max(8, (1 << 18) // W)
    for y0 in range(0, H, band):
        y1 = min(H, y0 + band)
        e0, e1 = max(0, y0 - halo), min(H, y1 + halo)
        offsets = snap_offsets(guide[e0:e1], snap, line_level=line_level, rows=slice(y0 - e0, y1 - e0)) \
            if snap else None
        if radius > 0:
            # q = a * I + b on the band and its halo, then (optionally) resampled along the offsets
            ys = ((np.arange(e0, e1, dtype=np.float64) + 0.5) * ky - 0.5).astype(np.float32)
            mx = np.broadcast_to(xs[None, :], (e1 - e0, W))
            my = np.broadcast_to(ys[:, None], (e1 - e0, W))
            coef = cv2.remap(source, np.ascontiguousarray(mx), np.ascontiguousarray(my), cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
            q = coef[..., 2:] + coef[..., :2] * (guide[e0:e1] * np.float32(0.01))[..., None]
            if offsets is None:
                out[y0:y1] = q[y0 - e0:y1 - e0]
                continue
            dx, dy = offsets
            mx = np.arange(W, dtype=np.float32)[None, :] + dx
            my = np.arange(y0 - e0, y1 - e0, dtype=np.float32)[:, None] + dy
            out[y0:y1] = cv2.remap(np.ascontiguousarray(q), mx, my, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        else:
            ys = ((np.arange(y0, y1, dtype=np.float64) + 0.5) * ky - 0.5).astype(np.float32)
            if offsets is None:
                mx = np.broadcast_to(xs[None, :], (y1 - y0, W))
                my = np.broadcast_to(ys[:, None], (y1 - y0, W))
            else:
                dx, dy = offsets
                mx = xs[None, :] + dx * np.float32(kx)
                my = ys[:, None] + dy * np.float32(ky)
            out[y0:y1] = cv2.remap(source, np.ascontiguousarray(mx), np.ascontiguousarray(my),
                                   cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if radius > 0:  # the linear model can overshoot; never invent stronger colour than was asked for
        lo = chroma.reshape(-1, 2).min(axis=0)
        hi = chroma.reshape(-1, 2).max(axis=0)
        np.clip(out, lo, hi, out=out)
    return out
