"""Rasterising panel outlines and building the soft weights that blend panels into a page.

Coordinates are page pixels (origin top-left); a pixel ``(i, j)`` of a mask sampled over a box is the point at
its centre. Boxes may be fractional here: the compositor samples boxes on coarser grids than the page.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

_SHIFT = 8  # fixed-point bits for cv2.fillPoly vertices


def _grid(box, shape) -> tuple[float, float, float, float, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box!r} is empty: need x0 < x1 and y0 < y1")
    if shape is None:
        h, w = int(round(y1 - y0)), int(round(x1 - x0))
    else:
        h, w = (int(v) for v in shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"mask shape must be positive, got {(h, w)}")
    return x0, y0, (x1 - x0) / w, (y1 - y0) / h, h, w


def polygon_mask(polygon: Polygon | MultiPolygon, box, *, shape: tuple[int, int] | None = None) -> np.ndarray:
    """bool (h, w): which pixels of ``box`` (page px, half-open ``(x0, y0, x1, y1)``) have their centre inside
    ``polygon`` (page px; holes respected).

    Without ``shape`` a pixel is one page pixel, (h, w) = the box size; with ``shape=(h, w)`` the box is
    sampled on an h x w grid (pixel ``(i, j)`` is the page point ``(x0 + (j + .5) * bw / w, y0 + (i + .5) * bh / h)``),
    which is how a panel's mask is made at the colorizer's working resolution.
    """
    x0, y0, sx, sy, h, w = _grid(box, shape)
    # cv2.fillPoly squashes the part of a polygon beyond the image onto its border pixels: draw with a margin
    pad = 4
    mask = np.zeros((h + 2 * pad, w + 2 * pad), np.uint8)
    if polygon.is_empty:
        return np.zeros((h, w), bool)
    scale = float(1 << _SHIFT)

    def ring_pts(ring):
        xy = np.asarray(ring.coords, np.float64)[:, :2]
        j = (xy[:, 0] - x0) / sx - 0.5 + pad
        i = (xy[:, 1] - y0) / sy - 0.5 + pad
        return np.round(np.column_stack([j, i]) * scale).astype(np.int32)

    bx0, by0, bx1, by1 = polygon.bounds
    reach = 1e6 * min(sx, sy)  # fixed-point vertices must fit in int32: cut far-away geometry first
    if min(bx0 - x0, by0 - y0, x0 + w * sx - bx1, y0 + h * sy - by1) < -reach:
        polygon = polygon.intersection(shapely.box(x0 - sx, y0 - sy, x0 + (w + 1) * sx, y0 + (h + 1) * sy))
        if polygon.is_empty:
            return np.zeros((h, w), bool)
    polys = [g for g in getattr(polygon, "geoms", [polygon]) if isinstance(g, Polygon)]
    rings = [[ring_pts(poly.exterior), [ring_pts(r) for r in poly.interiors]] for poly in polys]
    for outer, holes in rings:
        cv2.fillPoly(mask, [outer], 1, lineType=cv2.LINE_8, shift=_SHIFT)
        for hole in holes:
            cv2.fillPoly(mask, [hole], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    # cv2.fillPoly rounds outward by up to a pixel (holes too): decide every pixel within 3 of an edge exactly
    band = np.zeros_like(mask)
    all_rings = [outer for outer, _ in rings] + [hole for _, holes in rings for hole in holes]
    cv2.polylines(band, all_rings, True, 1, thickness=7, lineType=cv2.LINE_8, shift=_SHIFT)
    mask = mask[pad:pad + h, pad:pad + w]
    ii, jj = np.nonzero(band[pad:pad + h, pad:pad + w])
    if ii.size:
        px = x0 + (jj + 0.5) * sx
        py = y0 + (ii + 0.5) * sy
        shapely.prepare(polygon)
        mask[ii, jj] = shapely.contains_xy(polygon, px, py)
    return mask.astype(bool)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def inner_ramp(mask: np.ndarray, feather: float, *, open_sides: Sequence[bool] = (False,) * 4) -> np.ndarray:
    """float32 (h, w) in [0, 1]: 0 outside ``mask``, easing (smoothstep) to 1 at ``feather`` pixels inside it.

    open_sides (top, bottom, left, right): sides of the array where the mask continues beyond the array (the
    page border a panel bleeds over), so no fade starts there. Closed sides count as outside.
    """
    m = mask.astype(np.uint8)
    if feather <= 0:
        return m.astype(np.float32)
    if not m.any():
        return np.zeros(m.shape, np.float32)
    top, bottom, left, right = (0 if o else 1 for o in open_sides)
    padded = cv2.copyMakeBorder(m, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    if not (padded == 0).any():
        return np.ones(m.shape, np.float32)
    d = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_5)
    d = d[top:top + m.shape[0], left:left + m.shape[1]]
    # a pixel next to the outline is 1 px from the nearest outside centre but ~0.5 px from the outline
    return smoothstep((d - 0.5) / np.float32(feather)).astype(np.float32)


def outer_ramp(mask: np.ndarray, feather: float) -> np.ndarray:
    """float32 (h, w) in [0, 1]: 0 on ``mask``, easing to 1 at ``feather`` pixels outside it (a soft keep-out)."""
    inv = (~mask.astype(bool)).astype(np.uint8)
    if feather <= 0:
        return inv.astype(np.float32)
    if inv.all():
        return np.ones(mask.shape, np.float32)
    d = cv2.distanceTransform(inv, cv2.DIST_L2, cv2.DIST_MASK_5)
    return smoothstep((d - 0.5) / np.float32(feather)).astype(np.float32)


def grid_window(box, page_size: tuple[int, int], grid_shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The cells ``(c0, r0, c1, r1)`` of a grid laid over the page whose centres fall inside ``box`` (page px).

    page_size is (H, W) in page px; grid_shape (gh, gw) cells cover the whole page. None when no centre falls
    inside the box (a box off the page, or thinner than a cell).
    """
    H, W = page_size
    gh, gw = grid_shape
    sx, sy = W / gw, H / gh
    x0, y0, x1, y1 = box
    c0 = max(0, int(np.ceil(x0 / sx - 0.5)))
    r0 = max(0, int(np.ceil(y0 / sy - 0.5)))
    c1 = min(gw, int(np.ceil(x1 / sx - 0.5)))
    r1 = min(gh, int(np.ceil(y1 / sy - 0.5)))
    if c1 <= c0 or r1 <= r0:
        return None
    return c0, r0, c1, r1


