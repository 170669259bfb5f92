"""Recurring characters of a synthetic chapter: designs (fixed colour schemes and styles) and line-art figures.

A figure is built in *head units* (head height = 1, origin at the top of the skull, x to the character's front
when it faces right, y down; a full body is about 6.4 units) as a back-to-front list of shapes, then drawn onto a
:class:`~manga_pipeline.synthetic.canvas.Canvas` at a position, scale and facing. Characters differ in B/W as in
real manga: hair style and hair tone (black, screentone, white) are spread over the cast.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Polygon

from ..colorspace import rgb_to_ab
from .canvas import Canvas, Palette, lightness, shade_rgb

PARTS = ("hair", "skin", "eyes", "top", "bottom", "accessory", "shoes")
PART_ROLES = {"hair": "hair", "skin": "skin", "eyes": "eyes", "top": "cloth", "bottom": "cloth",
              "accessory": "cloth", "shoes": "cloth"}

HAIR_STYLES = ("short", "long", "ponytail", "spiky", "bob", "twintails", "messy", "bun")
FEMININE = {"long", "ponytail", "bob", "twintails", "bun"}
TOP_STYLES = ("sailor", "shirt", "jacket", "hoodie", "tshirt")
ACCESSORIES = ("ribbon", "hairband", "glasses", "scarf", "tie", None)

NAMES = ("Aiko", "Haruto", "Mei", "Ren", "Sora", "Yuki", "Kenta", "Hana", "Riku", "Nao", "Takumi", "Emi",
         "Daichi", "Rin", "Shota", "Kaede", "Yuto", "Mio", "Sota", "Akane")

# hair colours by B/W class: dark -> black on the B/W page, mid -> screentone, light -> white
# (dark hair is dark gray / brown / blue in colour editions, never line-art black)
HAIR_DARK = ((52, 48, 60), (70, 48, 36), (40, 50, 86), (54, 64, 56), (78, 42, 60))
HAIR_MID = ((134, 84, 48), (176, 58, 46), (64, 104, 180), (118, 76, 156), (46, 128, 118), (150, 68, 36))
HAIR_LIGHT = ((240, 212, 120), (214, 214, 226), (250, 184, 204), (176, 214, 240), (246, 176, 90))
SKINS = ((255, 226, 204), (252, 216, 188), (242, 204, 172), (228, 186, 152), (205, 156, 120))
SHOES = ((60, 40, 30), (30, 30, 34), (235, 235, 235), (120, 70, 40))


@dataclass(frozen=True)
class CharacterDesign:
    """A recurring character: name, colour scheme (part -> RGB) and drawing style, all derived from a seed.

    ``colors`` has at least ``hair, skin, eyes, top, bottom`` (also ``accessory`` and ``shoes``).
    """

    name: str
    colors: dict = field(hash=False)
    hair_style: str = "short"
    top_style: str = "shirt"
    bottom_style: str = "pants"  # "pants", "skirt" or "shorts"
    accessory: str | None = None
    build: float = 1.0  # shoulder width factor
    height: float = 1.0  # body length factor (head size is shared)
    face_width: float = 0.39
    eye_size: float = 1.0
    long_sleeves: bool = True

    def rgb(self, part: str) -> tuple[int, int, int]:
        return tuple(self.colors[part])


def _hsv(h, s, v) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _lab(rgb):
    return np.array(rgb_to_ab(rgb))


def _cloth_color(rng, avoid, min_de=28.0):
    best, best_d = None, -1.0
    for _ in range(24):
        h = rng.random()
        s = rng.uniform(0.25, 0.8)
        v = rng.choice([rng.uniform(0.25, 0.5), rng.uniform(0.5, 0.8), rng.uniform(0.8, 0.97)])
        if rng.random() < 0.15:
            s = rng.uniform(0.0, 0.08)  # white / gray / black clothes
        c = _hsv(h, s, v)
        d = min((float(np.linalg.norm(_lab(c) - _lab(a))) for a in avoid), default=99.0)
        if d >= min_de:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def make_cast(n: int = 3, *, seed: int = 0) -> tuple[CharacterDesign, ...]:
    """``n`` distinct characters for chapter ``seed``. The first three differ in hair tone class (black,
    white, screentone on the B/W page) and every character gets its own hair style while styles last."""
    if n < 1:
        raise ValueError(f"cast size must be >= 1, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xCA57]))
    names = list(rng.permutation(NAMES))
    styles = list(rng.permutation(HAIR_STYLES))
    classes = list(rng.permutation(["dark", "light", "mid"]))
    used_colors: list = []
    cast = []
    for i in range(n):
        name = names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}")
        style = styles[i % len(styles)]
        cls = classes[i % 3]
        pool = {"dark": HAIR_DARK, "mid": HAIR_MID, "light": HAIR_LIGHT}[cls]
        hair = tuple(int(v) for v in pool[int(rng.integers(len(pool)))])
        fem = style in FEMININE
        skin = SKINS[int(rng.choice(len(SKINS), p=[0.3, 0.3, 0.2, 0.12, 0.08]))]
        eyes = _hsv(rng.random(), rng.uniform(0.55, 0.85), rng.uniform(0.45, 0.8))
        top = _cloth_color(rng, used_colors + [hair, skin])
        used_colors.append(top)
        bottom = _cloth_color(rng, [top, skin], min_de=22)
        used_colors.append(bottom)
        accessory_color = _hsv(rng.random(), rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9))
        shoes = SHOES[int(rng.integers(len(SHOES)))]
        top_style = str(rng.choice(TOP_STYLES, p=[0.3, 0.2, 0.15, 0.15, 0.2] if fem else [0.0, 0.3, 0.25, 0.2, 0.25]))
        if fem:
            bottom_style = str(rng.choice(["skirt", "pants", "shorts"], p=[0.65, 0.2, 0.15]))
        else:
            bottom_style = str(rng.choice(["pants", "shorts"], p=[0.85, 0.15]))
        acc = ACCESSORIES[int(rng.integers(len(ACCESSORIES)))]
        if top_style == "sailor":
            acc = "ribbon" if rng.random() < 0.5 else acc
        cast.append(CharacterDesign(
            name=str(name),
            colors={"hair": hair, "skin": tuple(skin), "eyes": eyes, "top": top, "bottom": bottom,
                    "accessory": accessory_color, "shoes": tuple(shoes)},
            hair_style=str(style),
            top_style=top_style,
            bottom_style=bottom_style,
            accessory=acc,
            build=float(rng.uniform(0.78, 0.9) if fem else rng.uniform(0.92, 1.1)),
            height=float(rng.uniform(0.9, 1.05) if fem else rng.uniform(0.98, 1.12)),
            face_width=float(rng.uniform(0.36, 0.41)),
            eye_size=float(rng.uniform(1.0, 1.2) if fem else rng.uniform(0.8, 1.0)),
            long_sleeves=top_style not in ("tshirt",) and rng.random() < 0.8,
        ))
    return tuple(cast)


# --- geometry helpers (head units) -----------------------------------------------------------------------------------


def ellipse(cx, cy, rx, ry, a0=0.0, a1=360.0, n=28) -> np.ndarray:
    t = np.radians(np.linspace(a0, a1, n))
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def limb(pts, radii, part) -> "Shape":
    pts = np.asarray(pts, float)
    return Shape(pts, part, "limb", radii=np.interp(np.linspace(0, 1, len(pts)), [0, 1], radii)
                 if len(radii) == 2 and len(pts) != 2 else np.asarray(radii, float))


def clip_to(shape_pts, region_pts) -> list[np.ndarray]:
    """Parts of polygon ``shape_pts`` inside polygon ``region_pts``."""
    a = Polygon(shape_pts).buffer(0)
    b = Polygon(region_pts).buffer(0)
    inter = a.intersection(b)
    out = []
    for g in getattr(inter, "geoms", [inter]):
        if g.geom_type == "Polygon" and not g.is_empty and g.area > 1e-4:
            out.append(np.asarray(g.exterior.coords))
    return out


@dataclass
class Shape:
    pts: np.ndarray
    part: str | None  # design part, "white", "shade:<part>", "hl:<part>" or None (ink only)
    kind: str = "fill"  # "fill" (fill + outline), "paint" (colour only), "line" (ink stroke), "ink" (black fill),
    # "limb" (thick stroke along pts with half-widths radii, outlined), "group" (items as one shape)
    width: float = 1.0  # line width relative to the figure's outline width
    closed: bool = False
    radii: np.ndarray | None = None  # "limb": half-widths along the path
    items: list | None = None  # "group": polygons (N, 2) and limbs (path, radii) filled as one outlined shape


@dataclass(frozen=True)
class Pose:
    view: str = "3q"  # "front" or "3q" (three-quarter view towards +x)
    arm_near: str = "down"  # down, hip, raise, point, chest
    arm_far: str = "down"
    legs: str = "stand"  # stand, walk
    mouth: str = "closed"  # closed, open, smile
    shade_side: int = -1  # -1: shadow on the back (-x) side


ARM_POSES = {  # (upper arm, forearm) angles in degrees from straight down, positive = outwards
    "down": (12, 6), "hip": (42, -62), "raise": (150, 172), "point": (72, 84), "chest": (18, -128),
}


def random_pose(rng: np.random.Generator, view: str | None = None) -> Pose:
    return Pose(
        view=view or str(rng.choice(["front", "3q"], p=[0.3, 0.7])),
        arm_near=str(rng.choice(list(ARM_POSES), p=[0.4, 0.15, 0.12, 0.18, 0.15])),
        arm_far=str(rng.choice(["down", "hip", "chest"], p=[0.7, 0.2, 0.1])),
        legs=str(rng.choice(["stand", "walk"], p=[0.7, 0.3])),
        mouth=str(rng.choice(["closed", "open", "smile"], p=[0.45, 0.3, 0.25])),
        shade_side=int(rng.choice([-1, 1])),
    )


# --- figure construction -------------------------------------------------------------------------------------


def _arm(shoulder, side, pose_name, hf, long_sleeves):
    a1, a2 = ARM_POSES[pose_name]
    up = 1.15 * hf
    fo = 1.05 * hf
    t1, t2 = np.radians(a1), np.radians(a2)
    elbow = shoulder + np.array([side * np.sin(t1) * up, np.cos(t1) * up])
    wrist = elbow + np.array([side * np.sin(t2) * fo, np.cos(t2) * fo])
    d = (wrist - elbow) / (np.linalg.norm(wrist - elbow) + 1e-9)
    n = np.array([-d[1], d[0]])
    shapes = []
    # hand first: the sleeve cuff covers its base
    hc = wrist + d * 0.13
    hand = np.array([hc - d * 0.1 + n * 0.1, hc + d * 0.08 + n * 0.1, hc + d * 0.16, hc + d * 0.08 - n * 0.11,
                     hc - d * 0.1 - n * 0.11])
    shapes.append(Shape(hand, "skin"))
    if long_sleeves:
        shapes.append(limb([shoulder, elbow, wrist], [0.17, 0.15, 0.13], "top"))
    else:
        shapes.append(limb([elbow - (elbow - shoulder) * 0.2, elbow, wrist], [0.125, 0.115, 0.1], "skin"))
        shapes.append(limb([shoulder, shoulder + (elbow - shoulder) * 0.6], [0.175, 0.165], "top"))
    return shapes


def _legs(d: CharacterDesign, pose: Pose, y_hip, hf, f):
    knee_len = 1.45 * hf
    shin_len = 1.4 * hf
    spread = 0.1 if pose.legs == "stand" else 0.32
    shapes = []
    feet = []
    for side in (-1, 1):
        hip = np.array([side * 0.2, y_hip])
        swing = side * spread if pose.legs == "walk" else side * 0.08
        knee = hip + np.array([swing * 0.55, knee_len])
        ankle = knee + np.array([swing * 0.45 - side * 0.02, shin_len])
        feet.append((hip, knee, ankle))
    pants = d.bottom_style == "pants"
    r = (0.21, 0.16, 0.13) if pants else (0.17, 0.12, 0.095)
    for hip, knee, ankle in feet:
        toe = 0.26 if f != 0 else 0.0
        shoe = np.array([[ankle[0] - 0.13, ankle[1] - 0.06], [ankle[0] + 0.1 + toe * 0.5, ankle[1] - 0.08],
                         [ankle[0] + 0.15 + toe, ankle[1] + 0.06], [ankle[0] + 0.12 + toe, ankle[1] + 0.13],
                         [ankle[0] - 0.14, ankle[1] + 0.13]])
        shapes.append(Shape(shoe, "shoes"))
        if not pants:
            shapes.append(limb([hip, knee, ankle], r, "skin"))
    if d.bottom_style in ("pants", "shorts"):
        y_waist = y_hip - 0.38 * hf
        hips = np.array([(-0.44 * d.build, y_waist), (0.44 * d.build, y_waist), (0.4 * d.build, y_hip + 0.2),
                         (0.0, y_hip + 0.25), (-0.4 * d.build, y_hip + 0.2)])
        items = [hips]
        for hip, knee, ankle in feet:
            if pants:
                items.append((np.array([hip, knee, ankle]), np.array(r)))
            else:
                items.append((np.array([hip, hip + (knee - hip) * 0.62]), np.array([0.24, 0.21])))
        shapes.append(Shape(hips, "bottom", "group", items=items))
        if pants:
            for hip, knee, ankle in feet:  # crease from the crotch
                shapes.append(Shape(np.array([(hip[0] * 0.3, y_hip + 0.2), (hip[0] * 0.5, y_hip + 0.5)]), None, "line", 0.5))
    return shapes, feet


def _hair_cap(d: CharacterDesign, rng, f, detail: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Front hair (cap with bangs and side locks) and the strand lines inside it."""
    style = d.hair_style
    rx, ry, cy = 0.5, 0.57, 0.5
    top = ellipse(0.0, cy, rx, ry, 180, 360, 24)
    if style in ("spiky", "messy"):
        # spikes on the outline
        ang = np.radians(np.linspace(180, 360, 24))
        amp = 0.22 if style == "spiky" else 0.1
        bump = np.where(np.arange(24) % 2 == 1, amp, 0.0) * rng.uniform(0.6, 1.0, 24)
        top = np.column_stack([(rx + bump) * np.cos(ang), cy + (ry + bump) * np.sin(ang)])
    side_len = {"short": 0.72, "spiky": 0.7, "messy": 0.8, "long": 1.55, "bob": 1.0,
                "ponytail": 0.95, "twintails": 0.95, "bun": 0.85}[style]
    part_x = 0.12 * f
    # bangs: zigzag lower edge from the right side to the left side
    n = 7 if style != "bob" else 5
    xs = np.linspace(0.36, -0.36, n * 2 + 1)
    tips = []
    for k, x in enumerate(xs):
        tip = k % 2 == 1
        y = (0.45 if style != "bob" else 0.4) + rng.uniform(-0.03, 0.04) if tip else 0.22 + rng.uniform(-0.03, 0.05)
        if abs(x - part_x) < 0.06:
            y = 0.14
        tips.append((x + (rng.uniform(-0.03, 0.03) if tip else 0.0), y))
    right = [(0.5, 0.5), (0.47, side_len - 0.2), (0.44, side_len), (0.37, side_len - 0.15), (0.36, 0.45)]
    left = [(-0.36, 0.45), (-0.37, side_len - 0.15), (-0.44, side_len), (-0.47, side_len - 0.2), (-0.5, 0.5)]
    cap = np.vstack([top, right, tips, left])
    strands = []
    for x in (-0.25, -0.05, 0.18, 0.32):
        strands.append(np.array([[x * 0.6 + part_x * 0.5, 0.02], [x * 0.85, 0.12], [x, 0.26]]))
    if detail < 40:
        return cap, strands[:2]
    # short lines up from the notches between bangs, and along the side locks
    for k, (x, y) in enumerate(tips):
        if k % 2 == 0 and 0 < k < len(tips) - 1 and rng.random() < 0.7:
            strands.append(np.array([[x, y], [x * 0.9 + part_x * 0.1, y - 0.1 - 0.06 * rng.random()]]))
    for side in (-1, 1):
        strands.append(np.array([[side * 0.44, 0.45], [side * 0.43, side_len - 0.2]]))
    return cap, strands


