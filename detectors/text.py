"""Classical detection of speech balloons and free lettering: regions that must stay paper-white.

Balloons: a balloon's interior is a connected patch of paper, enclosed by its outline, whose holes are glyphs
(small ink blobs). Every paper component of the reduced page is tested: filled, it must be compact (nearly
convex), mostly white, hold a few glyph-sized holes and nothing large, its lettering must be solid black (the
features of a white face or shirt are gray, or a pair of round eyes), and it must not be a whole panel with a
white background.

Free lettering (narration or titles written straight on white art or in the margins): clusters of four or
more glyph-sized ink blobs of one size standing on paper, outside balloons, long enough to be a line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from manga_pipeline.records import Panel, TextRegion

from .base import Work, check_gray, fill_holes, prepare

__all__ = ["TextConfig", "detect_text"]


@dataclass(frozen=True)
class TextConfig:
    """Thresholds of the classical balloon and lettering detector."""

    long_side: int = 1000           # working resolution (px on the long side)
    min_area: float = 0.0006        # smallest balloon, fraction of the page area
    max_area: float = 0.12          # largest balloon
    min_solidity: float = 0.8       # balloon area / convex hull area (jagged shout balloons are lower)
    min_white: float = 0.5          # paper share of a balloon's interior
    max_glyph: float = 0.06         # largest glyph side, fraction of the page's long side
    min_glyphs: int = 2             # a balloon holds at least this many glyphs
    min_ink: float = 0.03           # ink share of a balloon's interior (its lettering)
    max_glyph_gray: float = 0.45    # median gray of the lettering, fraction of the paper level
    max_panel_share: float = 0.5    # a "balloon" covering this much of a panel is the panel's white background
    free_text: bool = True          # also look for lettering outside balloons
    min_free_glyphs: int = 4        # free lettering: at least this many glyphs of one size
    min_free_extent: float = 0.06   # ... in a line at least this long, fraction of the page's long side


def detect_text(gray: np.ndarray, panels: Sequence[Panel], *, config: TextConfig | None = None
                ) -> tuple[TextRegion, ...]:
    """Balloons (``kind="balloon"``) and free lettering (``kind="text"``) on a gray page ``uint8 (H, W)``.

    Boxes are page pixels; ``mask`` is a bool array of the box's shape, True on the region (a balloon's
    interior including its lettering; the lettering itself, slightly grown, for free text).
    """
    check_gray(gray)
    cfg = config or TextConfig()
    work = prepare(gray, cfg.long_side)
    balloons, taken = _balloons(work, panels, cfg)
    out = [_region(work, mask, ox, oy, "balloon", score) for mask, ox, oy, score in balloons]
    if cfg.free_text:
        out += [_region(work, mask, ox, oy, "text", score) for mask, ox, oy, score in _free_text(work, taken, cfg)]
    return tuple(r for r in out if r is not None)


# --- balloons ---------------------------------------------------------------------------------------------


def _balloons(work: Work, panels: Sequence[Panel], cfg: TextConfig):
    """Balloon interiors at work resolution: ``([(filled crop, x, y, score)], bool (h, w) of all of them)``."""
    h, w = work.shape
    page_area = float(h * w)
    long_side = max(h, w)
    max_glyph = cfg.max_glyph * long_side
    panel_areas = _panel_areas_work(work, panels)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(work.paper.astype(np.uint8), connectivity=4)
    found = []
    taken = np.zeros((h, w), bool)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        box_area = bw * bh
        if box_area < cfg.min_area * page_area or area > cfg.max_area * page_area:
            continue
        if x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue  # touches the page edge: margin or art bleeding off the page
        comp = lab[y:y + bh, x:x + bw] == i
        filled = fill_holes(comp)
        farea = float(filled.sum())
        if farea < cfg.min_area * page_area or farea > cfg.max_area * page_area:
            continue
        white = area / farea
        if white < cfg.min_white:
            continue
        cnts, _ = cv2.findContours(filled.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull_area = cv2.contourArea(cv2.convexHull(max(cnts, key=cv2.contourArea)))
        solidity = farea / max(hull_area, 1.0)
        if solidity < cfg.min_solidity:
            continue
        holes = (filled & ~comp).astype(np.uint8)
        hn, _, hstats, _ = cv2.connectedComponentsWithStats(holes, connectivity=8)
        sizes = hstats[1:, 2:4].max(axis=1) if hn > 1 else np.zeros(0)
        # Specks from JPEG noise are not glyphs; blobs larger than a glyph mean art, not lettering.
        is_glyph = sizes >= max(2, 0.004 * long_side)
        glyphs = int(is_glyph.sum())
        if glyphs < cfg.min_glyphs or (sizes.size and sizes.max() > max_glyph):
            continue
        if glyphs in (2, 3) and _looks_like_eyes(hstats[1:][is_glyph]):
            continue
        glyph_ink = holes > 0
        ink_share = float(glyph_ink.sum()) / farea
        if ink_share < cfg.min_ink:
            continue
        # Lettering is solid black; eyes, shading and screentone inside a white face or shirt are gray.
        lettering = work.gray[y:y + bh, x:x + bw][glyph_ink]
        if np.median(lettering) > cfg.max_glyph_gray * work.paper_level:
            continue
        if _is_panel_background(filled, x, y, panel_areas, cfg.max_panel_share):
            continue
        # Confidence grows with compactness and with how much of the interior is paper.
        score = float(np.clip(0.5 * solidity + 0.5 * white, 0.0, 1.0))
        found.append((filled, x, y, score))
        taken[y:y + bh, x:x + bw] |= filled
    return found, taken


def _looks_like_eyes(stats: np.ndarray) -> bool:
    """Whether two of these blobs (rows of x, y, w, h, area) are a pair of eyes: round, solid, of one size,
    side by side. A face in a white patch otherwise passes for a small balloon."""
    x, y, w, h, a = (stats[:, i].astype(np.float64) for i in range(5))
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            round_ = all(0.6 <= w[k] / h[k] <= 1.6 and a[k] >= 0.6 * w[k] * h[k] for k in (i, j))
            same = 0.75 <= (w[i] * h[i]) / (w[j] * h[j]) <= 1.33
            side = abs((y[i] + h[i] / 2) - (y[j] + h[j] / 2)) < 0.5 * max(h[i], h[j])
            apart = abs((x[i] + w[i] / 2) - (x[j] + w[j] / 2)) > 1.5 * max(w[i], w[j])
            if round_ and same and side and apart:
                return True
    return False


def _panel_areas_work(work: Work, panels: Sequence[Panel]):
    """Panel masks at work resolution, as (x0, y0, mask crop, area)."""
    out = []
    h, w = work.shape
    for p in panels:
        pts = np.asarray(p.polygon.exterior.coords, dtype=np.float64) * work.scale
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [np.round(pts - [x0, y0]).astype(np.int32)], 1)
        out.append((x0, y0, m.astype(bool), float(m.sum())))
    return out


def _is_panel_background(filled: np.ndarray, x: int, y: int, panel_areas, share: float) -> bool:
    """Whether a paper patch covers most of a panel: a white panel background, not a balloon."""
    bh, bw = filled.shape
    for px, py, pm, parea in panel_areas:
        ix0, iy0 = max(x, px), max(y, py)
        ix1, iy1 = min(x + bw, px + pm.shape[1]), min(y + bh, py + pm.shape[0])
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        inter = np.logical_and(filled[iy0 - y:iy1 - y, ix0 - x:ix1 - x], pm[iy0 - py:iy1 - py, ix0 - px:ix1 - px])
        if inter.sum() > share * parea:
            return True
    return False


# --- free lettering ---------------------------------------------------------------------------------------


def _free_text(work: Work, taken: np.ndarray, cfg: TextConfig):
    """Clusters of glyph-sized ink blobs standing on paper, outside balloons."""
    h, w = work.shape
    long_side = max(h, w)
    ink = (~work.paper).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if n <= 1:
        return []
    bw, bh, area = stats[1:, 2], stats[1:, 3], stats[1:, 4]
    side = np.maximum(bw, bh)
    small = (side >= 0.006 * long_side) & (side <= cfg.max_glyph * 0.6 * long_side)
    small &= area >= 4
    # A glyph stands on paper: the ring around its box is nearly all paper.
    glyph_ids = []
    paper = work.paper
    for j in np.nonzero(small)[0]:
        x, y, ww, hh = stats[j + 1, :4]
        m = max(2, int(0.4 * max(ww, hh)))
        x0, y0, x1, y1 = max(0, x - m), max(0, y - m), min(w, x + ww + m), min(h, y + hh + m)
        ring = paper[y0:y1, x0:x1].sum() / max(1, (x1 - x0) * (y1 - y0) - ww * hh)
        if ring < 0.9:
            continue
        if taken[y + hh // 2, x + ww // 2]:
            continue
        glyph_ids.append(j + 1)
    if len(glyph_ids) < cfg.min_free_glyphs:
        return []
    glyphs = np.isin(lab, glyph_ids).astype(np.uint8)
    heights = np.median(np.maximum(stats[glyph_ids, 2], stats[glyph_ids, 3]))
    k = max(3, int(round(0.8 * heights)))
    grown = cv2.dilate(glyphs, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    gn, glab, gstats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    out = []
    for g in range(1, gn):
        x, y, ww, hh, _ = gstats[g]
        members = np.unique(lab[y:y + hh, x:x + ww][(glab[y:y + hh, x:x + ww] == g) & (glyphs[y:y + hh, x:x + ww] > 0)])
        members = members[members > 0]
        if len(members) < cfg.min_free_glyphs or max(ww, hh) < cfg.min_free_extent * long_side:
            continue
        sizes = np.maximum(stats[members, 2], stats[members, 3]).astype(np.float64)
        if sizes.std() > 0.5 * sizes.mean():
            continue  # lettering has glyphs of one size; scattered art details do not
        region = glab[y:y + hh, x:x + ww] == g  # the glyphs and the paper between them
        score = float(np.clip(0.3 + 0.05 * len(members), 0.0, 0.8))
        out.append((region, x, y, score))
    return out


# --- records ----------------------------------------------------------------------------------------------


def _region(work: Work, mask: np.ndarray, ox: int, oy: int, kind: str, score: float) -> TextRegion | None:
    """A work-resolution mask crop at (ox, oy) as a page-pixel TextRegion with a mask of the box's shape."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    cy0, cy1, cx0, cx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = mask[cy0:cy1, cx0:cx1]
    box = work.page_box(ox + cx0, oy + cy0, ox + cx1, oy + cy1)
    bw, bh = box[2] - box[0], box[3] - box[1]
    page_mask = cv2.resize(crop.astype(np.uint8) * 255, (bw, bh), interpolation=cv2.INTER_LINEAR) >= 128
    if not page_mask.any():
        return None
    return TextRegion(box=box, kind=kind, score=score, mask=page_mask)
