"""Simple panel backgrounds: sky and horizon, streets of buildings, rooms, speed and focus lines, flat tones.

Each background is drawn on the panel's canvas before the characters, owned by nobody (owner 0), with thinner
lines than the characters, and with colours that become light screentones on the B/W page.
"""
from __future__ import annotations

import numpy as np

from shapely.geometry import Point
from shapely.ops import unary_union

from .canvas import Canvas, Palette

SKIES = ((150, 200, 240), (170, 210, 245), (120, 180, 235), (250, 200, 160))
GROUNDS = ((130, 175, 100), (170, 170, 165), (200, 185, 150), (150, 160, 120))
WALLS = ((236, 222, 196), (220, 226, 232), (240, 232, 214), (206, 218, 206))
FLOORS = ((182, 140, 100), (160, 130, 110), (200, 180, 150))
BUILDINGS = ((196, 190, 182), (214, 204, 186), (170, 176, 190), (226, 214, 200), (150, 150, 158))
WINDOWS = ((170, 205, 230), (120, 150, 180))
FLAT = ((250, 236, 200), (220, 236, 250), (250, 220, 230), (226, 240, 220), (236, 236, 236))
NIGHT = ((30, 34, 66), (44, 40, 70))

KINDS = ("plain", "sky", "street", "room", "speed", "focus", "flat", "night")
KIND_P = (0.26, 0.14, 0.14, 0.16, 0.1, 0.08, 0.08, 0.04)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def draw_background(canvas: Canvas, palette: Palette, kind: str, box, rng: np.random.Generator, page_w: int) -> dict:
    """Draw background ``kind`` over page box (x0, y0, x1, y1). Returns {"ground": y of the floor line or None}."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    lw = max(1.0, 0.0012 * page_w)
    ground = None
    rect = np.array([(x0 - 2, y0 - 2), (x1 + 2, y0 - 2), (x1 + 2, y1 + 2), (x0 - 2, y1 + 2)], float)
    if kind == "flat":
        canvas.fill(rect, palette.add(_pick(rng, FLAT), "bg"))
    elif kind == "night":
        canvas.fill(rect, palette.add(_pick(rng, NIGHT), "bg"))
        for _ in range(int(rng.integers(5, 15))):
            sx, sy = rng.uniform(x0, x1), rng.uniform(y0, y0 + 0.6 * h)
            r = rng.uniform(0.6, 1.6) * lw
            canvas.fill(np.array([(sx - r, sy), (sx, sy - r), (sx + r, sy), (sx, sy + r)]), 0)
    elif kind in ("sky", "street"):
        horizon = y0 + h * rng.uniform(0.45, 0.75)
        ground = horizon
        sky = _pick(rng, SKIES)
        canvas.fill(rect, palette.add(sky, "bg_lines" if rng.random() < 0.5 else "bg"))
        for _ in range(int(rng.integers(0, 3))):
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, horizon - 0.1 * h)
            r = rng.uniform(0.05, 0.12) * w
            blobs = []
            for k in range(5):
                bx, by, br = cx + (k - 2) * r * 0.55, cy + rng.uniform(-0.2, 0.2) * r, r * rng.uniform(0.4, 0.7)
                blobs.append(Point(bx, by).buffer(br, quad_segs=6))
            cloud = unary_union(blobs)
            if cloud.geom_type == "Polygon":
                canvas.fill(np.asarray(cloud.exterior.coords), 0, outline=lw)
        gpts = np.array([(x0 - 2, horizon), (x1 + 2, horizon), (x1 + 2, y1 + 2), (x0 - 2, y1 + 2)])
        canvas.fill(gpts, palette.add(_pick(rng, GROUNDS), "bg"), outline=lw)
        if kind == "street":
            bx = x0 - rng.uniform(0, 0.1) * w
            while bx < x1:
                bw_ = w * rng.uniform(0.12, 0.3)
                bh = h * rng.uniform(0.18, 0.5)
                col = palette.add(_pick(rng, BUILDINGS), "bg")
                b = np.array([(bx, horizon - bh), (bx + bw_, horizon - bh), (bx + bw_, horizon), (bx, horizon)])
                canvas.fill(b, col, outline=lw)
                win = palette.add(_pick(rng, WINDOWS), "bg")
                ww, wh = bw_ * 0.16, bh * 0.09
                for yy in np.arange(horizon - bh + wh, horizon - 1.5 * wh, wh * 2.0):
                    for xx in np.arange(bx + ww * 0.7, bx + bw_ - ww, ww * 1.8):
                        canvas.fill(np.array([(xx, yy), (xx + ww, yy), (xx + ww, yy + wh), (xx, yy + wh)]), win,
                                    outline=lw * 0.8)
                bx += bw_ + w * rng.uniform(0.0, 0.05)
            # road edge lines in perspective
            vx = rng.uniform(x0 + 0.3 * w, x1 - 0.3 * w)
            for t in (-1.2, -0.5, 0.5, 1.2):
                canvas.stroke(np.array([(vx + t * 0.05 * w, horizon), (vx + t * w, y1 + 2)]), lw)
    elif kind == "room":
        floor_y = y0 + h * rng.uniform(0.55, 0.8)
        ground = floor_y
        canvas.fill(rect, palette.add(_pick(rng, WALLS), "bg"))
        fl = np.array([(x0 - 2, floor_y), (x1 + 2, floor_y), (x1 + 2, y1 + 2), (x0 - 2, y1 + 2)])
        canvas.fill(fl, palette.add(_pick(rng, FLOORS), "bg"), outline=lw)
        for k in range(1, 8):
            yy = floor_y + (y1 - floor_y) * (k / 8) ** 1.6
            canvas.stroke(np.array([(x0, yy), (x1, yy)]), lw * 0.7)
        if rng.random() < 0.7:  # window with sky
            ww, wh = w * rng.uniform(0.2, 0.4), (floor_y - y0) * rng.uniform(0.35, 0.6)
            wx = rng.uniform(x0 + 0.05 * w, x1 - ww - 0.05 * w)
            wy = y0 + (floor_y - y0) * rng.uniform(0.1, 0.25)
            win = np.array([(wx, wy), (wx + ww, wy), (wx + ww, wy + wh), (wx, wy + wh)])
            canvas.fill(win, palette.add(_pick(rng, SKIES), "bg_lines"), outline=lw * 1.5)
            canvas.stroke(np.array([(wx + ww / 2, wy), (wx + ww / 2, wy + wh)]), lw * 1.5)
        if rng.random() < 0.5:  # a shelf / door
            dx = rng.uniform(x0, x1 - 0.15 * w)
            door = np.array([(dx, floor_y - 0.75 * (floor_y - y0)), (dx + 0.15 * w, floor_y - 0.75 * (floor_y - y0)),
                             (dx + 0.15 * w, floor_y), (dx, floor_y)])
            canvas.fill(door, palette.add(_pick(rng, FLOORS), "bg_hatch"), outline=lw)
    elif kind == "speed":
        ang = rng.uniform(-0.4, 0.4) + (np.pi / 2 if rng.random() < 0.3 else 0.0)
        d = np.array([np.cos(ang), np.sin(ang)])
        n_ = np.array([-d[1], d[0]])
        c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        span = np.hypot(w, h)
        for off in np.arange(-span / 2, span / 2, max(3.0, 0.004 * page_w)):
            if rng.random() < 0.45:
                continue
            a = c + n_ * off + d * rng.uniform(-0.7, 0.2) * span
            b = a + d * rng.uniform(0.2, 0.7) * span
            canvas.stroke(np.array([a, b]), max(1.0, lw * rng.uniform(0.5, 1.1)))
    elif kind == "focus":
        c = np.array([rng.uniform(x0 + 0.3 * w, x1 - 0.3 * w), rng.uniform(y0 + 0.3 * h, y1 - 0.3 * h)])
        R = np.hypot(w, h)
        r_in = 0.25 * min(w, h)
        for t in np.sort(rng.uniform(0, 2 * np.pi, int(np.clip(R / 4, 60, 260)))):
            r0 = r_in * rng.uniform(1.0, 1.8)
            width = rng.uniform(0.004, 0.012)
            tip = c + r0 * np.array([np.cos(t), np.sin(t)])
            a = c + R * np.array([np.cos(t - width), np.sin(t - width)])
            b = c + R * np.array([np.cos(t + width), np.sin(t + width)])
            canvas.ink_fill(np.array([tip, a, b]))
    return {"ground": ground}
