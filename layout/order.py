"""Reading order of panels.

Manga is read in rows from top to bottom and, inside a row, from right to left; a tall panel that spans
several rows on the right is read before the stack of panels to its left. This is a recursive XY-cut over the
panel polygons: split the set by a horizontal cut where one exists (top part first), else by a vertical cut
(right part first when ``rtl``), and recurse. Cuts tolerate slanted gutters: a polygon counts as lying on one
side of a cut when nearly all of its area does, so the overlapping bounding boxes of panels separated by a
slanted gutter do not block the cut.
"""
from __future__ import annotations

from typing import Sequence

from shapely.geometry import Polygon, box as shapely_box

__all__ = ["reading_order"]

# A polygon may spill this fraction of its own area across a cut and still count as lying on one side.
_SPILL = 0.2


def reading_order(polygons: Sequence[Polygon], *, rtl: bool = True) -> list[int]:
    """Indices of ``polygons`` in reading order (page pixels, origin top-left).

    ``rtl=True``: manga order (rows top to bottom, right to left within a row); ``rtl=False``: left to right.
    Returns a permutation of ``range(len(polygons))``.
    """
    polys = list(polygons)
    for i, p in enumerate(polys):
        if not isinstance(p, Polygon) or p.is_empty:
            raise ValueError(f"reading_order needs non-empty shapely Polygons; item {i} is {p!r}")
    if not polys:
        return []
    x0 = min(p.bounds[0] for p in polys) - 1.0
    y0 = min(p.bounds[1] for p in polys) - 1.0
    x1 = max(p.bounds[2] for p in polys) + 1.0
    y1 = max(p.bounds[3] for p in polys) + 1.0
    frame = (x0, y0, x1, y1)
    areas = [max(p.area, 1e-9) for p in polys]
    out: list[int] = []
    _order(list(range(len(polys))), polys, areas, frame, rtl, out)
    return out


def _side_fractions(poly: Polygon, area: float, axis: int, cut: float, frame) -> float:
    """Fraction of ``poly``'s area lying before ``cut`` along ``axis`` (0 = x, 1 = y)."""
    x0, y0, x1, y1 = frame
    half = shapely_box(x0, y0, cut, y1) if axis == 0 else shapely_box(x0, y0, x1, cut)
    b = poly.bounds
    if b[2 + axis] <= cut:
        return 1.0
    if b[axis] >= cut:
        return 0.0
    return poly.intersection(half).area / area


def _best_cut(idx: list[int], polys, areas, axis: int, frame):
    """Best cut position along ``axis`` that separates ``idx`` into two non-empty groups, or None.

    Returns ``(before, after)`` index lists for the cut where the largest spill is smallest.
    """
    edges = sorted({polys[i].bounds[axis] for i in idx} | {polys[i].bounds[axis + 2] for i in idx})
    candidates = set(edges)
    candidates.update((a + b) / 2 for a, b in zip(edges, edges[1:]))
    best = None
    for cut in sorted(candidates):
        before, after, worst = [], [], 0.0
        for i in idx:
            f = _side_fractions(polys[i], areas[i], axis, cut, frame)
            if f >= 0.5:
                before.append(i)
                worst = max(worst, 1.0 - f)
            else:
                after.append(i)
                worst = max(worst, f)
            if worst > _SPILL:
                break
        if worst > _SPILL or not before or not after:
            continue
        if best is None or worst < best[0] - 1e-9:
            best = (worst, before, after)
    return None if best is None else (best[1], best[2])


def _order(idx: list[int], polys, areas, frame, rtl: bool, out: list[int]) -> None:
    if len(idx) == 1:
        out.append(idx[0])
        return
    cut = _best_cut(idx, polys, areas, 1, frame)
    if cut is not None:
        top, bottom = cut
        _order(top, polys, areas, frame, rtl, out)
        _order(bottom, polys, areas, frame, rtl, out)
        return
    cut = _best_cut(idx, polys, areas, 0, frame)
    if cut is not None:
        left, right = cut
        first, second = (right, left) if rtl else (left, right)
        _order(first, polys, areas, frame, rtl, out)
        _order(second, polys, areas, frame, rtl, out)
        return
    # No clean cut (insets, overlapping or interlocking panels): top edge first, then the reading side.
    def key(i):
        bx0, by0, bx1, by1 = polys[i].bounds
        return (round(by0), -bx1 if rtl else bx0, i)

    out.extend(sorted(idx, key=key))
