"""Synthetic manga pages and chapters with exact ground truth.

A page is drawn once into layered arrays (see :mod:`.canvas`) and rendered twice: the colour edition (flat
colours + line art) and the B/W edition (screentones + the same line art). Panels are drawn one by one on their
own canvas and pasted through the panel polygon, so characters are cut by panel borders; balloons and sound
effects are drawn last over the whole page. The ground truth is read back from the ``owner`` layer, so a
character's mask is exactly the pixels that show it after clipping and occlusion.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..records import CharacterInstance, Panel, TextRegion
from .canvas import Canvas, Palette, _pts, SHIFT, render_layers, screen_scale
from .characters import CharacterDesign, draw_figure, figure_extent, make_cast, random_pose
from .layouts import Layout, make_layout, resolve_layouts
from .lettering import draw_sfx, make_glyphs, place_balloons
from .scenery import KIND_P, KINDS, draw_background

MIN_SIZE = (160, 220)


@dataclass(frozen=True)
class SyntheticPage:
    """One generated page.

    ``color`` uint8 (H, W, 3) RGB colour edition; ``bw`` uint8 (H, W) B/W edition (same line art, screentones).
    ``panels`` in manga reading order (``order`` 0 = top right). ``characters``: one per drawn character, box =
    tight bounds of its visible pixels, ``mask`` = those pixels (bool, box coordinates), ``identity`` = design
    name, ``confidence`` 1.0, ``panel`` = order of its panel. ``balloons``: kind "balloon", mask = the balloon's
    interior (paper white apart from lettering). ``texts``: sound effects outside balloons (kind "text", mask =
    their strokes and white halo). ``faces``: the visible part of each character's head (same conventions as
    ``characters``), only for heads mostly in view.
    """

    index: int
    color: np.ndarray = field(compare=False, repr=False)
    bw: np.ndarray = field(compare=False, repr=False)
    panels: tuple[Panel, ...] = ()
    characters: tuple[CharacterInstance, ...] = ()
    balloons: tuple[TextRegion, ...] = ()
    texts: tuple[TextRegion, ...] = ()
    faces: tuple[CharacterInstance, ...] = ()
    layout_source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.bw.shape[1]), int(self.bw.shape[0])

    def balloon_mask(self) -> np.ndarray:
        """bool (H, W): union of the balloon interiors."""
        out = np.zeros(self.bw.shape, bool)
        for b in self.balloons:
            x0, y0, x1, y1 = b.box
            out[y0:y1, x0:x1] |= b.mask
        return out


@dataclass(frozen=True)
class SyntheticChapter:
    seed: int
    pages: tuple[SyntheticPage, ...]
    cast: tuple[CharacterDesign, ...]


def _check_size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if w < MIN_SIZE[0] or h < MIN_SIZE[1]:
        raise ValueError(f"page size {w}x{h} is too small: need at least {MIN_SIZE[0]}x{MIN_SIZE[1]}")
    return w, h


def _framing(rng, n: int, framed: bool, aspect: float) -> str:
    if not framed:  # floating figures: whole, or a bust fading out at the panel's invisible edge
        return "full" if rng.random() < 0.6 else "bust"
    if n == 1:
        p = [0.25, 0.45, 0.3] if aspect < 1.3 else [0.45, 0.4, 0.15]
    else:
        p = [0.35, 0.55, 0.1]
    return str(rng.choice(["full", "bust", "close"], p=p))


def _draw_panel(page: Canvas, palette: Palette, spec, order: int, rng, cast, weights, W: int, H: int,
                instances: list, heads_by_panel: dict) -> None:
    bx0, by0, bx1, by1 = spec.bbox
    x0, y0 = max(0, int(np.floor(bx0))), max(0, int(np.floor(by0)))
    x1, y1 = min(W, int(np.ceil(bx1))), min(H, int(np.ceil(by1)))
    pw, ph = x1 - x0, y1 - y0
    canvas = Canvas(ph, pw, x0, y0)
    area = pw * ph / (W * H)
    max_n = 1 if area < 0.03 else (2 if area < 0.08 else 3)
    n = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.45, 0.33, 0.12]))
    if area > 0.12:
        n = max(n, 1)  # a big panel shows somebody
    n = min(n, max_n, len(cast))
    kind = str(rng.choice(KINDS, p=KIND_P)) if spec.framed else "plain"
    if kind in ("flat", "night", "focus", "speed") and area > 0.35:
        kind = "sky"
    if kind == "plain" and spec.framed and area > 0.2 and rng.random() < 0.7:
        kind = str(rng.choice(["sky", "street", "room"]))  # big panels rarely stay blank
    if n == 0 and spec.framed and kind in ("plain", "flat", "speed", "focus"):
        kind = str(rng.choice(["sky", "street", "room"]))  # an establishing shot
    if kind in ("speed", "focus") and n > 1:
        n = 1
    info = draw_background(canvas, palette, kind, (x0, y0, x1, y1), rng, W)
    heads = []
    if n:
        who = rng.choice(len(cast), size=n, replace=False, p=weights)
        framing = _framing(rng, n, spec.framed, pw / max(ph, 1))
        slots = (np.arange(n) + 0.5) / n
        plan = []
        for k, ci in enumerate(who):
            d = cast[int(ci)]
            ext = figure_extent(d)
            scale = rng.uniform(0.85, 1.1)
            slot_w = pw / n
            if framing == "full":
                u = min(ph * rng.uniform(0.6, 0.95) / ext, slot_w / 2.0) * scale
                if not spec.framed:
                    feet = y1 - 0.04 * ph
                elif rng.random() < 0.25:  # cut at the shins by the bottom border
                    u = min(ph * rng.uniform(0.8, 1.1) / ext, slot_w / 2.0) * scale
                    feet = y1 + rng.uniform(0.1, 0.25) * ext * u
                elif info["ground"] is not None:  # standing on the floor, below the horizon
                    feet = info["ground"] + (y1 - info["ground"]) * rng.uniform(0.3, 0.85)
                else:
                    feet = y1 - ph * rng.uniform(0.03, 0.12)
                u = max(min(u, (feet - y0 - 0.02 * ph) / ext), 0.0)
                top = feet - ext * u
            elif framing == "bust":
                u = min(ph * rng.uniform(0.2, 0.32), slot_w / 1.9) * scale
                top = y0 + ph * rng.uniform(0.06, 0.35)
            else:
                u = min(ph * rng.uniform(0.45, 0.8), slot_w / 1.25) * scale
                top = y0 + ph * rng.uniform(-0.12, 0.2)
            if u < 7:
                continue
            cx = x0 + pw * slots[k] + rng.uniform(-0.12, 0.12) * slot_w
            if spec.framed and n > 1 and rng.random() < 0.15:  # cut by a side border
                cx = x0 + (rng.uniform(-0.05, 0.12) if cx < x0 + pw / 2 else rng.uniform(0.88, 1.05)) * pw
            if n == 2 and rng.random() < 0.8:
                mirror = k == 1  # the two face each other
            else:
                mirror = bool(rng.random() < 0.5)
            plan.append((u, d, cx, top, mirror))
        plan.sort(key=lambda t: t[0])  # small (far) figures first
        pose_view = None if framing != "close" else str(rng.choice(["front", "3q"]))
        for u, d, cx, top, mirror in plan:
            owner = len(instances) + 1
            if owner > 255:
                break
            pose = random_pose(rng, pose_view)
            head = draw_figure(canvas, palette, d, pose, x=cx, y=top, u=u, mirror=mirror, owner=owner, rng=rng, page_w=W)
            instances.append((owner, d, order, head, (x0, y0, x1, y1)))
            heads.append(head)
    heads_by_panel[order] = heads

    # paste through the panel polygon
    mask = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(mask, [_pts(spec.quad, x0, y0)], 1, cv2.LINE_8, SHIFT)
    m = mask.astype(bool)
    for layer in ("part", "ink", "owner"):
        getattr(page, layer)[y0:y1, x0:x1][m] = getattr(canvas, layer)[m]
    if spec.framed:
        page.stroke(spec.quad, max(2.0, 0.0024 * W), 0, closed=True)


def generate_page(index: int = 0, *, seed: int = 0, size: tuple[int, int] = (1400, 2000),
                  cast: "tuple[CharacterDesign, ...] | list[CharacterDesign] | None" = None, cast_size: int = 3,
                  layouts: "Path | None | str" = "auto") -> SyntheticPage:
    """Page ``index`` of chapter ``seed`` (deterministic for (seed, index, size, cast, layouts)).

    ``size`` is (width, height) in pixels. ``cast`` defaults to ``make_cast(cast_size, seed=seed)``.
    ``layouts``: "auto" (Manga109 frame statistics when ``../shared/data`` is present, else the grammar), None
    (procedural grammar) or the path of a frames file.
    """
    W, H = _check_size(size)
    cast = tuple(cast) if cast is not None else make_cast(cast_size, seed=seed)
    if not cast:
        raise ValueError("the cast is empty: pass at least one CharacterDesign")
    frames = resolve_layouts(layouts)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x9A6E, int(index)]))
    layout: Layout = make_layout(rng, W, H, frames)
    palette = Palette(gray_tones=bool(rng.random() < 0.2))
    bg = palette.add((12, 12, 14), "black") if layout.black_gutters else 0
    page = Canvas(H, W, background=bg)
    weights = np.array([1.0 / (1 + 0.35 * i) for i in range(len(cast))])
    weights /= weights.sum()

    instances: list = []
    heads_by_panel: dict = {}
    for order, spec in enumerate(layout.panels):
        _draw_panel(page, palette, spec, order, rng, cast, weights, W, H, instances, heads_by_panel)

    glyphs = make_glyphs(rng)
    taken: list = []
    balloons = []
    for order, spec in enumerate(layout.panels):
        bx0, by0, bx1, by1 = spec.bbox
        area = (bx1 - bx0) * (by1 - by0) / (W * H)
        n = int(rng.choice([0, 1, 2, 3], p=[0.12, 0.4, 0.33, 0.15]))
        if area < 0.04:
            n = min(n, 1)
        balloons += place_balloons(page, rng, (bx0, by0, bx1, by1), heads_by_panel.get(order, []), taken, W, H,
                                   glyphs, n)
    texts = []
    all_heads = [h for hs in heads_by_panel.values() for h in hs]
    for order, spec in enumerate(layout.panels):
        if spec.framed and rng.random() < 0.22:
            got = draw_sfx(page, rng, spec.bbox, taken, all_heads, W, H, glyphs)
            if got is not None:
                texts.append(TextRegion(got[0], kind="text", mask=got[1]))

    characters, faces = [], []
    for owner, d, order, head, (x0, y0, x1, y1) in instances:
        sub = page.owner[y0:y1, x0:x1] == owner
        ys, xs = np.nonzero(sub)
        if not len(ys):
            continue
        cy0, cy1, cx0, cx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        box = (x0 + int(cx0), y0 + int(cy0), x0 + int(cx1), y0 + int(cy1))
        characters.append(CharacterInstance(box, 1.0, d.name, 1.0, order, mask=sub[cy0:cy1, cx0:cx1].copy()))
        hx0, hy0 = max(x0, int(np.floor(head[0]))), max(y0, int(np.floor(head[1])))
        hx1, hy1 = min(x1, int(np.ceil(head[2]))), min(y1, int(np.ceil(head[3])))
        if hx1 > hx0 and hy1 > hy0:
            hsub = sub[hy0 - y0:hy1 - y0, hx0 - x0:hx1 - x0]
            full = (head[2] - head[0]) * (head[3] - head[1])
            if hsub.sum() >= 0.3 * full:
                ys, xs = np.nonzero(hsub)
                fy0, fy1, fx0, fx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                fbox = (hx0 + int(fx0), hy0 + int(fy0), hx0 + int(fx1), hy0 + int(fy1))
                faces.append(CharacterInstance(fbox, 1.0, d.name, 1.0, order, mask=hsub[fy0:fy1, fx0:fx1].copy()))

    color, bw = render_layers(page.part, page.ink, palette, screen_scale(W))
    panels = tuple(Panel(spec.polygon, order) for order, spec in enumerate(layout.panels))
    return SyntheticPage(
        index=int(index), color=color, bw=bw, panels=panels, characters=tuple(characters),
        balloons=tuple(TextRegion(b.box, kind="balloon", mask=b.interior) for b in balloons),
        texts=tuple(texts), faces=tuple(faces), layout_source=layout.source,
    )


def generate_chapter(n_pages: int = 6, *, seed: int = 0, size: tuple[int, int] = (1400, 2000), cast_size: int = 3,
                     layouts: "Path | None | str" = "auto") -> SyntheticChapter:
    """``n_pages`` pages with a recurring cast of ``cast_size`` characters, deterministic for ``seed``.

    ``size`` = (width, height). ``layouts``: see :func:`generate_page`.
    """
    if n_pages < 1:
        raise ValueError(f"n_pages must be >= 1, got {n_pages}")
    _check_size(size)
    resolve_layouts(layouts)  # a missing file fails before any page is drawn
    cast = make_cast(cast_size, seed=seed)
    pages = tuple(generate_page(i, seed=seed, size=size, cast=cast, layouts=layouts) for i in range(n_pages))
    return SyntheticChapter(seed=int(seed), pages=pages, cast=cast)
