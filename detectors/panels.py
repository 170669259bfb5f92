"""Classical panel detection: gutters flooded from the page edge, merged panels cut along gutter lines.

1. The page is reduced (``detectors.base.prepare``); a page with black gutters is inverted.
2. Gutter = paper connected to the page margins (and to thin paper runs where gutters meet a bleeding edge).
3. Every large blob of non-gutter is a panel candidate. A blob that holds several panels (joined by a balloon
   or a figure crossing the gutter, or by a gutter the flood could not reach) is cut recursively along the
   best straight, possibly slanted line, found with sheared projection profiles on a coarse copy. A line
   qualifies when it runs along a gutter band flanked by frame lines, through flooded gutter bridged by
   something narrow, or along one thick frame line shared by two panels.
4. Each piece becomes a polygon: its simplified convex hull when it is nearly convex (framed panels, slanted
   or not), else its simplified outline (irregular or frameless panels).
5. No panel structure (a frameless page, a splash, a cover) → one panel over the page's content.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import Polygon, box as shapely_box
from shapely.validation import make_valid

from layout.order import reading_order
from manga_pipeline.records import Panel

from .base import Work, check_gray, fill_holes, prepare

__all__ = ["PanelConfig", "detect_panels", "panel_polygons"]


@dataclass(frozen=True)
class PanelConfig:
    """Thresholds of the classical panel detector; fractions are of the working page unless said otherwise."""

    long_side: int = 1000             # working resolution (px on the long side)
    min_area: float = 0.004           # smallest panel, fraction of the page area
    min_side: float = 0.05            # smallest panel side, fraction of the page's shorter side
    gutter_half_width: float = 0.015  # widest gutter half-width, fraction of the page's shorter side
    # cut search
    coarse_side: int = 480            # resolution of the cut search
    max_shear_deg: float = 12.0       # slant of gutters searched on a regular grid (plus the frames' slopes)
    max_depth: int = 7
    max_cut_ink: float = 0.35         # a gutter line crosses at most this share of ink along its length
    max_gutter_ink: float = 0.25      # ... and its gutter band at most this on average
    min_frame_jump: float = 0.4       # a frame line holds this much more ink than the gutter, per piece share
    min_frame_density: float = 0.6    # ink share of the piece along a frame line
    min_frame_span: float = 0.25      # a frame line runs along at least this share of the cut
    max_stripes: int = 6              # this many bands within three gutter widths are stripes, not a gutter
    max_cut_mass: float = 0.35        # a cut across flooded gutter runs at most this share inside the piece
    min_mass_jump: float = 0.45       # ... and the piece fills this much more of the lines beyond the gutter
    shared_frames: bool = True        # also cut along one thick frame line shared by two panels (no gutter)
    shared_frame_width: float = 0.006  # its thinnest width, fraction of the page's long side
    # what counts as a panel
    max_corners: int = 6              # a framed panel's hull simplifies to at most this many corners
    min_framed_share: float = 0.2     # framed pieces cover at least this share of all pieces, else page level
    min_frameless_area: float = 0.02  # an unframed piece kept next to framed panels, fraction of the page area


def detect_panels(gray: np.ndarray, *, rtl: bool = True, config: PanelConfig | None = None) -> tuple[Panel, ...]:
    """Panels of a gray page ``uint8 (H, W)`` as polygons in page pixels, ``order`` set by reading order."""
    check_gray(gray)
    cfg = config or PanelConfig()
    polys, scores = panel_polygons(prepare(gray, cfg.long_side), cfg)
    order = reading_order(polys, rtl=rtl)
    rank = {i: r for r, i in enumerate(order)}
    return tuple(Panel(polys[i], rank[i], scores[i]) for i in range(len(polys)))


# --- steps ------------------------------------------------------------------------------------------------


def gutter_mask(work: Work, half_width: float = PanelConfig.gutter_half_width) -> np.ndarray:
    """Bool (h, w): paper connected to the page edge (4-connected, so diagonal gaps in frames do not leak).

    The flood starts from page margins (a paper run along most of a side) and from paper that meets the edge
    elsewhere only if it stays thin (a gutter's end): wide paper there is usually white art in a panel that
    bleeds off the page, and flooding from it would eat the panel.
    """
    paper = work.paper.astype(np.uint8)
    n, lab = cv2.connectedComponents(paper, connectivity=4)
    margins: set[int] = set()
    others: set[int] = set()
    for line in (lab[0], lab[-1], lab[:, 0], lab[:, -1]):
        on = line > 0
        # runs of consecutive paper pixels along this side
        d = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        for a, b in zip(starts, ends):
            (margins if b - a >= 0.8 * line.size else others).update(np.unique(line[a:b]).tolist())
    others -= margins
    others.discard(0)
    if others:
        # Paper meeting the edge elsewhere is a gutter's end only when it is thin all along; white art in a
        # panel that bleeds off the page is wide open.
        dist = cv2.distanceTransform(paper, cv2.DIST_L2, 3)
        thick = set(np.unique(lab[dist > half_width * min(lab.shape)]).tolist())
        others -= thick
    seeds = margins | others
    seeds.discard(0)
    return np.isin(lab, np.fromiter(seeds, dtype=lab.dtype, count=len(seeds)))


@dataclass(frozen=True)
class _Ctx:
    cfg: PanelConfig
    ink: np.ndarray      # bool (h, w): not paper
    min_area: float      # work px^2
    min_side: float      # work px
    gutter_max: float    # widest gutter, work px
    frame_min: float     # thinnest frame line shared by two panels without a gutter, work px


def panel_polygons(work: Work, cfg: PanelConfig) -> tuple[list[Polygon], list[float]]:
    """Panel polygons in page pixels and their scores."""
    h, w = work.shape
    ctx = _Ctx(cfg, ~work.paper, cfg.min_area * h * w, cfg.min_side * min(h, w),
               2 * cfg.gutter_half_width * min(h, w) + 2, cfg.shared_frame_width * max(h, w))
    gutter = gutter_mask(work, cfg.gutter_half_width)
    content = (~gutter).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(content, connectivity=8)
    pieces: list[tuple[np.ndarray, int, int]] = []  # (mask crop, x offset, y offset)
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < ctx.min_area or min(bw, bh) < ctx.min_side:
            continue
        crop = lab[y:y + bh, x:x + bw] == i
        _split(fill_holes(crop), x, y, ctx, 0, pieces)

    fitted = [f for f in (_fit_polygon(m, ox, oy, work, cfg) for m, ox, oy in pieces) if f is not None]
    framed_area = sum(poly.area for poly, _, framed in fitted if framed)
    if framed_area <= cfg.min_framed_share * sum(poly.area for poly, _, _ in fitted):
        # No panel structure (a frameless page, a splash, a cover; a round head is no panel): one panel over
        # the content.
        return [_content_panel(work, gutter)], [0.3]
    # Next to framed panels, only large unframed pieces are frameless panels; small ones are stray art or
    # lettering in the margins.
    big = cfg.min_frameless_area * work.page_w * work.page_h
    kept = [(poly, score) for poly, score, framed in fitted if framed or poly.area >= big]
    return [p for p, _ in kept], [s for _, s in kept]


def _split(mask, ox, oy, ctx: _Ctx, depth, out) -> None:
    """Recursively cut ``mask`` (bool crop at offset ox, oy) along gutter lines; append the pieces."""
    hh, ww = mask.shape
    cut = None
    if depth < ctx.cfg.max_depth:
        cost = mask & ctx.ink[oy:oy + hh, ox:ox + ww]
        cut = _find_cut(mask, cost, ctx)
    if cut is None:
        out.append((mask, ox, oy))
        return
    axis, t, c = cut  # line: (y if axis == 0 else x) = c + t * (other - centre)
    if axis == 0:
        xs = np.arange(ww, dtype=np.float32) - ww / 2.0
        line = c + t * xs
        before = np.arange(hh, dtype=np.float32)[:, None] < line[None, :]
    else:
        ys = np.arange(hh, dtype=np.float32) - hh / 2.0
        line = c + t * ys
        before = np.arange(ww, dtype=np.float32)[None, :] < line[:, None]
    for side in (mask & before, mask & ~before):
        n, lab, stats, _ = cv2.connectedComponentsWithStats(side.astype(np.uint8), connectivity=8)
        for j in range(1, n):
            x, y, bw, bh, area = stats[j]
            if area < ctx.min_area or min(bw, bh) < ctx.min_side:
                continue
            _split(lab[y:y + bh, x:x + bw] == j, ox + x, oy + y, ctx, depth + 1, out)


@dataclass
class _Profile:
    """Projection profiles of a piece along lines of one slope (coarse pixels). Index k is the sheared row:
    the line ``y = (k - pad) + t * (x - cols / 2)`` (axis 0; axis 1 swaps x and y)."""

    t: float
    lo: np.ndarray       # the line's offset at the centre for each sheared row
    ink: np.ndarray      # share of the line that is ink inside the piece
    massf: np.ndarray    # share of the line inside the piece
    dens: np.ndarray     # ink share of the piece along the line
    valid: np.ndarray    # the line crosses the whole crop and leaves a panel on both sides
    cost: np.ndarray     # the coarse ink image, oriented for this axis
    lines: np.ndarray    # the sheared ink image: row k holds the ink along line k
    g: int               # widest gutter, coarse rows
    thick: int           # thinnest shared frame, coarse rows


def _find_cut(mask: np.ndarray, cost: np.ndarray, ctx: _Ctx):
    """The straight line that best separates the panels in ``mask``, if there is one.

    ``cost`` is the ink inside the piece (balloons and figures that cross a gutter add only their outlines).
    Three kinds of line qualify (see ``_gutter_cuts``, ``_shared_frame_cuts``, ``_flooded_cuts``); every line
    must leave a panel-sized part of ``mask`` on both sides.

    Returns ``(axis, slope, offset)`` in crop pixels (axis 0: a horizontal-ish cut y = offset + slope *
    (x - w/2); axis 1: a vertical-ish cut x = offset + slope * (y - h/2)), or None.
    """
    cfg = ctx.cfg
    hh, ww = mask.shape
    f = min(1.0, cfg.coarse_side / max(hh, ww))
    cw, ch = max(2, int(round(ww * f))), max(2, int(round(hh * f)))
    small = cv2.resize(mask.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
    small_cost = cv2.resize(cost.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
    fx, fy = ww / cw, hh / ch
    if small.sum() <= 0:
        return None
    tmax = np.tan(np.radians(cfg.max_shear_deg))
    grid = np.linspace(-tmax, tmax, 2 * int(np.ceil(cfg.max_shear_deg / 2.0)) + 1)
    line_slopes = _line_slopes(small_cost, tmax)
    best = None
    for axis in (0, 1):
        stack = np.dstack([small, small_cost])
        if axis == 1:
            stack = np.ascontiguousarray(stack.transpose(1, 0, 2))
        # A thin gutter is missed by a slope that is off by a degree over a long line: add the exact slopes of
        # the long straight lines (frames) found in the piece to the regular grid.
        slopes = np.unique(np.round(np.concatenate([grid, line_slopes[axis]]), 4))
        for t in slopes:
            prof = _profile(stack, axis, float(t), fx, fy, ctx)
            if prof is None:
                continue
            for score, k in (*_gutter_cuts(prof, cfg), *_shared_frame_cuts(prof, cfg), *_flooded_cuts(prof, cfg)):
                score += 0.02 * abs(t)  # prefer straight cuts on ties
                if best is None or score < best[0]:
                    best = (score, axis, float(t), prof.lo[k] + 0.5)
    if best is None:
        return None
    _, axis, t, c = best
    if axis == 0:
        # coarse: y_c = c + t * (x_c - cw/2); crop: y = fy * y_c, x = fx * x_c
        return 0, t * fy / fx, c * fy
    return 1, t * fx / fy, c * fx


def _profile(stack: np.ndarray, axis: int, t: float, fx: float, fy: float, ctx: _Ctx) -> _Profile | None:
    """``stack``: float32 (rows, cols, 2) = (piece mask, ink), oriented for ``axis``."""
    img, img_cost = stack[:, :, 0], stack[:, :, 1]
    across = fy if axis == 0 else fx  # coarse -> crop pixels across the cut
    min_across = ctx.min_side / across
    min_mass = ctx.min_area / (fx * fy)
    rows, cols = img.shape
    # Sheared row k collects img[k - pad + t * (x - cols/2), x]: one nearest-neighbour warp of (mass, ink),
    # then row sums per channel (OpenCV, single-threaded: no BLAS threads fighting over a busy machine).
    pad = int(np.ceil(abs(t) * cols / 2.0)) + 1
    size = rows + 2 * pad
    m = np.float32([[1, 0, 0], [t, 1, -pad - t * cols / 2.0]])
    sheared = cv2.warpAffine(stack, m, (cols, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mass, ink = (cv2.reduce(c, 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F).ravel() for c in cv2.split(sheared))
    ink = ink / cols
    r = np.arange(size)
    inside = (r >= pad + abs(t) * cols / 2.0) & (r <= rows - 1 + pad - abs(t) * cols / 2.0)  # whole line in crop
    filled = np.nonzero(mass > 0.5)[0]
    if filled.size == 0:
        return None
    cum = np.cumsum(mass)
    # Both sides keep enough mass and are as thick across the line as a panel (a frame line alone is none).
    valid = inside & (r - filled[0] >= min_across) & (filled[-1] - r >= min_across)
    valid &= (cum >= min_mass) & (cum[-1] - cum >= min_mass)
    if not valid.any():
        return None
    massf = mass / cols
    return _Profile(t=t, lo=r - pad, ink=ink, massf=massf, dens=ink / np.maximum(massf, 1e-6), valid=valid,
                    cost=img_cost, lines=sheared[:, :, 1], g=max(2, int(np.ceil(ctx.gutter_max / across)) + 1),
                    thick=max(2, int(round(ctx.frame_min / across))))


def _gutter_cuts(p: _Profile, cfg: PanelConfig):
    """Gutter bands the flood did not reach (closed off by balloons or figures): ``[(score, row)]``.

    A band of lines with little ink, no wider than a gutter, flanked right away by frame lines (rows where the
    piece is nearly all ink) on both sides; or, when the other panel is frameless, a clean band beside one
    solid frame. The flank test keeps cuts out of white areas inside a panel; two more tests keep them off
    lines between white strips inside one panel (both ends run into ink) and off stripes (speed lines,
    hatching, a fence: many bands close by, where a gutter stands alone).
    """
    ink, size, g = p.ink, p.ink.size, p.g
    runs = [(a, b, True) for a, b in _runs(ink <= cfg.max_cut_ink)]
    runs += [(a, b, False) for a, b in _runs(ink <= 0.5 * cfg.max_gutter_ink)]
    out = []
    for a, b, loose in runs:
        if a < 1 or b >= size or b - a > g:
            continue
        k = a + int(np.argmin(ink[a:b]))
        band = ink[a:b].mean()
        if not p.valid[k] or band > cfg.max_gutter_ink:
            continue
        fb, fa = slice(max(0, a - 3), a), slice(b, min(size, b + 3))
        frame_b = _frame(p, fb, band, cfg)
        frame_a = _frame(p, fa, band, cfg)
        if not (frame_a and frame_b):
            solid = max(p.dens[fb].max() if frame_b else 0.0, p.dens[fa].max() if frame_a else 0.0)
            if loose or solid < 0.85:
                continue
        if _closed_ends(p.cost, p.lo[k], p.t):
            continue
        if len(_runs(ink[max(0, a - 3 * g):min(size, b + 3 * g)] <= cfg.max_cut_ink)) >= cfg.max_stripes:
            continue
        score = ink[k] - 0.25 * min(ink[fb].max(), ink[fa].max())
        out.append((score + (0.0 if frame_a and frame_b else 0.15), k))
    return out


def _shared_frame_cuts(p: _Profile, cfg: PanelConfig):
    """Two panels that share one frame line, without a gutter: ``[(score, row)]``.

    A straight, solid line across the whole piece, thicker than a stroke (thin full-width lines are art:
    horizons, floors), with lighter lines on both sides.
    """
    if not cfg.shared_frames:
        return []
    out = []
    for a, b in _runs((p.dens >= 0.9) & (p.massf >= 0.9)):
        if a < 3 or b > p.ink.size - 3 or b - a < p.thick or b - a > p.g:
            continue
        k = (a + b) // 2
        if p.valid[k] and max(p.ink[a - 3:a].min(), p.ink[b:b + 3].min()) <= 0.6:
            out.append((0.2, k))
    return out


def _flooded_cuts(p: _Profile, cfg: PanelConfig):
    """Flooded gutter bridged by something that crosses it: ``[(score, row)]``.

    The line runs mostly outside the piece, and the piece comes back in force within a gutter's width on
    both sides (frameless panels included). A gradual return is the waist of one irregular panel.
    """
    out = []
    for a, b in _runs(p.massf <= cfg.max_cut_mass):
        if a < 1 or b >= p.ink.size:
            continue
        k = a + int(np.argmin(p.massf[a:b] + p.ink[a:b]))
        if not p.valid[k]:
            continue
        band = p.massf[a:b].max()
        fb, fa = slice(max(0, a - p.g), a), slice(b, min(p.ink.size, b + p.g))
        if min(p.massf[fb].max(), p.massf[fa].max()) < band + cfg.min_mass_jump:
            continue
        # Lines of lettering or rows of small shapes on open paper make many bands close by.
        near = p.massf[max(0, a - 3 * p.g):min(p.ink.size, b + 3 * p.g)] <= cfg.max_cut_mass
        if len(_runs(near)) >= cfg.max_stripes:
            continue
        out.append((p.massf[k] - 0.3, k))
    return out


def _fit_polygon(mask: np.ndarray, ox: int, oy: int, work: Work, cfg: PanelConfig):
    """A piece's outline as a page-pixel polygon, a score in [0, 1], and whether it looks framed."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    cnt = max(contours, key=cv2.contourArea)
    area = float(mask.sum())
    hull = cv2.convexHull(cnt)
    hull_area = max(cv2.contourArea(hull), 1.0)
    solidity = min(1.0, area / hull_area)
    if solidity >= 0.85:
        approx = cv2.approxPolyDP(hull, 0.012 * cv2.arcLength(hull, True), True)
    else:
        approx = cv2.approxPolyDP(cnt, 0.006 * cv2.arcLength(cnt, True), True)
    pts = approx.reshape(-1, 2).astype(np.float64)
    if len(pts) < 3:
        return None
    pts[:, 0] += ox
    pts[:, 1] += oy
    # Work pixel corners to page pixels: pixel i covers [i, i + 1).
    pts[:, 0] = np.clip(pts[:, 0] / work.scale, 0, work.page_w)
    pts[:, 1] = np.clip(pts[:, 1] / work.scale, 0, work.page_h)
    poly = _valid_polygon(Polygon(pts))
    if poly is None:
        return None
    # Framed panels are nearly convex and close to a (possibly slanted) quadrilateral; frameless art is
    # ragged or round.
    (_, _), (rw, rh), _ = cv2.minAreaRect(cnt)
    rectangularity = min(1.0, area / max(rw * rh, 1.0))
    corners = len(cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True))
    framed = solidity >= 0.85 and rectangularity >= 0.8 and corners <= cfg.max_corners
    score = float(np.clip(0.5 + 0.5 * solidity * rectangularity, 0.0, 1.0)) if framed else float(0.45 * solidity)
    return poly, score, framed


