"""Panel layouts for synthetic manga pages.

Two sources of panel boxes, one shared perturbation step:

- the Manga109 frame statistics (``../shared/data/layouts/manga109_frames.json.gz``): a real page's frame boxes,
  cleaned (nested frames dropped, overlapping ones cut apart with a gutter) and scaled to the page size;
- a procedural grammar otherwise: rows of 1-3 panels, tall cells split into stacks, manga gutters (horizontal
  gutters wider than vertical ones).

Then a recursive XY-cut gives the manga reading order (rows top to bottom, right to left inside a row) together
with the guillotine cuts, and the perturbation slants some cuts (all panels along a cut follow the same slanted
line, as in a real page), lets some panels bleed off the page edge, leaves some frameless and sometimes paints
the gutters black. Every panel is a convex quadrilateral ``(TL, TR, BR, BL)`` in page pixels.
"""
from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from shapely.geometry import Polygon

import manga_pipeline

DEFAULT_LAYOUTS = (
    Path(manga_pipeline.__file__).resolve().parents[1].parent / "shared" / "data" / "layouts" / "manga109_frames.json.gz"
)


@dataclass
class PanelSpec:
    quad: np.ndarray  # float (4, 2): TL, TR, BR, BL in page pixels
    framed: bool = True
    bleed: bool = False

    @property
    def polygon(self) -> Polygon:
        return Polygon(self.quad)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (float(self.quad[:, 0].min()), float(self.quad[:, 1].min()),
                float(self.quad[:, 0].max()), float(self.quad[:, 1].max()))


@dataclass
class Layout:
    panels: list[PanelSpec]  # in reading order
    black_gutters: bool
    source: str


def resolve_layouts(layouts) -> Path | None:
    """``"auto"`` -> the Manga109 frames file when present, else None (grammar); None -> None; a path -> it."""
    if layouts is None:
        return None
    if isinstance(layouts, str) and layouts == "auto":
        return DEFAULT_LAYOUTS if DEFAULT_LAYOUTS.is_file() else None
    path = Path(layouts)
    if not path.is_file():
        raise FileNotFoundError(f"layouts file {path} does not exist (pass layouts=None for the procedural grammar)")
    return path


