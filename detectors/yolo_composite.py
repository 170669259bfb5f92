"""Composite training pages for the body class: real character art cut out and pasted into real page layouts.

Why: the real B/W pages with panel and text labels (OpenMantra, the colour comics) have *unlabelled* figures.
Trained on them as they are, the network learns that a real figure is background (``detector.v1``: body recall
.08 on real manga). Here each panel of such a page is emptied (its frame kept), filled with a background and
0-3 pieces of real character art turned B/W, whose boxes are then known exactly; the page's real lettering and
balloons are put back on top (text boxes), so frames, gutters and lettering stay real.

Art (``ART_GLOBS`` under the shared data folder): full-body colour illustrations, line art and sketches, cut out
of their plain backgrounds (``cut_out``; pieces without a plain background are skipped). Faces on the art are
weak labels from the LBP anime-face cascade (``models/lbpcascade_animeface.xml``) when it is there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .yolo_data import BODY, FACE, PANEL, TEXT, Sample

ART_GLOBS = (
    "color/illustrations/*.jpg",
    "lineart/style2paints/*.jpg",
    "pairs/style2paints_v2/*/content.jpg",
    "pairs/style2paints_v3/*/sketch.original.jpg",
)
ART_MAX_SIDE = 640
CASCADE = "models/lbpcascade_animeface.xml"


@dataclass
class ArtPiece:
    """A cut-out piece of character art: RGB ``uint8 (h, w, 3)``, ``alpha`` bool (h, w), faces in its pixels."""

    name: str
    rgb: np.ndarray
    alpha: np.ndarray
    faces: list


def cut_out(rgb: np.ndarray, min_background: float = 0.25) -> np.ndarray | None:
    """bool mask of the figure: everything but the near-white paper connected to the image border.

    The paper level is the border's median (scanned sketches are not pure white). None when the border-connected
    paper covers less than ``min_background`` of the image (the art has a scene behind it)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    if paper < 170:
        return None
    light = (cv2.GaussianBlur(gray, (0, 0), 1.0) >= paper - 28).astype(np.uint8)
    _, labels = cv2.connectedComponents(light, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge) & (light == 1)
    if background.mean() < min_background:
        return None
    fig = (~background).astype(np.uint8)
    fig = cv2.morphologyEx(fig, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    # drop specks (petals, signatures): keep components of at least 2 % of the largest one
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fig, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.02 * areas.max())
    mask = np.isin(labels, keep)
    if mask.mean() < 0.05:
        return None
    return mask


