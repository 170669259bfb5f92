"""Classical character (figure) detection: the compact masses of line art inside each panel.

Inside each panel's interior (frame and balloons/lettering removed), the open background (paper reachable from
the panel's edge) is flooded away; what remains is ink and the paper it encloses (faces, shirts). Thin strokes
(speed lines, hatching, stray lines) are opened away, and the compact masses left that do not fill the panel
are figures. A mass that fills the panel is opened harder to free the figure from its background; if nothing
comes loose it is reported once, with a low score, as a close-up.

This is a first version without learned weights: it finds the prominent figure of a clean panel, merges
figures that touch, and confuses busy backgrounds with figures. ``identity`` is always None.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from manga_pipeline.records import CharacterInstance, Panel, TextRegion

from .base import Work, check_gray, fill_holes, prepare

__all__ = ["CharacterConfig", "detect_characters"]


@dataclass(frozen=True)
class CharacterConfig:
    """Thresholds of the classical figure detector."""

    long_side: int = 600            # working resolution (px on the long side): figures are large
    ink_gray: float = 0.6           # ink is darker than this fraction of the paper level
    smooth: float = 0.035           # opening size that removes thin strokes, fraction of the panel's shorter side
    min_density: float = 0.08       # ink share of a figure mass
    min_share: float = 0.04         # smallest figure, fraction of the panel area
    max_share: float = 0.8          # a mass filling more of the panel than this is (or includes) its background
    close_strokes: bool = True      # join strokes and fill what they enclose before looking for masses
    edge_band: float = 0.02         # background is paper reached from this band along the panel's edge
    max_per_panel: int = 3
    close_ups: bool = True          # report a mass filling the panel (a close-up) when nothing smaller is found
    min_score: float = 0.3


def detect_characters(gray: np.ndarray, panels: Sequence[Panel], texts: Sequence[TextRegion], *,
                      config: CharacterConfig | None = None) -> tuple[CharacterInstance, ...]:
    """Figures on a gray page ``uint8 (H, W)``, per panel; boxes in page pixels.

    ``panel`` of each instance is the ``order`` of the panel it lies in; ``identity`` is None; ``mask`` is the
    cluster (bool, the box's shape). A page without panels is treated as one panel.
    """
    check_gray(gray)
    cfg = config or CharacterConfig()
    work = prepare(gray, cfg.long_side)
    h, w = work.shape
    ink = work.gray < cfg.ink_gray * work.paper_level
    blocked = _text_mask(work, texts)
    out: list[CharacterInstance] = []
    regions = [(p.order, p.polygon) for p in panels] or [(None, None)]
    taken = np.zeros((h, w), bool)  # pixels already given to a figure (panels may overlap)
    for order, polygon in regions:
        pmask = _panel_mask(work, polygon)
        ys, xs = np.nonzero(pmask)
        if ys.size == 0:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        sub = pmask[y0:y1, x0:x1]
        # Stay clear of the frame: it is dense ink along the whole panel edge.
        m = max(1, int(0.015 * min(x1 - x0, y1 - y0)))
        inner = cv2.erode(sub.astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8)) > 0
        inner &= ~blocked[y0:y1, x0:x1] & ~taken[y0:y1, x0:x1]
        for box, mask, score in _figures(ink[y0:y1, x0:x1], inner, cfg):
            bx0, by0, bx1, by1 = box
            taken[y0 + by0:y0 + by1, x0 + bx0:x0 + bx1] |= mask
            out.append(_instance(work, mask, x0 + bx0, y0 + by0, score, order))
    return tuple(c for c in out if c is not None)


def _figures(ink: np.ndarray, inner: np.ndarray, cfg: CharacterConfig):
    """Figure clusters in one panel crop: ``[(box, mask, score)]`` in crop pixels, best first.

    The panel's open background (paper reachable from the panel's edge) is removed; what remains is ink and
    the paper it encloses (a face, a white shirt). Thin strokes (speed lines, hatching, stray lines) are opened
    away; the compact masses that remain and do not fill the panel from edge to edge are the figures. A mass
    that fills the panel (a figure on a toned or detailed background) is opened harder to free the figure.
    """
    hh, ww = inner.shape
    area = float(inner.sum())
    if area < 64:
        return []
    ink = ink & inner
    # Seal hairline gaps in outlines so that the background flood does not run into a figure.
    sealed = cv2.dilate(ink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    paper = (inner & ~sealed).astype(np.uint8)
    n, lab = cv2.connectedComponents(paper, connectivity=4)
    # Seed the flood from a band along the panel's edge, not just its outermost ring: a panel outline that
    # runs a little outside the frame would otherwise leave the frame line fencing in the whole interior.
    b = 2 * max(1, int(cfg.edge_band * min(hh, ww))) + 1
    edge = inner & ~(cv2.erode(inner.astype(np.uint8), np.ones((b, b), np.uint8)) > 0)
    edge_ids = np.unique(lab[edge & (lab > 0)])
    fg = (inner & ~np.isin(lab, edge_ids[edge_ids > 0])).astype(np.uint8)
    k = max(3, int(cfg.smooth * min(hh, ww)) | 1)
    if cfg.close_strokes:
        # Outline drawings (a white coat, a face) become solid masses: join the strokes, fill what they enclose.
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        fg = (fill_holes(fg > 0) & inner).astype(np.uint8)
    found = []
    for rank, size in enumerate((k, 2 * k + 1, 4 * k + 1)):
        opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        n, lab, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        too_big = None
        for i in range(1, n):
            x, y, bw, bh, a = stats[i]
            share = a / area
            if share < cfg.min_share:
                continue
            if share > cfg.max_share or (bw >= 0.95 * ww and bh >= 0.95 * hh):
                too_big = lab == i  # the background, or a figure fused with it: open harder
                continue
            comp = lab[y:y + bh, x:x + bw] == i
            if float(ink[y:y + bh, x:x + bw][comp].mean()) < cfg.min_density:
                continue  # a white patch enclosed by a few lines, not a drawn figure
            fill = a / float(bw * bh)
            aspect = min(bw, bh) / max(bw, bh)
            score = 0.3 + 0.3 * min(1.0, share / 0.25) + 0.2 * fill + 0.2 * aspect - 0.1 * rank
            if score >= cfg.min_score:
                found.append(((x, y, x + bw, y + bh), comp, float(min(score, 1.0))))
        if too_big is None:
            break
        fg = too_big.astype(np.uint8)
    if not found and too_big is not None and cfg.close_ups:
        # Nothing came loose from a mass that fills the panel: a close-up, most often, or a busy background.
        ys, xs = np.nonzero(too_big)
        x, y = xs.min(), ys.min()
        comp = too_big[y:ys.max() + 1, x:xs.max() + 1]
        if float(ink[y:y + comp.shape[0], x:x + comp.shape[1]][comp].mean()) >= cfg.min_density:
            found.append(((x, y, xs.max() + 1, ys.max() + 1), comp, 0.3))
    found.sort(key=lambda f: -f[2])
    return found[:cfg.max_per_panel]


def _panel_mask(work: Work, polygon) -> np.ndarray:
    h, w = work.shape
    mask = np.zeros((h, w), np.uint8)
    if polygon is None:
        mask[:] = 1
        return mask > 0
    pts = np.asarray(polygon.exterior.coords, dtype=np.float64) * work.scale
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask > 0


def _text_mask(work: Work, texts: Sequence[TextRegion]) -> np.ndarray:
    """Text regions at work resolution, slightly grown to cover balloon outlines."""
    h, w = work.shape
    mask = np.zeros((h, w), np.uint8)
    s = work.scale
    for t in texts:
        x0, y0, x1, y1 = t.box
        wx0, wy0 = int(np.floor(x0 * s)), int(np.floor(y0 * s))
        wx1, wy1 = max(wx0 + 1, int(np.ceil(x1 * s))), max(wy0 + 1, int(np.ceil(y1 * s)))
        wx1, wy1 = min(w, wx1), min(h, wy1)
        if wx1 <= wx0 or wy1 <= wy0:
            continue
        if t.mask is not None:
            m = cv2.resize(t.mask.astype(np.uint8), (wx1 - wx0, wy1 - wy0), interpolation=cv2.INTER_NEAREST)
            mask[wy0:wy1, wx0:wx1] |= m
        else:
            mask[wy0:wy1, wx0:wx1] = 1
    grow = max(3, int(0.006 * max(h, w)) * 2 + 1)
    return cv2.dilate(mask, np.ones((grow, grow), np.uint8)) > 0


def _instance(work: Work, mask: np.ndarray, ox: int, oy: int, score: float, order) -> CharacterInstance | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    box = work.page_box(ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    bw, bh = box[2] - box[0], box[3] - box[1]
    page_mask = cv2.resize(crop.astype(np.uint8) * 255, (bw, bh), interpolation=cv2.INTER_LINEAR) >= 128
    return CharacterInstance(box=box, score=score, identity=None, confidence=0.0, panel=order,
                             mask=page_mask)