def soft_panel_weights(polygon: Polygon, box, page_size: tuple[int, int], *, feather: float,
                       grid_shape: tuple[int, int] | None = None):
    """Blend weights of one panel over the page (or a grid over it).

    polygon: the panel outline, page px (may bleed past the page). box: page px, where the panel's chroma
    exists (its ColorizedPanel box). page_size: (H, W). grid_shape: (gh, gw) cells over the page, default one
    cell per page pixel. feather: page px over which the weight eases from 0 at the outline to 1 inside.

    Returns ``(window, weights)``: window ``(c0, r0, c1, r1)`` in grid cells and float32 weights of that
    window's shape, or ``None`` when the panel has no cell on the page. Weight fades at the outline and at box
    edges inside the page (no chroma beyond them), not at the page border, where a bleeding panel goes on.
    """
    H, W = page_size
    grid_shape = grid_shape or (H, W)
    win = grid_window(box, page_size, grid_shape)
    if win is None:
        return None
    c0, r0, c1, r1 = win
    gh, gw = grid_shape
    sx, sy = W / gw, H / gh
    # a window side is open only where it is the page border and the chroma box reaches (or passes) it
    bx0, by0, bx1, by1 = box
    open_sides = (r0 == 0 and by0 <= 0, r1 == gh and by1 >= H, c0 == 0 and bx0 <= 0, c1 == gw and bx1 >= W)
    if _is_rectangle(polygon):
        return win, _rectangle_ramp(polygon.bounds, box, win, (sx, sy), page_size, feather, open_sides)
    mask = polygon_mask(polygon, (c0 * sx, r0 * sy, c1 * sx, r1 * sy), shape=(r1 - r0, c1 - c0))
    return win, inner_ramp(mask, feather / ((sx + sy) / 2), open_sides=open_sides)


def _is_rectangle(polygon) -> bool:
    if not isinstance(polygon, Polygon) or polygon.interiors:
        return False
    x0, y0, x1, y1 = polygon.bounds
    full = (x1 - x0) * (y1 - y0)
    return full > 0 and abs(polygon.area - full) <= 1e-9 * full


def _rectangle_ramp(bounds, box, win, cell, page_size, feather, open_sides) -> np.ndarray:
    """inner_ramp for an axis-aligned panel, from the distance of each cell centre to the nearest edge
    (separable: min over the two axes), without rasterising anything."""
    c0, r0, c1, r1 = win
    sx, sy = cell
    W, H = page_size[1], page_size[0]
    top, bottom, left, right = open_sides
    ex0, ey0 = max(bounds[0], box[0]), max(bounds[1], box[1])
    ex1, ey1 = min(bounds[2], box[2]), min(bounds[3], box[3])
    # an edge on (or past) an open page border is no edge: the panel goes on beyond the page
    ex0 = -np.inf if left and ex0 <= 0.5 * sx else ex0
    ey0 = -np.inf if top and ey0 <= 0.5 * sy else ey0
    ex1 = np.inf if right and ex1 >= W - 0.5 * sx else ex1
    ey1 = np.inf if bottom and ey1 >= H - 0.5 * sy else ey1
    cx = (np.arange(c0, c1, dtype=np.float64) + 0.5) * sx
    cy = (np.arange(r0, r1, dtype=np.float64) + 0.5) * sy
    dx = np.minimum(cx - ex0, ex1 - cx)
    dy = np.minimum(cy - ey0, ey1 - cy)
    if feather <= 0:
        rx, ry = (dx > 0).astype(np.float32), (dy > 0).astype(np.float32)
    else:
        rx = smoothstep(dx / feather).astype(np.float32)
        ry = smoothstep(dy / feather).astype(np.float32)
    return np.minimum(ry[:, None], rx[None, :])