def _back_hair(d: CharacterDesign, rng) -> list[Shape]:
    s = d.hair_style
    out = []
    if s == "long":
        xs = np.linspace(0.7, -0.7, 9)
        bottom = [(x, 3.0 + (0.2 if k % 2 else 0.0) + rng.uniform(-0.05, 0.05)) for k, x in enumerate(xs)]
        pts = np.vstack([ellipse(0, 0.5, 0.52, 0.58, 180, 360, 16), [(0.62, 1.2), (0.72, 2.2)], bottom,
                         [(-0.72, 2.2), (-0.62, 1.2)]])
        out.append(Shape(pts, "hair"))
    elif s == "bob":
        pts = np.vstack([ellipse(0, 0.5, 0.56, 0.6, 180, 360, 16),
                         [(0.6, 0.9), (0.55, 1.12), (0.2, 1.08), (-0.2, 1.08), (-0.55, 1.12), (-0.6, 0.9)]])
        out.append(Shape(pts, "hair"))
    elif s == "messy":
        pts = np.vstack([ellipse(0, 0.5, 0.55, 0.6, 180, 360, 16),
                         [(0.58, 0.9), (0.5, 1.15), (0.35, 1.0), (-0.35, 1.0), (-0.5, 1.15), (-0.58, 0.9)]])
        out.append(Shape(pts, "hair"))
    elif s == "ponytail":
        tail = np.array([[-0.3, 0.1], [-0.55, 0.05], [-0.85, 0.6], [-0.95, 1.5], [-0.8, 2.3], [-0.7, 1.6],
                         [-0.6, 0.9], [-0.4, 0.4]])
        out.append(Shape(tail, "hair"))
    elif s == "twintails":
        for side in (-1, 1):
            tail = np.array([[side * 0.4, 0.25], [side * 0.75, 0.3], [side * 0.95, 1.2], [side * 0.9, 2.4],
                             [side * 0.75, 2.6], [side * 0.72, 1.5], [side * 0.45, 0.6]])
            out.append(Shape(tail, "hair"))
    elif s == "bun":
        out.append(Shape(ellipse(-0.25, -0.02, 0.26, 0.24, n=20), "hair"))
    return out


