"""Drawing layers shared by the synthetic page generator: a palette, a layered canvas and screentones.

A page is drawn once into three uint8 layers of page size (H, W):

- ``part``: index into the page's :class:`Palette` (0 = paper white). The colour edition is ``palette.rgb[part]``;
  the B/W edition turns every palette entry into a screentone (dots, lines, hatching), flat gray, white or black.
- ``ink``: black line-art coverage (0..255, anti-aliased), laid over both editions identically.
- ``owner``: which character instance (1-based, 0 = none) each pixel shows; ground-truth masks come from it.

Drawing follows the painter's rule: a filled shape overwrites the three layers inside it (so it hides the lines
and fills of what lies behind it) and then draws its own outline. Coordinates are float page pixels; OpenCV gets
them with 4 fractional bits.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from ..colorspace import rgb_to_ab

SHIFT = 4
_SCALE = float(1 << SHIFT)

# B/W renderings of a palette entry
WHITE, BLACK, DOTS, DOTS_COARSE, LINES, HATCH, FLAT = range(7)
SCREEN_KINDS = (DOTS, DOTS_COARSE, LINES, HATCH)


def lightness(rgb) -> float:
    return rgb_to_ab(tuple(int(v) for v in rgb))[0]


def shade_rgb(rgb, factor: float = 0.78) -> tuple[int, int, int]:
    """A darker, slightly more saturated version of ``rgb`` (cel-shading shadow colour)."""
    r, g, b = (float(v) for v in rgb)
    m = (r + g + b) / 3.0
    out = [(m + (v - m) * 1.1) * factor for v in (r, g, b)]
    return tuple(int(np.clip(round(v), 0, 255)) for v in out)


def tone_for(rgb, role: str) -> tuple[int, float]:
    """How a colour of a given role is rendered on the B/W page: ``(kind, coverage 0..1)``.

    Darkness follows CIE L*: dark hair is solid black, light skin and light clothes stay white, the middle range
    becomes dot screentone whose ink coverage grows as L* falls. Backgrounds use lighter, coarser tones.
    """
    L = lightness(rgb)
    if role == "paper":
        return WHITE, 0.0
    if role == "black":
        return BLACK, 1.0
    if role == "hair":
        if L < 34:
            return BLACK, 1.0
        if L > 68:
            return WHITE, 0.0
        return DOTS, float(np.clip(0.25 + (68 - L) / 34 * 0.4, 0.25, 0.65))
    if role == "skin":
        if L > 62:
            return WHITE, 0.0
        return DOTS, float(np.clip((80 - L) / 100, 0.15, 0.5))
    if role == "eyes":
        if L < 42:
            return BLACK, 1.0
        return DOTS, float(np.clip(1.0 - L / 100, 0.45, 0.8))
    if role == "cloth":
        if L > 84:
            return WHITE, 0.0
        if L < 24:
            return BLACK, 1.0
        return DOTS, float(np.clip((88 - L) / 75, 0.1, 0.8))
    if role == "bg":
        if L > 88:
            return WHITE, 0.0
        if L < 18:
            return BLACK, 1.0
        return DOTS_COARSE, float(np.clip((94 - L) / 95, 0.06, 0.7))
    if role == "bg_lines":
        if L > 90:
            return WHITE, 0.0
        return LINES, float(np.clip((96 - L) / 90, 0.08, 0.6))
    if role == "bg_hatch":
        return HATCH, float(np.clip((100 - L) / 100, 0.15, 0.5))
    if role == "shade":
        # the shadow of a light colour becomes hatching, of a mid colour a denser tone, of a dark one black
        if L < 30:
            return BLACK, 1.0
        if L > 62:
            return HATCH, 0.25
        return DOTS, float(np.clip((88 - L) / 75 + 0.2, 0.3, 0.9))
    raise ValueError(f"unknown palette role {role!r}")


class Palette:
    """Page palette: entry 0 is paper white. At most 255 entries (the part layer is uint8)."""

    def __init__(self, gray_tones: bool = False):
        self.gray_tones = gray_tones
        self.rgb: list[tuple[int, int, int]] = [(255, 255, 255)]
        self.kind: list[int] = [WHITE]
        self.cov: list[float] = [0.0]
        self._index: dict = {((255, 255, 255), "paper"): 0}

    def add(self, rgb, role: str) -> int:
        rgb = tuple(int(v) for v in rgb)
        key = (rgb, role)
        if key in self._index:
            return self._index[key]
        if len(self.rgb) >= 255:
            raise RuntimeError("synthetic page palette is full (255 colours)")
        kind, cov = tone_for(rgb, role)
        if self.gray_tones and kind in SCREEN_KINDS:
            kind = FLAT  # digital manga: flat gray instead of dot screens
        self._index[key] = len(self.rgb)
        self.rgb.append(rgb)
        self.kind.append(kind)
        self.cov.append(cov)
        return self._index[key]

    def luts(self):
        n = 256
        rgb = np.full((n, 3), 255, np.uint8)
        rgb[: len(self.rgb)] = np.array(self.rgb, np.uint8)
        kind = np.zeros(n, np.uint8)
        kind[: len(self.kind)] = self.kind
        cov = np.zeros(n, np.uint8)
        cov[: len(self.cov)] = np.clip(np.round(np.array(self.cov) * 255), 0, 255).astype(np.uint8)
        return rgb, kind, cov


def _pts(pts, ox: float, oy: float) -> np.ndarray:
    a = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    a = a - (ox, oy)
    return np.round(a * _SCALE).astype(np.int32)


class Canvas:
    """The three drawing layers over a window ``(ox, oy, ox + w, oy + h)`` of the page (float page coordinates)."""

    def __init__(self, h: int, w: int, ox: int = 0, oy: int = 0, background: int = 0):
        self.h, self.w, self.ox, self.oy = int(h), int(w), int(ox), int(oy)
        self.part = np.full((self.h, self.w), background, np.uint8)
        self.ink = np.zeros((self.h, self.w), np.uint8)
        self.owner = np.zeros((self.h, self.w), np.uint8)

    def fill(self, pts, part: int, owner: int = 0, outline: float = 0.0, clear_ink: bool = True):
        """Fill a polygon (N, 2) with palette entry ``part``, hiding what lies behind; optional black outline."""
        p = _pts(pts, self.ox, self.oy)
        if len(p) < 3:
            return
        p = [p]
        cv2.fillPoly(self.part, p, int(part), cv2.LINE_8, SHIFT)
        if clear_ink:
            cv2.fillPoly(self.ink, p, 0, cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.owner, p, int(owner), cv2.LINE_8, SHIFT)
        if outline > 0:
            self.stroke(pts, outline, owner, closed=True)

    def paint(self, pts, part: int):
        """Fill only the colour layer (shadows inside a shape: lines and owner stay)."""
        p = _pts(pts, self.ox, self.oy)
        if len(p) >= 3:
            cv2.fillPoly(self.part, [p], int(part), cv2.LINE_8, SHIFT)

    def stroke(self, pts, thickness: float, owner: int = 0, closed: bool = False):
        """A black line along ``pts``; its pixels belong to ``owner``."""
        p = _pts(pts, self.ox, self.oy)
        if len(p) < 2:
            return
        t = max(1, int(round(thickness)))
        cv2.polylines(self.ink, [p], closed, 255, t, cv2.LINE_AA, SHIFT)
        cv2.polylines(self.owner, [p], closed, int(owner), t, cv2.LINE_8, SHIFT)

    def ink_fill(self, pts, owner: int = 0):
        """A solid black shape (pupils, lash lines, black wedges)."""
        p = _pts(pts, self.ox, self.oy)
        if len(p) < 3:
            return
        cv2.fillPoly(self.ink, [p], 255, cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.owner, [p], int(owner), cv2.LINE_8, SHIFT)

    def limb(self, path, radii, part: int, owner: int = 0, outline: float = 0.0):
        """A thick stroke along ``path`` (N, 2) whose half-width goes through ``radii`` (N,), with round ends.

        Drawn as convex pieces (hull of two discs per segment): first every piece grown by half the outline in
        black, then every piece in colour, so the outline follows the union of the pieces without inner seams.
        """
        path = np.asarray(path, np.float64).reshape(-1, 2)
        radii = np.asarray(radii, np.float64).reshape(-1)
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        circ = np.column_stack([np.cos(t), np.sin(t)])

        def pieces(grow):
            out = []
            for k in range(len(path) - 1):
                pts = np.vstack([path[k] + circ * (radii[k] + grow), path[k + 1] + circ * (radii[k + 1] + grow)])
                out.append(cv2.convexHull(_pts(pts, self.ox, self.oy)))
            return out

        if outline > 0:
            for p in pieces(outline / 2):
                cv2.fillConvexPoly(self.ink, p, 255, cv2.LINE_AA, SHIFT)
                cv2.fillConvexPoly(self.owner, p, int(owner), cv2.LINE_8, SHIFT)
        for p in pieces(-outline / 2 if outline > 0 else 0.0):
            cv2.fillConvexPoly(self.ink, p, 0, cv2.LINE_AA, SHIFT)
        for p in pieces(0.0):
            cv2.fillConvexPoly(self.part, p, int(part), cv2.LINE_8, SHIFT)
            cv2.fillConvexPoly(self.owner, p, int(owner), cv2.LINE_8, SHIFT)

    def union(self, polys, limbs, part: int, owner: int = 0, outline: float = 0.0):
        """Several polygons and limbs filled as one shape: the outline (``outline`` px, just outside) follows their
        union, with no seams where they overlap."""
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        circ = np.column_stack([np.cos(t), np.sin(t)])

        def pieces(grow):
            out = []
            for path, radii in limbs:
                for k in range(len(path) - 1):
                    pts = np.vstack([path[k] + circ * (radii[k] + grow), path[k + 1] + circ * (radii[k + 1] + grow)])
                    out.append(cv2.convexHull(_pts(pts, self.ox, self.oy)))
            return out

        polys = [_pts(p, self.ox, self.oy) for p in polys]
        if outline > 0:
            th = max(1, int(round(2 * outline)))
            if polys:
                cv2.fillPoly(self.ink, polys, 255, cv2.LINE_AA, SHIFT)
                cv2.polylines(self.ink, polys, True, 255, th, cv2.LINE_AA, SHIFT)
                cv2.fillPoly(self.owner, polys, int(owner), cv2.LINE_8, SHIFT)
                cv2.polylines(self.owner, polys, True, int(owner), th, cv2.LINE_8, SHIFT)
            for p in pieces(outline):
                cv2.fillConvexPoly(self.ink, p, 255, cv2.LINE_AA, SHIFT)
                cv2.fillConvexPoly(self.owner, p, int(owner), cv2.LINE_8, SHIFT)
        if polys:
            cv2.fillPoly(self.ink, polys, 0, cv2.LINE_AA, SHIFT)
            cv2.fillPoly(self.part, polys, int(part), cv2.LINE_8, SHIFT)
            cv2.fillPoly(self.owner, polys, int(owner), cv2.LINE_8, SHIFT)
        for p in pieces(0.0):
            cv2.fillConvexPoly(self.ink, p, 0, cv2.LINE_AA, SHIFT)
            cv2.fillConvexPoly(self.part, p, int(part), cv2.LINE_8, SHIFT)
            cv2.fillConvexPoly(self.owner, p, int(owner), cv2.LINE_8, SHIFT)

    def erase(self, pts, thickness: float = 0.0):
        """Paper white over a polygon (and a band of ``thickness`` around it): nothing is drawn there."""
        p = [_pts(pts, self.ox, self.oy)]
        for layer, v in ((self.part, 0), (self.ink, 0), (self.owner, 0)):
            cv2.fillPoly(layer, p, v, cv2.LINE_8, SHIFT)
            if thickness > 0:
                cv2.polylines(layer, p, True, v, max(1, int(round(thickness))), cv2.LINE_8, SHIFT)


# --- screentones ------------------------------------------------------------------------------------------------


def _cdf_threshold(spot_fn, n: int, oversample: int = 8) -> np.ndarray:
    """Threshold tile (n, n) uint8: a pixel is inked when coverage*255 > threshold. The spot function is
    rank-normalised over one period so that coverage c inks a fraction c of the area (linear tone response)."""
    fine = (np.arange(n * oversample) + 0.5) / oversample
    fy, fx = np.meshgrid(fine, fine, indexing="ij")
    dist = np.sort(spot_fn(fx, fy).ravel())
    c = np.arange(n) + 0.5
    cy, cx = np.meshgrid(c, c, indexing="ij")
    s = spot_fn(cx, cy)
    # fraction of the period whose spot value is >= s: the dot centres (large s) ink first
    frac = 1.0 - np.searchsorted(dist, s, side="left") / dist.size
    return np.clip(np.round(frac * 255), 0, 254).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _screen_tile(kind: int, scale: int) -> np.ndarray:
    """One period tile of a screen. Dot screens use an integer lattice vector (a, b) so the pattern repeats every
    a^2 + b^2 pixels in x and y: the page map is a cheap np.tile."""
    if kind in (DOTS, DOTS_COARSE):
        a, b = (scale, scale) if kind == DOTS else (scale + 1 + scale // 2, scale // 2 + 1)
        n = a * a + b * b

        def spot(x, y):
            u = 2 * np.pi * (x * a + y * b) / n
            v = 2 * np.pi * (-x * b + y * a) / n
            return np.cos(u) + np.cos(v)

        return _cdf_threshold(spot, n)
    if kind == LINES:
        n = max(3, scale + 2)
        return _cdf_threshold(lambda x, y: np.cos(2 * np.pi * y / n), n)
    if kind == HATCH:
        n = max(4, 2 * scale + 1)
        return _cdf_threshold(lambda x, y: np.cos(2 * np.pi * (x - y) / n), n)
    raise ValueError(kind)


@functools.lru_cache(maxsize=16)
def screen_map(kind: int, scale: int, h: int, w: int) -> np.ndarray:
    tile = _screen_tile(kind, scale)
    n = tile.shape[0]
    out = np.tile(tile, (h // n + 1, w // n + 1))[:h, :w]
    out.setflags(write=False)
    return out


def screen_scale(page_width: int) -> int:
    """Screen lattice step for a page width: about 4 px dot pitch at 1400 px, never finer than 2 px."""
    return max(1, int(round(page_width / 470)))


def _apply_ink(img: np.ndarray, ink: np.ndarray) -> np.ndarray:
    keep = cv2.bitwise_not(ink)
    if img.ndim == 3:
        keep = cv2.merge([keep, keep, keep])
    return cv2.multiply(img, keep, scale=1.0 / 255.0)


def render_color(part: np.ndarray, ink: np.ndarray, palette: Palette) -> np.ndarray:
    """uint8 (H, W, 3) RGB colour edition: palette colours under the line art."""
    rgb_lut, _, _ = palette.luts()
    color = cv2.merge([cv2.LUT(part, np.ascontiguousarray(rgb_lut[:, c])) for c in range(3)])
    return _apply_ink(color, ink)


def render_bw(part: np.ndarray, ink: np.ndarray, palette: Palette, scale: int) -> np.ndarray:
    """uint8 (H, W) B/W edition: each palette entry as screentone / flat gray / white / black, under the line art."""
    h, w = part.shape
    _, kind_lut, cov_lut = palette.luts()
    present = cv2.calcHist([part], [0], None, [256], [0, 256]).ravel() > 0
    kinds = set(int(k) for k in kind_lut[present])
    kind = cv2.LUT(part, kind_lut)
    cov = cv2.LUT(part, cov_lut)
    dark = np.zeros((h, w), np.uint8)
    if BLACK in kinds:
        dark |= cv2.compare(kind, BLACK, cv2.CMP_EQ)
    for k in SCREEN_KINDS:
        if k in kinds:
            hit = cv2.compare(screen_map(k, scale, h, w), cov, cv2.CMP_LT)
            dark |= cv2.bitwise_and(hit, cv2.compare(kind, k, cv2.CMP_EQ))
    bw = cv2.bitwise_not(dark)
    if FLAT in kinds:
        np.copyto(bw, cv2.bitwise_not(cov), where=kind == FLAT)
    return _apply_ink(bw, ink)


def render_layers(part: np.ndarray, ink: np.ndarray, palette: Palette, scale: int):
    """(colour uint8 (H, W, 3), B/W uint8 (H, W)) from the layers."""
    return render_color(part, ink, palette), render_bw(part, ink, palette, scale)
