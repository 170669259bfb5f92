"""Full-resolution compositing: per-panel chroma at working resolution -> the coloured page.

Lines, screentones and lettering keep the original pixels' lightness; a*b* comes from the colorizer. Two
blends: "luminance" keeps every pixel's L* (white paper cannot hold colour, so a binarised page stays nearly
gray); "flat" (the default of the pipeline) also lets paper inside coloured areas take the colour, as a
colourist's flats under the ink. Steps:

1. Every panel's chroma is resampled onto one low-resolution grid over the page (as fine as the finest chroma
   given), masked by its panel polygon with weights that ease in from the outline, and blended: overlapping
   panels average by weight, and where panel weight falls short of 1 the page pass (art outside panels) or
   zero chroma fills in, so no panel ends in a cut.
2. The blended grid is upsampled to the page by :func:`layout.guided.guided_upsample`, which moves chroma
   edges onto the page's lines.
3. Text regions get zero chroma, with a soft edge outside them.
4. With "flat", paper too light for its chroma is lowered to the lightest L* that holds it (bounded).
5. ``compose_lab`` turns (L*, chroma) into RGB, reducing chroma only where it leaves the sRGB gamut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from shapely.geometry import box as shapely_box

from layout.guided import guided_upsample
from layout.raster import outer_ramp, soft_panel_weights
from manga_pipeline.colorspace import compose_lab, flat_lightness, gray_to_L
from manga_pipeline.records import ColorizedPanel, Panel, TextRegion

BLENDS = ("flat", "luminance")
FLAT_MAX_DARKEN = 30.0  # L* units: how far paper may go down to hold its colour (skin, pale clothes need < 15)


@dataclass(frozen=True)
class ComposedPage:
    """A coloured page.

    rgb: uint8 (H, W, 3), the page with the colour layer applied.
    chroma: float32 (H, W, 2), the colour layer alone (a*b*, before gamut fitting), for artists who want it
    separately; ``compose_lab(L, chroma)`` gives back ``rgb``.
    L: float32 (H, W), the output's L*: the page's own (blend "luminance"), or lowered on paper that must hold
    the colour (blend "flat", see :func:`manga_pipeline.colorspace.flat_lightness`).
    flat: bool (H, W) where paper was allowed to take colour (blend "flat" with ``flat_areas``), else None
    (everywhere with "flat", nowhere with "luminance").
    """

    rgb: np.ndarray
    chroma: np.ndarray
    L: np.ndarray
    flat: np.ndarray | None = None

    def __post_init__(self):
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 3 or self.rgb.shape[2] != 3:
            raise ValueError("ComposedPage.rgb must be uint8 (H, W, 3)")
        if self.chroma.dtype != np.float32 or self.chroma.shape != self.rgb.shape[:2] + (2,):
            raise ValueError("ComposedPage.chroma must be float32 (H, W, 2) matching rgb")
        if self.L.dtype != np.float32 or self.L.shape != self.rgb.shape[:2]:
            raise ValueError("ComposedPage.L must be float32 (H, W) matching rgb")


def _place(chroma: np.ndarray, box, window, page_size, grid) -> np.ndarray:
    """Resample ``chroma`` (covering ``box``, page px) onto the grid cells of ``window``; float32 (r, c, 2)."""
    H, W = page_size
    gh, gw = grid
    sx, sy = W / gw, H / gh
    x0, y0, x1, y1 = box
    h, w = chroma.shape[:2]
    c0, r0, c1, r1 = window
    kx, ky = w / (x1 - x0), h / (y1 - y0)
    # grid cell (c, r) has its centre at page ((c + .5) sx, (r + .5) sy); chroma pixel u covers page x0 + u / kx
    m = np.array([[sx * kx, 0.0, ((c0 + 0.5) * sx - x0) * kx - 0.5],
                  [0.0, sy * ky, ((r0 + 0.5) * sy - y0) * ky - 0.5]], np.float64)
    src = chroma
    if sx * kx > 2.0 or sy * ky > 2.0:  # the grid is coarser than the chroma: average instead of skipping
        src = cv2.resize(chroma, (max(1, round(w / (sx * kx))), max(1, round(h / (sy * ky)))),
                         interpolation=cv2.INTER_AREA)
        fx, fy = src.shape[1] / w, src.shape[0] / h
        m = np.array([[m[0, 0] * fx, 0.0, (m[0, 2] + 0.5) * fx - 0.5],
                      [0.0, m[1, 1] * fy, (m[1, 2] + 0.5) * fy - 0.5]], np.float64)
    return cv2.warpAffine(src, m, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _check_inputs(gray, panels, colorized, page_pass):
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8 or gray.ndim != 2 or gray.size == 0:
        raise ValueError("compose_page needs the page as a non-empty uint8 (H, W) gray array")
    by_order = {}
    for p in panels:
        if p.order in by_order:
            raise ValueError(f"two panels have order {p.order}")
        by_order[p.order] = p
    pairs, seen = [], set()
    for c in colorized:
        if c.panel == -1:
            if page_pass is not None:
                raise ValueError("a page-level pass (panel -1) was given twice: in colorized and as page_pass")
            page_pass = c
            continue
        if c.panel not in by_order:
            raise ValueError(f"colorized panel {c.panel} has no panel with that order (have {sorted(by_order)})")
        if c.panel in seen:
            raise ValueError(f"panel {c.panel} was colorized twice")
        seen.add(c.panel)
        pairs.append((by_order[c.panel], c))
    if page_pass is not None and page_pass.panel != -1:
        raise ValueError(f"page_pass must be the page-level pass (panel -1), got panel {page_pass.panel}")
    return pairs, page_pass


def compose_page(gray: np.ndarray, panels: Sequence[Panel], colorized: Sequence[ColorizedPanel], *,
                 texts: Sequence[TextRegion] = (), page_pass: ColorizedPanel | None = None,
                 feather: int = 6, radius: int = 0, snap: float | None = None, blend: str = "luminance",
                 max_darken: float = FLAT_MAX_DARKEN, flat_areas=None) -> ComposedPage:
    """Stitch per-panel chroma into the full-resolution page.

    gray: uint8 (H, W), the page. panels: the page's panels (polygons in page px, may bleed past the page).
    colorized: one ColorizedPanel per coloured panel, matched by ``panel`` = the panel's order; its chroma
    covers its ``box`` at any resolution. A ColorizedPanel with panel -1 in this list is taken as the page pass.
    texts: regions kept paper-white (their mask inside the box, else the whole box). page_pass: chroma for the
    art outside panels (gutters, margins, splash pages); without it, outside panels stays gray.
    feather: page px over which panel edges blend and text regions fade in. radius, snap: see
    :func:`layout.guided.guided_upsample` (snap None = half the upsampling factor). blend: "luminance" keeps
    every pixel's L* (within 1), so paper stays white and only gray pixels take colour; "flat" lays the colour
    under the ink like a colourist's flats: paper inside coloured areas takes the colour (its L* lowered by at
    most ``max_darken``), while ink, screentone dots, text regions and uncoloured pixels keep their L*.
    flat_areas: with "flat", where paper may take colour: ((x0, y0, x1, y1) page px, bool mask of that box or
    None for the whole box), e.g. the named characters' figures and the surroundings of hint points; elsewhere
    the luminance rule holds (gutters, margins and backgrounds coloured from a scene reference stay paper-white).
    None: the whole page.

    Raises ValueError for a gray page of the wrong type, a colorized panel with no matching panel, a panel
    colorized twice, two page passes, or a negative feather.
    """
    pairs, page_pass = _check_inputs(gray, panels, colorized, page_pass)
    if feather < 0:
        raise ValueError(f"feather must be >= 0 page px, got {feather}")
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    H, W = gray.shape
    L = gray_to_L(gray)
    layers = [(p.polygon, c) for p, c in pairs]
    if page_pass is not None:
        layers.append((shapely_box(*page_pass.box), page_pass))
    low = _blend_on_grid(layers, page_pass is not None, (H, W), feather) if layers else None
    if low is None:  # nothing to colour: the gray page as RGB
        return ComposedPage(rgb=np.repeat(gray[..., None], 3, axis=2), chroma=np.zeros((H, W, 2), np.float32), L=L)
    chroma = guided_upsample(low, L, radius=radius, snap=snap)
    _clear_texts(chroma, texts, feather)
    where = None
    if blend == "flat":
        where = None if flat_areas is None else _area_mask((H, W), flat_areas)
        if where is None:
            L = flat_lightness(L, chroma, max_darken)
        elif where.any():
            L = np.where(where, flat_lightness(L, chroma, max_darken), L).astype(np.float32)
    return ComposedPage(rgb=compose_lab(L, chroma), chroma=chroma, L=L, flat=where)


def _area_mask(shape, areas) -> np.ndarray:
    """bool (H, W): the union of (box, mask-or-None) areas, clipped to the page."""
    H, W = shape
    out = np.zeros((H, W), bool)
    for box, mask in areas:
        x0, y0, x1, y1 = (int(v) for v in box)
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        if mask is None:
            out[cy0:cy1, cx0:cx1] = True
        else:
            if mask.shape != (y1 - y0, x1 - x0):
                raise ValueError(f"flat area mask {mask.shape} does not match its box {box}")
            out[cy0:cy1, cx0:cx1] |= mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out


def _blend_on_grid(layers, has_page_pass: bool, page_size, feather) -> np.ndarray | None:
    """Blend (polygon, ColorizedPanel) layers on one grid over the page; the last is the page pass when
    ``has_page_pass``. Returns float32 (gh, gw, 2), or None when no layer reaches the page."""
    H, W = page_size
    # as fine as the finest chroma, never finer than the page
    step = max(1.0, min(min((c.box[2] - c.box[0]) / c.chroma.shape[1], (c.box[3] - c.box[1]) / c.chroma.shape[0])
                        for _, c in layers))
    grid = (max(1, int(math.ceil(H / step))), max(1, int(math.ceil(W / step))))
    acc = np.zeros(grid + (2,), np.float32)
    wsum = np.zeros(grid, np.float32)
    panels = layers[:-1] if has_page_pass else layers
    coloured = False
    for polygon, c in panels:
        placed = soft_panel_weights(polygon, c.box, page_size, feather=feather, grid_shape=grid)
        if placed is None or not placed[1].any():
            continue
        (c0, r0, c1, r1), w = placed
        part = _place(c.chroma, c.box, (c0, r0, c1, r1), page_size, grid)
        part *= w[..., None]
        acc[r0:r1, c0:c1] += part
        wsum[r0:r1, c0:c1] += w
        coloured = True
    # overlapping panels average by weight; where the panels' weight is short of 1 the page pass shows through
    if coloured:
        acc /= np.maximum(wsum, 1.0)[..., None]
    if has_page_pass:
        polygon, c = layers[-1]
        placed = soft_panel_weights(polygon, c.box, page_size, feather=feather, grid_shape=grid)
        if placed is not None:
            (c0, r0, c1, r1), w = placed
            rest = np.minimum(wsum[r0:r1, c0:c1], 1.0)
            np.subtract(1.0, rest, out=rest)
            rest *= w
            part = _place(c.chroma, c.box, (c0, r0, c1, r1), page_size, grid)
            part *= rest[..., None]
            acc[r0:r1, c0:c1] += part
            coloured = True
    return acc if coloured else None


def _clear_texts(chroma: np.ndarray, texts: Sequence[TextRegion], feather: float) -> None:
    """Zero chroma on every text region (in place), easing back to full chroma ``feather`` px outside it."""
    H, W = chroma.shape[:2]
    margin = int(math.ceil(max(feather, 0))) + 1
    for t in texts:
        x0, y0, x1, y1 = t.box
        if x0 >= W or y0 >= H:
            continue
        mask = t.mask if t.mask is not None else np.ones((y1 - y0, x1 - x0), bool)
        # the region with a margin around it, clipped to the page
        wx0, wy0 = max(0, x0 - margin), max(0, y0 - margin)
        wx1, wy1 = min(W, x1 + margin), min(H, y1 + margin)
        local = np.zeros((wy1 - wy0, wx1 - wx0), bool)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x1, W), min(y1, H)
        local[sy0 - wy0:sy1 - wy0, sx0 - wx0:sx1 - wx0] = mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        if not local.any():
            continue
        chroma[wy0:wy1, wx0:wx1] *= outer_ramp(local, feather)[..., None]