def build_figure(d: CharacterDesign, pose: Pose, rng: np.random.Generator, detail: float) -> tuple[list[Shape], dict]:
    """Shapes of the whole figure in head units, back to front, for a character facing +x.

    ``detail`` is the head height in pixels: small figures get simpler faces. Returns the shapes and anchors
    (head box, feet y) in head units.
    """
    f = 0 if pose.view == "front" else 1
    hf = d.height
    sw = 0.7 * d.build
    y_sh = 1.2
    y_waist = y_sh + 1.6 * hf
    y_hip = y_waist + 0.38 * hf
    shapes: list[Shape] = []
    sd = pose.shade_side

    # back hair, then the far arm (three-quarter view: hidden behind the torso)
    shapes += _back_hair(d, rng)
    far_side, near_side = -1, 1  # facing +x: the -x arm is the far one
    shoulder_far = np.array([far_side * (sw - 0.1), y_sh + 0.16])
    shoulder_near = np.array([near_side * (sw - 0.1), y_sh + 0.16])
    if f:
        shapes += _arm(shoulder_far, far_side, pose.arm_far, hf, d.long_sleeves)

    # legs and bottom
    legs, feet = _legs(d, pose, y_hip, hf, f)
    shapes += legs
    if d.bottom_style == "skirt":
        hem = y_hip + 0.85 * hf
        xs = np.linspace(0.78 * d.build + 0.05, -0.78 * d.build - 0.05, 9)
        hem_pts = [(x, hem + (0.05 if k % 2 else 0.0)) for k, x in enumerate(xs)]
        skirt = np.vstack([[(-0.42 * d.build, y_waist), (0.42 * d.build, y_waist)], hem_pts])
        shapes.append(Shape(skirt, "bottom"))
        shapes += [Shape(clip, "shade:bottom", "paint")
                   for clip in clip_to(skirt, [(sd * 0.2, y_waist - 1), (sd * 2, y_waist - 1), (sd * 2, hem + 1), (sd * 0.35, hem + 1)])]
        for x in (-0.35, -0.1, 0.15, 0.4):
            shapes.append(Shape(np.array([(x * 0.5, y_waist + 0.12), (x, hem - 0.02)]), None, "line", 0.6))
    # torso
    waist_w = 0.42 * d.build
    torso = np.array([(-0.14, y_sh - 0.08), (0.14, y_sh - 0.08), (sw - 0.05, y_sh + 0.05), (sw, y_sh + 0.25),
                      (waist_w + 0.05, y_waist - 0.2), (waist_w, y_waist + 0.08), (-waist_w, y_waist + 0.08),
                      (-waist_w - 0.05, y_waist - 0.2), (-sw, y_sh + 0.25), (-(sw - 0.05), y_sh + 0.05)])
    if d.top_style == "hoodie":
        shapes.append(Shape(ellipse(-0.08 * f, y_sh - 0.02, 0.42, 0.2, n=18), "top"))
    neck = np.array([(-0.11, 0.8), (0.11, 0.8), (0.12, y_sh + 0.05), (-0.12, y_sh + 0.05)])
    shapes.append(Shape(torso, "top"))
    shapes += [Shape(c, "shade:top", "paint")
               for c in clip_to(torso, [(sd * 0.25, 0), (sd * 3, 0), (sd * 3, y_waist + 1), (sd * 0.4, y_waist + 1)])]
    shapes.append(Shape(neck, "skin"))
    shapes += [Shape(c, "shade:skin", "paint") for c in clip_to(neck, [(-1, 0.7), (1, 0.7), (1, 1.05), (-1, 1.1)])]
    shapes += _top_details(d, f, y_sh, y_waist, sw)

    # near arm (front view: both arms beside the torso)
    if not f:
        shapes += _arm(np.array([-(sw - 0.1), y_sh + 0.16]), -1, pose.arm_far, hf, d.long_sleeves)
    shapes += _arm(shoulder_near, near_side, pose.arm_near, hf, d.long_sleeves)

    # head
    fw = d.face_width
    skull = ellipse(0.0, 0.5, fw + 0.02, 0.5, 180, 360, 18)
    chin_x = 0.1 * f
    jaw = np.array([(fw + 0.02, 0.5), (fw - 0.01 - 0.03 * f, 0.72), (chin_x + 0.16, 0.93), (chin_x, 1.0),
                    (chin_x - 0.17, 0.92), (-fw + 0.02 + 0.02 * f, 0.73), (-fw - 0.02, 0.5)])
    face = np.vstack([skull, jaw])
    if f:
        shapes.append(Shape(ellipse(-fw + 0.02, 0.6, 0.07, 0.11, n=14), "skin"))  # ear on the back side
    shapes.append(Shape(face, "skin"))
    cap, strands = _hair_cap(d, rng, f, detail)
    # shadow under the bangs
    shapes += [Shape(c, "shade:skin", "paint")
               for c in clip_to(face, np.vstack([[(0.5, 0.3), (0.5, 0.52)], [(x, 0.5 + 0.03 * np.sin(x * 20)) for x in np.linspace(0.4, -0.4, 9)], [(-0.5, 0.52), (-0.5, 0.3)]]))]
    shapes += _face_features(d, pose, f, detail)
    shapes.append(Shape(cap, "hair"))
    if lightness(d.colors["hair"]) < 40:
        # the ring highlight of dark hair
        ring = np.vstack([ellipse(0.0, 0.5, 0.44, 0.44, 200, 250, 8), ellipse(0.0, 0.5, 0.36, 0.36, 250, 200, 8)])
        shapes += [Shape(c, "hl:hair", "paint") for c in clip_to(ring, cap)]
    else:
        shapes += [Shape(c, "shade:hair", "paint")
                   for c in clip_to(cap, [(sd * 0.22, -1), (sd * 1, -1), (sd * 1, 2), (sd * 0.3, 2)])]
    for s in strands:
        shapes.append(Shape(s, None, "line", 0.55))
    shapes += _accessory(d, f, y_sh)
    head_box = (-0.6, -0.1, 0.6, 1.05)
    feet_y = max(a[1] for _, _, a in feet) + 0.12
    return shapes, {"head": head_box, "feet": feet_y}


