"""Speech balloons, lettering and sound effects.

Lettering imitates Japanese text: glyphs of 1-6 pen strokes (kana-like curves, kanji-like bars) set in vertical
columns read right to left. Balloons are ellipses with a tail towards the speaker, narration boxes, spiky shouts
and thought clouds; they hide whatever lies under them and may cross a panel border. Sound effects are big
stroked glyphs with a white halo drawn over the art.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union

from .canvas import SHIFT, Canvas, _pts

Glyph = list  # list of (N, 2) float arrays in the unit cell


def make_glyphs(rng: np.random.Generator, n: int = 48) -> list[Glyph]:
    glyphs = []
    for _ in range(n):
        strokes = []
        if rng.random() < 0.55:  # kana-like: 2-3 curvy strokes filling the cell
            for _ in range(int(rng.integers(2, 4))):
                k = int(rng.integers(3, 5))
                p = rng.uniform(0.05, 0.95, (k, 2))
                p = p[np.argsort(p[:, 1])] if rng.random() < 0.6 else p
                strokes.append(p)
        else:  # kanji-like: bars and a few sweeps
            for _ in range(int(rng.integers(4, 8))):
                t = rng.random()
                if t < 0.4:
                    y = rng.uniform(0.1, 0.9)
                    a, b = sorted(rng.uniform(0.08, 0.92, 2))
                    strokes.append(np.array([(a, y), (max(b, a + 0.25), y)]))
                elif t < 0.75:
                    x = rng.uniform(0.12, 0.88)
                    a, b = sorted(rng.uniform(0.08, 0.92, 2))
                    strokes.append(np.array([(x, a), (x, max(b, a + 0.25))]))
                else:
                    p0 = rng.uniform(0.2, 0.8, 2)
                    strokes.append(np.array([p0, p0 + rng.uniform(-0.4, 0.4, 2) * (1, 0.3) + (0, 0.35)]))
        glyphs.append([np.clip(s, 0.05, 0.95) for s in strokes])
    return glyphs


BANG = [np.array([(0.5, 0.1), (0.5, 0.62)]), np.array([(0.5, 0.8), (0.5, 0.86)])]
DOTS3 = [np.array([(0.5, y), (0.5, y + 0.04)]) for y in (0.2, 0.45, 0.7)]


def draw_glyph(canvas: Canvas, glyph: Glyph, x: float, y: float, s: float, thickness: float, angle: float = 0.0,
               value: int = 255, part_too: bool = False):
    """Glyph in the cell of size ``s`` whose top-left corner is (x, y)."""
    c, si = np.cos(angle), np.sin(angle)
    t = max(1, int(round(thickness)))
    polys = []
    for st in glyph:
        q = (st - 0.5) * s
        q = np.column_stack([q[:, 0] * c - q[:, 1] * si, q[:, 0] * si + q[:, 1] * c]) + (x + s / 2, y + s / 2)
        polys.append(_pts(q, canvas.ox, canvas.oy))
    cv2.polylines(canvas.ink, polys, False, value, t, cv2.LINE_AA if value else cv2.LINE_8, SHIFT)
    if part_too:
        cv2.polylines(canvas.part, polys, False, 0, t, cv2.LINE_8, SHIFT)
    cv2.polylines(canvas.owner, polys, False, 0, t, cv2.LINE_8, SHIFT)
    return polys, t


@dataclass
class Balloon:
    box: tuple[int, int, int, int]
    interior: np.ndarray  # bool, box coordinates
    polygon: Polygon


def _text_block(rng, gs: float, max_cols: int = 4):
    n_cols = int(rng.integers(1, max_cols + 1))
    lens = [int(rng.integers(2, 9)) for _ in range(n_cols)]
    return lens


def _balloon_shape(kind: str, cx: float, cy: float, a: float, b: float, rng) -> Polygon:
    t = np.linspace(0, 2 * np.pi, 56, endpoint=False)
    if kind == "box":
        r = min(a, b) * 0.25
        return Polygon([(cx - a, cy - b), (cx + a, cy - b), (cx + a, cy + b), (cx - a, cy + b)]).buffer(
            -r).buffer(r) if r > 2 else Polygon([(cx - a, cy - b), (cx + a, cy - b), (cx + a, cy + b), (cx - a, cy + b)])
    if kind == "shout":
        n = int(rng.integers(14, 24))
        tt = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        r = np.where(np.arange(2 * n) % 2 == 0, 1.28, 0.98) * rng.uniform(0.95, 1.05, 2 * n)
        return Polygon(np.column_stack([cx + a * r * np.cos(tt), cy + b * r * np.sin(tt)]))
    if kind == "thought":
        base = Polygon(np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)]))
        bumps = [Point(cx + a * np.cos(u), cy + b * np.sin(u)).buffer(min(a, b) * 0.3, quad_segs=6)
                 for u in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
        return unary_union([base] + bumps)
    return Polygon(np.column_stack([cx + a * np.cos(t), cy + b * np.sin(t)]))


def place_balloons(canvas: Canvas, rng: np.random.Generator, panel_box, heads: list, taken: list, page_w: int,
                   page_h: int, glyphs: list[Glyph], n: int) -> list[Balloon]:
    """Place up to ``n`` balloons for a panel (page canvas, page coordinates); ``taken`` collects the boxes of
    balloons already on the page so no two overlap."""
    px0, py0, px1, py1 = panel_box
    pw, ph = px1 - px0, py1 - py0
    lw = max(1.5, 0.0018 * page_w)
    out = []
    for _ in range(n):
        gs = float(np.clip(0.021 * page_w, 8, 44)) * rng.uniform(0.85, 1.1)
        kind = str(rng.choice(["speech", "box", "shout", "thought"], p=[0.68, 0.14, 0.12, 0.06]))
        lens = _text_block(rng, gs)
        cross = rng.random() < 0.18
        best = None
        for _attempt in range(4):
            a, b = _balloon_size(kind, lens, gs)
            if 2 * a > (1.2 if cross else 0.95) * pw or 2 * b > 0.95 * ph:
                lens = _shrink(lens)
                continue
            best, cover = _best_position(rng, kind, a, b, lw, cross, panel_box, heads, taken, page_w, page_h)
            if best is not None and cover <= 0.3:
                break
            best = None
            lens = _shrink(lens)
            cross = cross or _attempt >= 1  # let it leave the panel rather than hide a face
        if best is None:
            continue
        cx, cy = best
        shape = _balloon_shape(kind, cx, cy, a, b, rng)
        # tail towards the speaker's head (or downwards)
        if kind in ("speech", "shout"):
            if heads:
                h = heads[int(rng.integers(len(heads)))]
                tx, ty = (h[0] + h[2]) / 2, (h[1] + h[3]) / 2
                head_r = 0.4 * min(h[2] - h[0], h[3] - h[1])  # the tail points at the face, it does not enter it
            else:
                tx, ty = cx + rng.uniform(-a, a), cy + 3 * b
                head_r = 0.0
            th = np.arctan2((ty - cy) / b, (tx - cx) / a)
            dist = np.hypot(tx - cx, ty - cy)
            edge = np.array([cx + a * np.cos(th), cy + b * np.sin(th)])
            reach = min(0.55 * min(a, b) + 0.5 * gs,
                        max(0.0, dist - np.hypot(edge[0] - cx, edge[1] - cy) - head_r - 0.3 * gs))
            if reach > 0.4 * gs:
                d = np.array([np.cos(np.arctan2(ty - cy, tx - cx)), np.sin(np.arctan2(ty - cy, tx - cx))])
                tip = edge + d * reach + rng.uniform(-0.3, 0.3, 2) * gs
                w_ = 0.22 if kind == "speech" else 0.12
                b0 = np.array([cx + a * 0.9 * np.cos(th - w_), cy + b * 0.9 * np.sin(th - w_)])
                b1 = np.array([cx + a * 0.9 * np.cos(th + w_), cy + b * 0.9 * np.sin(th + w_)])
                tail = Polygon([b0, tip, b1])
                if tail.is_valid:
                    shape = unary_union([shape, tail])
        if shape.geom_type != "Polygon":
            shape = shape.convex_hull
        bounds = shape.bounds
        if bounds[0] - lw < 0 or bounds[1] - lw < 0 or bounds[2] + lw > page_w or bounds[3] + lw > page_h:
            shape = _balloon_shape(kind, cx, cy, a, b, rng)  # a tail off the page: drop it
            if shape.geom_type != "Polygon":
                shape = shape.convex_hull
            bounds = shape.bounds
        pts = np.asarray(shape.exterior.coords)
        canvas.fill(pts, 0, 0, outline=lw)
        if kind == "thought" and heads:
            h = heads[0]
            for k, r in enumerate((0.35, 0.22, 0.14)):
                q = np.array([cx, cy + b]) + (np.array([(h[0] + h[2]) / 2, h[1]]) - (cx, cy + b)) * (0.2 + 0.2 * k)
                circ = np.asarray(Point(q).buffer(r * gs, quad_segs=4).exterior.coords)
                canvas.fill(circ, 0, 0, outline=lw * 0.8)
        x0 = max(0, int(np.floor(bounds[0] - lw)))
        y0 = max(0, int(np.floor(bounds[1] - lw)))
        x1 = min(page_w, int(np.ceil(bounds[2] + lw)) + 1)
        y1 = min(page_h, int(np.ceil(bounds[3] + lw)) + 1)
        fill = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(fill, [_pts(pts, x0, y0)], 1, cv2.LINE_8, SHIFT)
        interior = (fill > 0) & (canvas.ink[y0 - canvas.oy:y1 - canvas.oy, x0 - canvas.ox:x1 - canvas.ox] == 0)
        # lettering: columns right to left, centred
        col_pitch, row_pitch = 1.3 * gs, 1.08 * gs
        total_w = len(lens) * col_pitch - 0.3 * gs
        top = cy - max(lens) * row_pitch / 2
        thick = max(1.0, 0.1 * gs)
        for ci, ln in enumerate(lens):
            gx = cx + total_w / 2 - (ci + 1) * col_pitch + 0.3 * gs
            for ri in range(ln):
                if ri == ln - 1 and ln > 2 and rng.random() < 0.3:
                    g = BANG if kind == "shout" or rng.random() < 0.5 else DOTS3
                else:
                    g = glyphs[int(rng.integers(len(glyphs)))]
                draw_glyph(canvas, g, gx, top + ri * row_pitch, gs, thick)
        taken.append((x0, y0, x1, y1))
        out.append(Balloon((x0, y0, x1, y1), interior, shape))
    return out


def _balloon_size(kind: str, lens, gs: float) -> tuple[float, float]:
    """Half-axes of a balloon holding columns of ``lens`` glyphs of size ``gs``."""
    bw_ = len(lens) * 1.3 * gs - 0.3 * gs
    bh_ = max(lens) * 1.08 * gs
    if kind == "box":
        return bw_ / 2 + 0.6 * gs, bh_ / 2 + 0.6 * gs
    return bw_ * 0.76 + 0.4 * gs, bh_ * 0.76 + 0.4 * gs


def _shrink(lens):
    lens = lens[: max(1, len(lens) - 1)]
    return [max(1, int(round(v * 0.75))) for v in lens]


def _best_position(rng, kind, a, b, lw, cross, panel_box, heads, taken, page_w, page_h):
    """Centre for a balloon of half-axes (a, b): inside its panel, off faces, clear of other balloons.
    Returns (centre or None, largest fraction of a head it covers)."""
    px0, py0, px1, py1 = panel_box
    ph = py1 - py0
    best, best_score, best_cover = None, np.inf, 1.0
    for _try in range(16):
        if kind == "box" and rng.random() < 0.6:  # narration boxes sit in a panel corner
            cx = px1 - a - lw if rng.random() < 0.6 else px0 + a + lw
            cy = py0 + b + lw
        else:
            slack = 0.45 if cross else -0.05
            cx = rng.uniform(px0 + a * (1 - slack), max(px0 + a * (1 - slack) + 1, px1 - a * (1 - slack)))
            cy = rng.uniform(py0 + b * (1 - slack), max(py0 + b * (1 - slack) + 1, py0 + 0.75 * ph))
        m = 2 * lw + 2 + (0.3 * max(a, b) if kind == "shout" else 0.0)
        if cx - a - m < 0 or cy - b - m < 0 or cx + a + m > page_w or cy + b + m > page_h:
            continue
        bb = (cx - a - m, cy - b - m, cx + a + m, cy + b + m)
        if any(_overlap(bb, t) > 0 for t in taken):
            continue
        covers = [_overlap(bb, h) / max(1.0, (h[2] - h[0]) * (h[3] - h[1])) for h in heads]
        cover = max(covers, default=0.0)
        # faces stay readable: covering a head costs more than anything but leaving the panel
        score = sum(covers) * 3.0 + (cy - py0) / max(ph, 1) * 0.3
        inside = _overlap(bb, panel_box) / ((bb[2] - bb[0]) * (bb[3] - bb[1]))
        score += (1 - inside) * (0.5 if cross else 8.0)
        if score < best_score:
            best, best_score, best_cover = (cx, cy), score, cover
    return best, best_cover


def _overlap(a, b) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    return ix * iy if ix > 0 and iy > 0 else 0.0


def draw_sfx(canvas: Canvas, rng: np.random.Generator, panel_box, taken: list, heads: list, page_w: int,
             page_h: int, glyphs: list[Glyph]):
    """A sound effect (2-4 big glyphs with a white halo) in a panel. Returns (box, mask) or None."""
    px0, py0, px1, py1 = panel_box
    pw, ph = px1 - px0, py1 - py0
    s = float(np.clip(0.021 * page_w, 8, 44)) * rng.uniform(2.0, 3.6)
    n = int(rng.integers(2, 5))
    if s * 1.2 > min(pw, ph) * 0.6:
        s = min(pw, ph) * 0.5 / 1.2
    if s < 10:
        return None
    vertical = rng.random() < 0.5
    step = np.array([0.0, 0.95 * s]) if vertical else np.array([0.95 * s, 0.0])
    step = step + rng.uniform(-0.25, 0.25, 2) * s
    span = step * (n - 1) + s
    for _ in range(10):
        x = rng.uniform(px0, max(px0 + 1, px1 - abs(span[0])))
        y = rng.uniform(py0, max(py0 + 1, py1 - abs(span[1])))
        bb = (min(x, x + step[0] * (n - 1)) - 0.3 * s, min(y, y + step[1] * (n - 1)) - 0.3 * s,
              max(x, x + step[0] * (n - 1)) + 1.3 * s, max(y, y + step[1] * (n - 1)) + 1.3 * s)
        if bb[0] < 0 or bb[1] < 0 or bb[2] > page_w or bb[3] > page_h:
            continue
        if any(_overlap(bb, t) > 0 for t in taken) or any(_overlap(bb, h) > 0 for h in heads):
            continue
        break
    else:
        return None
    x0, y0 = int(np.floor(bb[0])), int(np.floor(bb[1]))
    x1, y1 = int(np.ceil(bb[2])), int(np.ceil(bb[3]))
    thick = max(2.0, 0.12 * s)
    halo = thick + max(2.0, 0.1 * s)
    chosen = [glyphs[int(rng.integers(len(glyphs)))] for _ in range(n)]
    angles = rng.uniform(-0.3, 0.3, n)
    local = Canvas(y1 - y0, x1 - x0, x0, y0)
    for k in range(n):
        gx, gy = x + step[0] * k, y + step[1] * k
        draw_glyph(local, chosen[k], gx, gy, s, halo, angles[k], value=255)
    mask = local.ink > 0
    # halo: paper white; then the black strokes
    region = (slice(y0 - canvas.oy, y1 - canvas.oy), slice(x0 - canvas.ox, x1 - canvas.ox))
    canvas.part[region][mask] = 0
    canvas.ink[region][mask] = 0
    canvas.owner[region][mask] = 0
    for k in range(n):
        gx, gy = x + step[0] * k, y + step[1] * k
        draw_glyph(canvas, chosen[k], gx, gy, s, thick, angles[k])
    taken.append((x0, y0, x1, y1))
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return (x0 + int(bx0), y0 + int(by0), x0 + int(bx1), y0 + int(by1)), mask[by0:by1, bx0:bx1]