@functools.lru_cache(maxsize=4)
def load_frames(path: Path) -> tuple[tuple[str, int, int, tuple[tuple[int, int, int, int], ...]], ...]:
    """Pages of a Manga109 frames file usable as layouts: (name, width, height, frame boxes), 2..10 frames."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        by_index = data["by_index"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not a Manga109 frames file (no 'by_index' key)") from None
    pages = []
    for key in sorted(by_index, key=lambda k: int(k) if str(k).isdigit() else 0):
        title = by_index[key]
        name = title.get("title_guess", str(key))
        for p in title.get("pages", []):
            frames = p.get("frames") or []
            if 2 <= len(frames) <= 10 and p.get("w", 0) > 0 and p.get("h", 0) > 0:
                boxes = tuple(tuple(int(v) for v in f) for f in frames if len(f) == 4)
                pages.append((f"{name}/{p.get('i')}", int(p["w"]), int(p["h"]), boxes))
    if not pages:
        raise ValueError(f"{path} holds no page with 2-10 frames")
    return tuple(pages)


# --- boxes -------------------------------------------------------------------------------------------------------


def grammar_boxes(rng: np.random.Generator, w: int, h: int) -> list[list[float]]:
    """Axis-aligned panel boxes of a procedural manga page (guillotine rows / cells / stacks)."""
    ml = w * rng.uniform(0.055, 0.085)
    mr = w * rng.uniform(0.055, 0.085)
    mt = h * rng.uniform(0.045, 0.07)
    mb = h * rng.uniform(0.05, 0.08)
    gh = h * rng.uniform(0.012, 0.024)  # between rows
    gv = w * rng.uniform(0.008, 0.016)  # between panels of a row
    n_rows = int(rng.choice([1, 2, 3, 4, 5], p=[0.03, 0.17, 0.42, 0.3, 0.08]))
    props = rng.dirichlet(np.full(n_rows, 5.0))
    props = np.maximum(props, 0.1)
    props /= props.sum()
    inner_h = (h - mt - mb) - gh * (n_rows - 1)
    boxes = []
    y = mt
    for r in range(n_rows):
        rh = inner_h * props[r]
        tall = rh > 0.3 * h
        n_cols = int(rng.choice([1, 2, 3], p=[0.25, 0.5, 0.25] if not tall else [0.15, 0.65, 0.2]))
        widths = rng.dirichlet(np.full(n_cols, 4.0))
        widths = np.maximum(widths, 0.18)
        widths /= widths.sum()
        inner_w = (w - ml - mr) - gv * (n_cols - 1)
        x = w - mr  # fill right to left (irrelevant for geometry)
        for c in range(n_cols):
            cw = inner_w * widths[c]
            x0, x1 = x - cw, x
            if rh > 0.22 * h and n_cols > 1 and rng.random() < (0.45 if tall else 0.15):
                k = 2 if rng.random() < 0.75 else 3
                sub = rng.dirichlet(np.full(k, 4.0))
                sub = np.maximum(sub, 0.25)
                sub /= sub.sum()
                sh = rh - gh * 0.8 * (k - 1)
                yy = y
                for s in range(k):
                    boxes.append([x0, yy, x1, yy + sh * sub[s]])
                    yy += sh * sub[s] + gh * 0.8
            else:
                boxes.append([x0, y, x1, y + rh])
            x = x0 - gv
        y += rh + gh
    return boxes


def manga109_boxes(rng: np.random.Generator, w: int, h: int, path: Path) -> tuple[list[list[float]], str]:
    """A random real page's frames scaled to (w, h), with nested frames dropped and overlaps cut apart."""
    pages = load_frames(path)
    for _ in range(20):
        name, pw, ph, frames = pages[int(rng.integers(len(pages)))]
        sx, sy = w / pw, h / ph
        boxes = []
        for x0, y0, x1, y1 in frames:
            x0, x1 = max(0.0, min(x0, x1) * sx), min(float(w), max(x0, x1) * sx)
            y0, y1 = max(0.0, min(y0, y1) * sy), min(float(h), max(y0, y1) * sy)
            if x1 - x0 >= 0.06 * w and y1 - y0 >= 0.04 * h:
                boxes.append([x0, y0, x1, y1])
        boxes = _clean_boxes(boxes, gap=max(3.0, 0.006 * w))
        if len(boxes) >= 2:
            return boxes, f"manga109:{name}"
    return grammar_boxes(rng, w, h), "grammar"


def _clean_boxes(boxes: list[list[float]], gap: float) -> list[list[float]]:
    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    # drop frames lying mostly inside a bigger one (insets, duplicated annotations)
    boxes = sorted(boxes, key=area, reverse=True)
    kept: list[list[float]] = []
    for b in boxes:
        inside = False
        for k in kept:
            ix = min(b[2], k[2]) - max(b[0], k[0])
            iy = min(b[3], k[3]) - max(b[1], k[1])
            if ix > 0 and iy > 0 and ix * iy > 0.5 * area(b):
                inside = True
                break
        if not inside:
            kept.append(list(b))
    # cut overlapping or touching frames apart along the axis of least overlap, leaving a gutter
    for _ in range(3):
        changed = False
        for i in range(len(kept)):
            for j in range(i + 1, len(kept)):
                a, b = kept[i], kept[j]
                ix = min(a[2], b[2]) - max(a[0], b[0])
                iy = min(a[3], b[3]) - max(a[1], b[1])
                if ix > -gap and iy > -gap and (ix > 0 or iy > 0):
                    if ix <= iy:  # side by side
                        left, right = (a, b) if a[0] + a[2] < b[0] + b[2] else (b, a)
                        m = (max(left[0], right[0]) + min(left[2], right[2])) / 2
                        if left[2] > m - gap / 2 or right[0] < m + gap / 2:
                            left[2] = min(left[2], m - gap / 2)
                            right[0] = max(right[0], m + gap / 2)
                            changed = True
                    else:  # stacked
                        top, bot = (a, b) if a[1] + a[3] < b[1] + b[3] else (b, a)
                        m = (max(top[1], bot[1]) + min(top[3], bot[3])) / 2
                        if top[3] > m - gap / 2 or bot[1] < m + gap / 2:
                            top[3] = min(top[3], m - gap / 2)
                            bot[1] = max(bot[1], m + gap / 2)
                            changed = True
        if not changed:
            break
    return [b for b in kept if b[2] - b[0] > 20 and b[3] - b[1] > 20]