def _top_details(d, f, y_sh, y_waist, sw) -> list[Shape]:
    out = []
    cx = 0.04 * f
    if d.top_style == "sailor":
        collar = np.array([(-sw + 0.12, y_sh + 0.02), (-0.13, y_sh - 0.06), (cx, y_sh + 0.55), (0.13, y_sh - 0.06),
                           (sw - 0.12, y_sh + 0.02), (sw - 0.05, y_sh + 0.35), (cx + 0.12, y_sh + 0.7),
                           (cx - 0.12, y_sh + 0.7), (-sw + 0.05, y_sh + 0.35)])
        out.append(Shape(collar, "accessory"))
        out.append(Shape(np.array([(-sw + 0.14, y_sh + 0.1), (-sw + 0.1, y_sh + 0.3)]), None, "line", 0.6))
        out.append(Shape(np.array([(sw - 0.14, y_sh + 0.1), (sw - 0.1, y_sh + 0.3)]), None, "line", 0.6))
    elif d.top_style == "shirt":
        out.append(Shape(np.array([(-0.16, y_sh - 0.05), (cx, y_sh + 0.3), (0.16, y_sh - 0.05)]), None, "line", 0.8))
        out.append(Shape(np.array([(cx, y_sh + 0.3), (cx, y_waist)]), None, "line", 0.6))
        for k in range(3):
            y = y_sh + 0.55 + k * 0.38
            out.append(Shape(ellipse(cx + 0.06, y, 0.025, 0.025, n=8), None, "ink"))
    elif d.top_style == "jacket":
        out.append(Shape(np.array([(-0.16, y_sh - 0.05), (cx - 0.05, y_sh + 0.8), (cx - 0.05, y_waist + 0.05)]), None, "line", 0.9))
        out.append(Shape(np.array([(0.16, y_sh - 0.05), (cx + 0.05, y_sh + 0.8), (cx + 0.05, y_waist + 0.05)]), None, "line", 0.9))
        out.append(Shape(np.array([(-0.16, y_sh - 0.05), (-0.28, y_sh + 0.35), (-0.1, y_sh + 0.55)]), None, "line", 0.7))
        out.append(Shape(np.array([(0.16, y_sh - 0.05), (0.28, y_sh + 0.35), (0.1, y_sh + 0.55)]), None, "line", 0.7))
    elif d.top_style == "hoodie":
        out.append(Shape(np.array([(-0.3, y_waist - 0.45), (0.3, y_waist - 0.45)]), None, "line", 0.6))
        out.append(Shape(np.array([(-0.06, y_sh + 0.02), (-0.08, y_sh + 0.5)]), None, "line", 0.6))
        out.append(Shape(np.array([(0.06, y_sh + 0.02), (0.08, y_sh + 0.5)]), None, "line", 0.6))
    else:  # tshirt
        out.append(Shape(ellipse(cx, y_sh - 0.04, 0.17, 0.1, 0, 180, 10), None, "line", 0.7))
    # folds
    out.append(Shape(np.array([(-0.3, y_waist - 0.15), (-0.18, y_waist - 0.45)]), None, "line", 0.5))
    return out