def _valid_polygon(poly: Polygon) -> Polygon | None:
    if not poly.is_valid:
        poly = make_valid(poly)
        if poly.geom_type != "Polygon":
            parts = [g for g in getattr(poly, "geoms", []) if g.geom_type == "Polygon"]
            if not parts:
                return None
            poly = max(parts, key=lambda g: g.area)
    if poly.is_empty or poly.area < 1.0:
        return None
    return Polygon(poly.exterior.coords)


def _content_panel(work: Work, gutter: np.ndarray) -> Polygon:
    """One page-level panel: the bounds of everything that is not gutter, or the whole page if blank."""
    ys, xs = np.nonzero(~gutter)
    if ys.size == 0:
        return shapely_box(0, 0, work.page_w, work.page_h)
    x0, y0, x1, y1 = work.page_box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return shapely_box(x0, y0, x1, y1)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` runs of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist()))


def _line_slopes(cost: np.ndarray, tmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Slopes of long straight lines in a coarse ink image: (dy/dx of horizontal-ish, dx/dy of vertical-ish)."""
    edges = cv2.Canny((cost * 255).astype(np.uint8), 60, 180)
    rows, cols = cost.shape
    length = int(0.3 * min(rows, cols))
    lines = cv2.HoughLinesP(edges, 1, np.pi / 360, threshold=max(10, length // 2), minLineLength=max(10, length),
                            maxLineGap=4)
    horiz, vert = [], []
    if lines is not None:
        for x0, y0, x1, y1 in lines[:, 0, :].astype(np.float64):
            dx, dy = x1 - x0, y1 - y0
            if abs(dx) >= abs(dy) and abs(dy) <= tmax * abs(dx):
                horiz.append(dy / dx)
            elif abs(dx) <= tmax * abs(dy):
                vert.append(dx / dy)
    def pick(v):
        v = np.round(np.asarray(v, dtype=np.float64), 3)
        v = v[np.abs(v) > 1e-3]  # straight lines are on the grid already
        vals, counts = np.unique(v, return_counts=True)
        return vals[np.argsort(-counts)][:8]
    return pick(horiz), pick(vert)


def _frame(p: _Profile, rows: slice, band: float, cfg: PanelConfig) -> bool:
    """Whether one of these rows is a frame line: the piece is nearly all ink along it, over a good part of
    the line (the rest may be flooded gutter), it stands out from the gutter band, and its ink lies in long
    runs (a line, perhaps broken where a balloon crosses it; a line of lettering is short strokes)."""
    ink, massf, dens = p.ink[rows], p.massf[rows], p.dens[rows]
    ok = (dens >= cfg.min_frame_density) & (massf >= cfg.min_frame_span) & (ink >= band + cfg.min_frame_jump * massf)
    cols = p.lines.shape[1]
    long_run = max(4, int(0.08 * cols))
    for i in np.nonzero(ok)[0]:
        on = p.lines[rows.start + i] > 0.5
        total = int(on.sum())
        in_long = sum(b - a for a, b in _runs(on) if b - a >= long_run)
        if total and in_long >= 0.6 * total:
            return True
    return False


def _closed_ends(cost: np.ndarray, lo: float, t: float, n: int = 3) -> bool:
    """Whether the line ``y = lo + t * (x - w/2)`` meets ink at both of its ends in ``cost`` (coarse (h, w)).

    A line between two white strips inside one panel (between a building's columns, between text columns)
    runs into the panel's own frame at both ends; a gutter opens into other gutters or the margin.
    """
    rows, cols = cost.shape
    xs = np.concatenate([np.arange(min(n, cols)), np.arange(max(0, cols - n), cols)])
    ys = np.clip(np.round(lo + t * (xs - cols / 2.0)).astype(np.int64), 0, rows - 1)
    vals = cost[ys, xs]
    half = len(xs) // 2
    return bool(vals[:half].max() >= 0.5 and vals[half:].max() >= 0.5)