# --- reading order and cuts ----------------------------------------------------------------------------------------


@dataclass
class Cut:
    axis: str  # "h": horizontal gutter (before = above); "v": vertical gutter (before = right)
    pos: float
    before: list[int]
    after: list[int]
    span: tuple[float, float]  # extent of the region along the cut


def _split_groups(idx, boxes, axis: int, tol: float):
    """Groups of ``idx`` separated by free gaps along ``axis`` (0 = x, 1 = y), in increasing coordinate."""
    items = sorted(idx, key=lambda i: boxes[i][axis])
    groups = [[items[0]]]
    end = boxes[items[0]][axis + 2]
    cuts = []
    for i in items[1:]:
        start = boxes[i][axis]
        if start >= end - tol:
            cuts.append((end + start) / 2)
            groups.append([i])
        else:
            groups[-1].append(i)
        end = max(end, boxes[i][axis + 2])
    return groups, cuts


def xy_cut(boxes: list[list[float]], tol: float) -> tuple[list[int], list[Cut]]:
    """Manga reading order of ``boxes`` and the guillotine cuts found on the way."""
    order: list[int] = []
    cuts: list[Cut] = []

    def rec(idx):
        if len(idx) == 1:
            order.append(idx[0])
            return
        xs = (min(boxes[i][0] for i in idx), max(boxes[i][2] for i in idx))
        ys = (min(boxes[i][1] for i in idx), max(boxes[i][3] for i in idx))
        groups, pos = _split_groups(idx, boxes, 1, tol)
        if len(groups) > 1:
            for k, p in enumerate(pos):
                cuts.append(Cut("h", p, groups[k], groups[k + 1], xs))
            for g in groups:
                rec(g)
            return
        groups, pos = _split_groups(idx, boxes, 0, tol)
        if len(groups) > 1:
            groups, pos = groups[::-1], pos[::-1]  # right to left
            for k, p in enumerate(pos):
                cuts.append(Cut("v", p, groups[k], groups[k + 1], ys))
            for g in groups:
                rec(g)
            return
        # no clean cut (pinwheel layouts): rows by top edge, right to left inside a row
        hs = sorted(boxes[i][3] - boxes[i][1] for i in idx)
        band = 0.4 * hs[len(hs) // 2]
        rest = sorted(idx, key=lambda i: boxes[i][1])
        while rest:
            top = boxes[rest[0]][1]
            row = [i for i in rest if boxes[i][1] < top + band]
            order.extend(sorted(row, key=lambda i: -(boxes[i][0] + boxes[i][2])))
            rest = [i for i in rest if i not in row]

    rec(list(range(len(boxes))))
    return order, cuts


# --- perturbation ----------------------------------------------------------------------------------------------------


def _quad(b) -> np.ndarray:
    x0, y0, x1, y1 = b
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _valid(quads, w, h, min_side: float) -> bool:
    polys = []
    for q in quads:
        if (q[:, 0] < -1e-6).any() or (q[:, 0] > w + 1e-6).any() or (q[:, 1] < -1e-6).any() or (q[:, 1] > h + 1e-6).any():
            return False
        p = Polygon(q)
        if not p.is_valid or p.area < min_side * min_side:
            return False
        # convex and not degenerate: every edge long enough, consistent turning direction
        e = np.roll(q, -1, axis=0) - q
        if (np.hypot(e[:, 0], e[:, 1]) < min_side * 0.5).any():
            return False
        cross = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
        if not ((cross > 0).all() or (cross < 0).all()):
            return False
        polys.append(p)
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            if polys[i].intersects(polys[j]) and polys[i].intersection(polys[j]).area > 1.0:
                return False
    return True


def _slant(quads, cut: Cut, boxes, rng, w, h, near: float) -> None:
    """Tilt the gutter of ``cut``: the panels along it move their edge onto one slanted line (in place)."""
    lo, hi = cut.span
    mid = (lo + hi) / 2
    half = max(1.0, (hi - lo) / 2)
    if cut.axis == "h":
        gap = min(boxes[i][1] for i in cut.after) - max(boxes[i][3] for i in cut.before)
        ext = [boxes[i][3] - boxes[i][1] for i in cut.before + cut.after]
        amp = min(0.035 * h, 0.3 * min(ext)) * rng.uniform(0.4, 1.0) * rng.choice([-1, 1])
        g = max(gap, 2.0) / 2

        def line(x):
            return cut.pos + amp * (x - mid) / half

        for i in cut.before:
            if abs(boxes[i][3] - (cut.pos - gap / 2)) <= near:
                for v in (2, 3):
                    quads[i][v, 1] = line(quads[i][v, 0]) - g
        for i in cut.after:
            if abs(boxes[i][1] - (cut.pos + gap / 2)) <= near:
                for v in (0, 1):
                    quads[i][v, 1] = line(quads[i][v, 0]) + g
    else:
        # before = right group, after = left group
        gap = min(boxes[i][0] for i in cut.before) - max(boxes[i][2] for i in cut.after)
        ext = [boxes[i][2] - boxes[i][0] for i in cut.before + cut.after]
        amp = min(0.05 * w, 0.3 * min(ext)) * rng.uniform(0.4, 1.0) * rng.choice([-1, 1])
        g = max(gap, 2.0) / 2

        def line(y):
            return cut.pos + amp * (y - mid) / half

        for i in cut.before:
            if abs(boxes[i][0] - (cut.pos + gap / 2)) <= near:
                for v in (0, 3):
                    quads[i][v, 0] = line(quads[i][v, 1]) + g
        for i in cut.after:
            if abs(boxes[i][2] - (cut.pos - gap / 2)) <= near:
                for v in (1, 2):
                    quads[i][v, 0] = line(quads[i][v, 1]) - g


def _bleed(quads, i: int, side: str, w: int, h: int) -> None:
    q = quads[i]
    if side == "top":
        q[[0, 1], 1] = 0.0
    elif side == "bottom":
        q[[2, 3], 1] = float(h)
    elif side == "left":
        q[[0, 3], 0] = 0.0
    else:
        q[[1, 2], 0] = float(w)


def make_layout(rng: np.random.Generator, w: int, h: int, frames_path: Path | None) -> Layout:
    """A perturbed page layout of size (w, h): panels in manga reading order."""
    if frames_path is not None:
        boxes, source = manga109_boxes(rng, w, h, frames_path)
    else:
        boxes, source = grammar_boxes(rng, w, h), "grammar"
    tol = 0.004 * min(w, h)
    order, cuts = xy_cut(boxes, tol)
    min_side = 0.04 * min(w, h)
    quads = [_quad(b) for b in boxes]

    slantiness = float(rng.choice([0.0, 0.3, 0.65], p=[0.4, 0.38, 0.22]))
    near = 0.012 * h
    for cut in cuts:
        p = slantiness * (1.2 if cut.axis == "v" else 0.8)
        if rng.random() < p:
            trial = [q.copy() for q in quads]
            _slant(trial, cut, boxes, rng, w, h, near)
            if _valid(trial, w, h, min_side):
                quads = trial

    framed = [True] * len(boxes)
    bleed = [False] * len(boxes)
    if rng.random() < 0.35:
        ext = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        cands = []
        for i, b in enumerate(boxes):
            for side, hit in (("top", b[1] - ext[1]), ("bottom", ext[3] - b[3]),
                              ("left", b[0] - ext[0]), ("right", ext[2] - b[2])):
                if hit < 0.01 * min(w, h):
                    cands.append((i, side))
        rng.shuffle(cands)
        for i, side in cands[: int(rng.integers(1, 4))]:
            trial = [q.copy() for q in quads]
            _bleed(trial, i, side, w, h)
            if _valid(trial, w, h, min_side):
                quads = trial
                bleed[i] = True
    if len(boxes) >= 3 and rng.random() < 0.3:
        for i in rng.choice(len(boxes), size=int(rng.integers(1, 3)), replace=False):
            if not bleed[int(i)]:
                framed[int(i)] = False
    black = bool(rng.random() < 0.06)
    panels = [PanelSpec(quads[i], framed[i], bleed[i]) for i in order]
    return Layout(panels, black, source)