def _face_features(d: CharacterDesign, pose: Pose, f: int, detail: float) -> list[Shape]:
    out = []
    es = d.eye_size
    if detail < 12:
        return out
    eye_y = 0.62
    for side in (-1, 1):
        far = f and side < 0
        ex = side * 0.17 + 0.06 * f
        wf = 0.72 if far else 1.0
        if detail < 30:
            out.append(Shape(ellipse(ex, eye_y, 0.035 * wf * es, 0.07 * es, n=10), None, "ink"))
            continue
        rw, rh = 0.085 * wf * es, 0.1 * es
        out.append(Shape(ellipse(ex, eye_y, rw, rh, n=20), "white", "paint"))
        out.append(Shape(ellipse(ex + 0.005 * f, eye_y + 0.015, rw * 0.78, rh * 0.88, n=18), "eyes"))
        out.append(Shape(ellipse(ex + 0.005 * f, eye_y + 0.03, rw * 0.36, rh * 0.42, n=12), None, "ink"))
        out.append(Shape(ellipse(ex - 0.025 * wf, eye_y - 0.02, rw * 0.24, rh * 0.22, n=10), "white", "paint"))
        lash = np.vstack([ellipse(ex, eye_y + 0.02, rw * 1.15, rh * 1.05, 195, 345, 10),
                          ellipse(ex, eye_y + 0.04, rw * 1.08, rh * 1.02, 340, 200, 10)])
        out.append(Shape(lash, None, "ink"))
        brow_y = 0.42
        out.append(Shape(np.array([(ex - side * 0.08 * wf, brow_y + 0.02), (ex + side * 0.06 * wf, brow_y - 0.02)]), None, "line", 0.7))
        if d.accessory == "glasses":
            out.append(Shape(ellipse(ex, eye_y + 0.01, rw * 1.6, rh * 1.1, n=20), None, "line", 0.6, closed=True))
    if d.accessory == "glasses" and detail >= 30:
        out.append(Shape(np.array([(-0.17 + 0.06 * f + 0.13 * 0.75, 0.6), (0.17 + 0.06 * f - 0.13, 0.6)]), None, "line", 0.6))
    nx = 0.05 + 0.1 * f
    out.append(Shape(np.array([(nx, 0.76), (nx - 0.02, 0.8)]), None, "line", 0.6))
    mx = 0.06 * f
    if pose.mouth == "open" and detail >= 24:
        out.append(Shape(ellipse(mx, 0.88, 0.06, 0.035, n=12), None, "ink"))
    elif pose.mouth == "smile":
        out.append(Shape(ellipse(mx, 0.86, 0.07, 0.03, 10, 170, 8), None, "line", 0.6))
    else:
        out.append(Shape(np.array([(mx - 0.05, 0.88), (mx + 0.05, 0.88)]), None, "line", 0.6))
    return out