def load_art(data: Path) -> list[ArtPiece]:
    """Every usable art piece under ``data`` (cut out, cropped to the figure, long side <= ART_MAX_SIDE)."""
    data = Path(data)
    cascade = None
    if (data / CASCADE).is_file() and hasattr(cv2, "CascadeClassifier"):
        cascade = cv2.CascadeClassifier(str(data / CASCADE))
    pieces = []
    for pattern in ART_GLOBS:
        for path in sorted(data.glob(pattern)):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            s = ART_MAX_SIDE / max(rgb.shape[:2])
            if s < 1:
                rgb = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
            mask = cut_out(rgb)
            if mask is None:
                continue
            ys, xs = np.nonzero(mask)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            rgb, mask = rgb[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()
            faces = []
            if cascade is not None:
                g = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
                for fx, fy, fw, fh in cascade.detectMultiScale(g, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)):
                    faces.append((int(fx), int(fy), int(fx + fw), int(fy + fh)))
            pieces.append(ArtPiece(str(path.relative_to(data)), rgb, mask, faces))
    return pieces


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A panel background (uint8 gray): paper, a flat or graded screentone, speed lines or focus lines."""
    from manga_pipeline.synthetic.canvas import DOTS, DOTS_COARSE, LINES, screen_map

    kind = rng.choice(["paper", "tone", "gradient", "speed", "focus"], p=[0.45, 0.2, 0.1, 0.15, 0.1])
    out = np.full((h, w), 255, np.uint8)
    if kind in ("tone", "gradient"):
        level = rng.uniform(0.08, 0.45)
        cov = np.full((h, w), level, np.float32)
        if kind == "gradient":
            ramp = np.linspace(0, 1, h if rng.random() < 0.7 else w, dtype=np.float32)
            cov = level * (ramp[:, None] if ramp.size == h else ramp[None, :]) * np.ones((h, w), np.float32)
        thr = screen_map(int(rng.choice([DOTS, DOTS, DOTS_COARSE, LINES])), int(rng.integers(1, 4)), h, w)
        out[(cov * 255) > thr] = 0
    elif kind in ("speed", "focus"):
        n = int(rng.integers(25, 80))
        th = max(1, int(round(min(h, w) / 300)))
        if kind == "speed":
            ang = rng.uniform(0, np.pi)
            d = np.array([np.cos(ang), np.sin(ang)])
            for _ in range(n):
                c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
                half = rng.uniform(0.2, 0.8) * max(h, w)
                p0, p1 = (c - d * half).astype(int), (c + d * half).astype(int)
                cv2.line(out, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 0, th, cv2.LINE_AA)
        else:
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
            R = np.hypot(w, h)
            for a in rng.uniform(0, 2 * np.pi, n):
                r0 = rng.uniform(0.35, 0.6) * min(h, w)
                p0 = (int(cx + np.cos(a) * r0), int(cy + np.sin(a) * r0))
                p1 = (int(cx + np.cos(a) * R), int(cy + np.sin(a) * R))
                cv2.line(out, p0, p1, 0, th, cv2.LINE_AA)
    return out


def composite_page(name: str, gray: np.ndarray, panels, texts, art: list[ArtPiece], rng: np.random.Generator) -> Sample:
    """``gray`` (a real B/W page) with every panel emptied and refilled with cut-out art; labels for panels,
    texts (the page's own, restored on top), bodies and faces (the pasted art)."""
    from colorizer.data import mangaify

    H, W = gray.shape
    out = gray.copy()
    owner = np.zeros((H, W), np.int32)  # which pasted body owns a pixel (0 none)
    faces = []  # (body id, box)
    pasted = {}  # body id -> pasted pixel count
    margin = max(3, round(0.008 * min(H, W)))
    bid = 0
    for x0, y0, x1, y1 in panels:
        ix0, iy0 = int(max(0, x0 + margin)), int(max(0, y0 + margin))
        ix1, iy1 = int(min(W, x1 - margin)), int(min(H, y1 - margin))
        ph, pw = iy1 - iy0, ix1 - ix0
        if ph < 24 or pw < 24:
            continue
        out[iy0:iy1, ix0:ix1] = _background(ph, pw, rng)
        owner[iy0:iy1, ix0:ix1] = 0
        for _ in range(int(rng.choice([0, 1, 1, 1, 2, 2, 3]))):
            piece = art[int(rng.integers(len(art)))]
            ah, aw = piece.alpha.shape
            s = rng.uniform(0.45, 1.4) * ph / ah
            s = min(s, rng.uniform(0.5, 1.2) * pw / aw)
            th, tw = max(8, round(ah * s)), max(8, round(aw * s))
            if th < 24 or tw < 12:
                continue
            rgb = cv2.resize(piece.rgb, (tw, th), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            alpha = cv2.resize(piece.alpha.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST).astype(bool)
            bw = mangaify(rgb, rng)
            # printed line art is black: stretch the piece's darkest lines to ink, and thicken lines that the
            # downscale thinned to gray
            lo = float(np.percentile(bw[alpha], 3)) if alpha.any() else 0.0
            if lo > 0:
                bw = np.clip((bw.astype(np.float32) - lo) * 255.0 / max(1.0, 255.0 - lo), 0, 255).astype(np.uint8)
            if s < 0.5 and rng.random() < 0.6:
                bw = cv2.erode(bw, np.ones((2, 2), np.uint8))
            flip = rng.random() < 0.5
            if flip:
                bw, alpha = bw[:, ::-1], alpha[:, ::-1]
            # anywhere in the panel, at least 45 % of the figure's height and width inside (close-ups are cut)
            px = int(rng.integers(ix0 - int(0.3 * tw), max(ix0 - int(0.3 * tw) + 1, ix1 - int(0.7 * tw))))
            py = int(rng.integers(iy0 - int(0.2 * th), max(iy0 - int(0.2 * th) + 1, iy1 - int(0.55 * th))))
            cx0, cy0, cx1, cy1 = max(px, ix0), max(py, iy0), min(px + tw, ix1), min(py + th, iy1)
            if cx1 - cx0 < 8 or cy1 - cy0 < 8:
                continue
            a = alpha[cy0 - py:cy1 - py, cx0 - px:cx1 - px]
            if a.sum() < 0.01 * ph * pw:
                continue
            bid += 1
            region = out[cy0:cy1, cx0:cx1]
            region[a] = bw[cy0 - py:cy1 - py, cx0 - px:cx1 - px][a]
            owner[cy0:cy1, cx0:cx1][a] = bid
            pasted[bid] = int(a.sum())
            for fx0, fy0, fx1, fy1 in piece.faces:
                if flip:
                    fx0, fx1 = aw - fx1, aw - fx0
                fb = (px + fx0 * s, py + fy0 * s, px + fx1 * s, py + fy1 * s)
                faces.append((bid, fb))
    # the page's own lettering and balloons go back on top of the art
    for t in texts:
        tx0, ty0, tx1, ty1 = (int(round(v)) for v in t)
        tx0, ty0, tx1, ty1 = max(0, tx0), max(0, ty0), min(W, tx1), min(H, ty1)
        out[ty0:ty1, tx0:tx1] = gray[ty0:ty1, tx0:tx1]
        owner[ty0:ty1, tx0:tx1] = 0
    boxes = [(PANEL, tuple(p)) for p in panels] + [(TEXT, tuple(t)) for t in texts]
    visible = set()
    if bid:
        n_vis = np.bincount(owner.ravel(), minlength=bid + 1)
        for b in range(1, bid + 1):
            if n_vis[b] < 0.35 * pasted[b]:
                continue  # mostly hidden by later art or lettering: not labelled, not a figure either way
            ys, xs = np.nonzero(owner == b)
            boxes.append((BODY, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
            visible.add(b)
    for b, (fx0, fy0, fx1, fy1) in faces:
        if b not in visible:
            continue
        ix0, iy0, ix1, iy1 = int(max(0, fx0)), int(max(0, fy0)), int(min(W, fx1)), int(min(H, fy1))
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        own = (owner[iy0:iy1, ix0:ix1] == b).mean()
        if (ix1 - ix0) * (iy1 - iy0) >= 0.7 * (fx1 - fx0) * (fy1 - fy0) and own > 0.3:
            boxes.append((FACE, (ix0, iy0, ix1, iy1)))
    return Sample(name, out, boxes)