def _accessory(d: CharacterDesign, f: int, y_sh: float) -> list[Shape]:
    a = d.accessory
    if a == "ribbon":
        c = np.array([0.3, 0.02])
        left = np.array([c, c + (-0.22, -0.14), c + (-0.24, 0.12)])
        right = np.array([c, c + (0.22, -0.14), c + (0.24, 0.12)])
        return [Shape(left, "accessory"), Shape(right, "accessory"),
                Shape(ellipse(c[0], c[1], 0.06, 0.06, n=10), "accessory")]
    if a == "hairband":
        band = np.vstack([ellipse(0, 0.5, 0.52, 0.6, 190, 350, 14), ellipse(0, 0.5, 0.47, 0.52, 350, 190, 14)])
        return [Shape(band, "accessory")]
    if a == "scarf":
        scarf = np.array([(-0.3, y_sh - 0.2), (0.3, y_sh - 0.2), (0.35, y_sh + 0.08), (-0.35, y_sh + 0.08)])
        tail = np.array([(0.1, y_sh), (0.3, y_sh), (0.34, y_sh + 0.8), (0.14, y_sh + 0.78)])
        return [Shape(scarf, "accessory"), Shape(tail, "accessory")]
    if a == "tie":
        cx = 0.04 * f
        tie = np.array([(cx - 0.05, y_sh), (cx + 0.05, y_sh), (cx + 0.09, y_sh + 0.75), (cx, y_sh + 0.88),
                        (cx - 0.09, y_sh + 0.75)])
        return [Shape(tie, "accessory")]
    return []


# --- drawing ---------------------------------------------------------------------------------------------------------


def line_width(u: float, page_w: int) -> float:
    """Outline width in px for a figure of head height ``u`` (thicker for close-ups, like a real pen)."""
    return float(np.clip(1.0 + 0.016 * u, 1.0, max(2.0, 0.0045 * page_w)))


def part_index(palette: Palette, d: CharacterDesign, part: str) -> int:
    if part == "white":
        return palette.add((255, 255, 255), "cloth")
    if part.startswith("shade:"):
        return palette.add(shade_rgb(d.colors[part[6:]]), "shade")
    if part.startswith("hl:"):
        base = d.colors[part[3:]]
        hl = tuple(int(min(255, v * 0.45 + 255 * 0.55)) for v in base)
        return palette.add(hl, "paper")
    return palette.add(d.colors[part], PART_ROLES[part])


def draw_figure(canvas: Canvas, palette: Palette, d: CharacterDesign, pose: Pose, *, x: float, y: float, u: float,
                mirror: bool, owner: int, rng: np.random.Generator, page_w: int) -> tuple[float, float, float, float]:
    """Draw ``d`` with the top of its skull at page point (x, y) and head height ``u`` px; ``mirror`` makes it face
    left. Returns the head box in page pixels."""
    shapes, anchors = build_figure(d, pose, rng, detail=u)
    lw = line_width(u, page_w)
    sx = -u if mirror else u
    for s in shapes:
        pts = np.column_stack([x + s.pts[:, 0] * sx, y + s.pts[:, 1] * u])
        if s.kind == "fill":
            canvas.fill(pts, part_index(palette, d, s.part), owner, outline=lw)
        elif s.kind == "paint":
            if s.part == "white":
                canvas.fill(pts, part_index(palette, d, "white"), owner, outline=0)
            else:
                canvas.paint(pts, part_index(palette, d, s.part))
        elif s.kind == "group":
            polys = [np.column_stack([x + it[:, 0] * sx, y + it[:, 1] * u]) for it in s.items if not isinstance(it, tuple)]
            limbs = [(np.column_stack([x + pth[:, 0] * sx, y + pth[:, 1] * u]), rad * u) for pth, rad in
                     (it for it in s.items if isinstance(it, tuple))]
            canvas.union(polys, limbs, part_index(palette, d, s.part), owner, outline=lw)
        elif s.kind == "limb":
            canvas.limb(pts, s.radii * u, part_index(palette, d, s.part), owner, outline=lw)
        elif s.kind == "line":
            canvas.stroke(pts, max(1.0, lw * s.width), owner, closed=s.closed)
        else:
            canvas.ink_fill(pts, owner)
    hx0, hy0, hx1, hy1 = anchors["head"]
    xs = sorted((x + hx0 * sx, x + hx1 * sx))
    return (xs[0], y + hy0 * u, xs[1], y + hy1 * u)


def figure_extent(d: CharacterDesign) -> float:
    """Height of the full figure in head units (top of skull to soles)."""
    hf = d.height
    return 1.2 + 1.6 * hf + 0.38 * hf + 2.85 * hf + 0.25


def render_reference(design: CharacterDesign, *, seed: int = 0, size: int = 512) -> np.ndarray:
    """uint8 (size, size, 3) RGB colour reference of ``design`` alone on white: a full-body standing figure,
    front or three-quarter view, in a calmer pose and another scale than on the pages."""
    from .canvas import render_color

    if size < 32:
        raise ValueError(f"reference size must be >= 32 px, got {size}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EF, len(design.name)]))
    full = bool(rng.random() < 0.6)
    pose = Pose(view=str(rng.choice(["front", "3q"])),
                arm_near=str(rng.choice(["down", "hip", "raise"] if full else ["down", "hip"])),
                arm_far="down", legs="stand", mouth=str(rng.choice(["closed", "smile"])),
                shade_side=int(rng.choice([-1, 1])))
    palette = Palette()
    canvas = Canvas(size, size)
    if full:
        ext = figure_extent(design) + 0.6  # raised arms and hair above the head
        u = size * rng.uniform(0.84, 0.92) / ext
        y = (size - ext * u) / 2 + 0.5 * u
    else:  # knees up: a bigger face, still every colour of the scheme
        ext = 1.2 + 2.0 * design.height + 1.0 * design.height + 0.4
        u = size * rng.uniform(0.88, 0.95) / ext
        y = size * 0.04 + 0.3 * u
    x = size / 2 + rng.uniform(-0.05, 0.05) * size
    draw_figure(canvas, palette, design, pose, x=x, y=y, u=u, mirror=bool(rng.random() < 0.5), owner=1, rng=rng,
                page_w=max(size, 700))
    return render_color(canvas.part, canvas.ink, palette)
