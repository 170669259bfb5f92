"""Training crops for the identity embedding: labelled characters and unlabelled real-art instances.

Sources (``build_crops``):
- synthetic chapters (exact identities, one class per character of each chapter): B/W page crops, the same boxes
  on the colour edition turned gray or "printed" (``print_tones``), faces, and ``render_reference`` images
  turned gray / printed, so that a colour reference and a B/W appearance share a class;
- Pepper&Carrot bodies (``peppercarrot_dev_characters.json``, colour, named): one class per name, turned gray or
  printed; episodes in ``hold_out`` are kept for validation;
- unlabelled real art (B/W manga pages, colour pages, illustrations and faces turned B/W): random crops, each its
  own class, seen in two augmented views (instance discrimination), so the network also learns real manga art.

Never used: the Manga109 pages (``pages_bw/manga109``, ``manga109_dev.json``): they are the held-out evaluation.

Every crop is stored letterboxed in a ``STORE x STORE`` square in ink units (uint8, 0 = paper) together with its
content box (x0, y0, x1, y1 in that square); the crop carries some context around the character box so that
augmentation can jitter the box as a detector would.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .embedding import print_tones

STORE = 144          # stored side in pixels
CONTEXT = 0.08       # context kept around a character box, as a fraction of its size
KINDS = ("bw", "color-gray", "color-print", "reference", "real", "unlabelled")


@dataclass
class CropSet:
    """``images`` uint8 (N, STORE, STORE) ink; ``boxes`` float32 (N, 4) content boxes; ``labels`` int64 (N,) class
    per crop (-1: unlabelled, its own instance); ``kinds`` int8 (N,) index into KINDS; ``classes`` class names."""

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.npz")
        np.savez(tmp, images=self.images, boxes=self.boxes, labels=self.labels, kinds=self.kinds,
                 classes=np.array(json.dumps(self.classes)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "CropSet":
        with np.load(path) as z:
            return cls(z["images"], z["boxes"], z["labels"], z["kinds"], json.loads(str(z["classes"])))


class _Builder:
    def __init__(self):
        self.images, self.boxes, self.labels, self.kinds = [], [], [], []
        self.classes: list[str] = []
        self._class_index: dict[str, int] = {}

    def label(self, name: str | None) -> int:
        if name is None:
            return -1
        if name not in self._class_index:
            self._class_index[name] = len(self.classes)
            self.classes.append(name)
        return self._class_index[name]

    def add(self, gray: np.ndarray, box, name: str | None, kind: str):
        """Store the crop of ``gray`` (uint8 (H, W), paper white) around ``box`` with context."""
        H, W = gray.shape
        x0, y0, x1, y1 = (float(v) for v in box)
        mx, my = CONTEXT * (x1 - x0), CONTEXT * (y1 - y0)
        cx0, cy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        cx1, cy1 = int(min(W, np.ceil(x1 + mx))), int(min(H, np.ceil(y1 + my)))
        if cx1 - cx0 < 4 or cy1 - cy0 < 4:
            return
        crop = gray[cy0:cy1, cx0:cx1]
        h, w = crop.shape
        s = STORE / max(h, w)
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        small = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        img = np.zeros((STORE, STORE), np.uint8)
        oy, ox = (STORE - nh) // 2, (STORE - nw) // 2
        img[oy:oy + nh, ox:ox + nw] = 255 - small
        self.images.append(img)
        self.boxes.append([ox + (x0 - cx0) * s, oy + (y0 - cy0) * s, ox + (x1 - cx0) * s, oy + (y1 - cy0) * s])
        self.labels.append(self.label(name))
        self.kinds.append(KINDS.index(kind))

    def done(self) -> CropSet:
        return CropSet(np.stack(self.images), np.asarray(self.boxes, np.float32), np.asarray(self.labels, np.int64),
                       np.asarray(self.kinds, np.int8), self.classes)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _bw_versions(rgb: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, str]]:
    """A colour image as plain gray and as printed (random tone thresholds, sometimes with a dot screen)."""
    printed = print_tones(rgb, black_L=float(rng.uniform(22, 40)), white_L=float(rng.uniform(70, 88)),
                          dots=int(rng.choice([0, 0, 2, 3])))
    return [(_gray(rgb), "color-gray"), (printed, "color-print")]


def _add_color(b: _Builder, rgb: np.ndarray, box, name, rng, *, pick_one: bool = False, kind: str | None = None):
    """Add the B/W versions (gray, printed; or one of them) of the region of colour ``rgb`` around ``box``."""
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = 2 * CONTEXT * (x1 - x0) + 2, 2 * CONTEXT * (y1 - y0) + 2
    rx0, ry0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
    rx1, ry1 = int(min(W, x1 + mx)), int(min(H, y1 + my))
    if rx1 - rx0 < 4 or ry1 - ry0 < 4:
        return
    versions = _bw_versions(np.ascontiguousarray(rgb[ry0:ry1, rx0:rx1]), rng)
    if pick_one:
        versions = [versions[int(rng.integers(len(versions)))]]
    for gray, k in versions:
        b.add(gray, (x0 - rx0, y0 - ry0, x1 - rx0, y1 - ry0), name, kind or k)


def foreground_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of what is not border-connected near-white background (the whole image when nothing is)."""
    gray = _gray(rgb)
    paper = (gray >= 235).astype(np.uint8)
    _, labels = cv2.connectedComponents(paper, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fg = ~np.isin(labels, border[border != 0]) | (paper == 0)
    ys, xs = np.nonzero(fg)
    if len(ys) < 16:
        return 0, 0, rgb.shape[1], rgb.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def add_synthetic(b: _Builder, seeds, rng: np.random.Generator, *, pages: int = 3, log=None):
    """Characters of synthetic chapters ``seeds`` (one class per chapter and name)."""
    from manga_pipeline.synthetic import generate_chapter, render_reference

    for n, seed in enumerate(seeds):
        width = int(rng.choice([700, 800, 900, 1000, 1100]))
        size = (width, int(round(width * 1.414)))
        ch = generate_chapter(pages, seed=int(seed), size=size, cast_size=int(rng.integers(3, 7)))
        for page in ch.pages:
            for c in (*page.characters, *page.faces):
                name = f"syn{seed}:{c.identity}"
                b.add(page.bw, c.box, name, "bw")
                if rng.random() < 0.5:
                    _add_color(b, page.color, c.box, name, rng, pick_one=True)
        for k, design in enumerate(ch.cast):
            for r in range(2):
                ref = render_reference(design, seed=int(rng.integers(1 << 30)), size=int(rng.choice([256, 384, 512])))
                box = foreground_box(ref)
                for gray, _ in _bw_versions(ref, rng):
                    b.add(gray, box, f"syn{seed}:{design.name}", "reference")
        if log and n % 20 == 0:
            log(f"synthetic chapter {n + 1}/{len(seeds)}: {len(b.labels)} crops")


def add_peppercarrot(b: _Builder, data: Path, rng: np.random.Generator, *, hold_out=("episode-05",),
                     copies: int = 2):
    """Named bodies of Pepper&Carrot (colour), turned B/W; ``hold_out`` episodes are skipped."""
    ann = data / "annotations" / "peppercarrot_dev_characters.json"
    doc = json.loads(ann.read_text(encoding="utf-8"))
    for page in doc["pages"]:
        if any(h in page["image"] for h in hold_out):
            continue
        rgb = cv2.cvtColor(cv2.imread(str(ann.parent / page["image"])), cv2.COLOR_BGR2RGB)
        for body in page["bodies"]:
            if body.get("uncertain") or body["character"] == "Other":
                continue
            for _ in range(copies):
                _add_color(b, rgb, body["box"], f"pc:{body['character']}", rng, kind="real")


def _random_box(rng, W, H, lo=0.15, hi=0.5):
    side = rng.uniform(lo, hi) * min(W, H)
    aspect = float(np.exp(rng.uniform(np.log(0.45), np.log(2.2))))
    w, h = min(W, side * np.sqrt(aspect)), min(H, side / np.sqrt(aspect))
    x0, y0 = rng.uniform(0, W - w), rng.uniform(0, H - h)
    return x0, y0, x0 + w, y0 + h


def add_unlabelled(b: _Builder, data: Path, rng: np.random.Generator, *, per_page: int = 12):
    """Random crops of real B/W pages and of colour art turned B/W; each is its own instance."""
    bw_dirs = ["pages_bw/openmantra", "pages_bw/black_jack", "pages_bw/panel_extractor"]
    color_dirs = ["color/onepiece", "color/comics", "color/golden_age_panels", "color/peppercarrot"]
    whole_dirs = ["color/illustrations", "color/faces"]
    exts = (".jpg", ".jpeg", ".png", ".webp")
    for d in bw_dirs + color_dirs + whole_dirs:
        files = sorted(p for p in (data / d).glob("*") if p.suffix.lower() in exts)
        for f in files:
            img = cv2.imread(str(f))
            if img is None:
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            H, W = rgb.shape[:2]
            if d in whole_dirs:
                box = foreground_box(rgb)
                for gray, _ in _bw_versions(rgb, rng):
                    b.add(gray, box, f"img:{f.name}", "unlabelled")  # two B/W styles of one image: a class
                continue
            gray_page = _gray(rgb) if d in bw_dirs else None
            n = per_page if d in bw_dirs else per_page // 2
            for _ in range(n):
                box = _random_box(rng, W, H)
                if gray_page is not None:
                    b.add(gray_page, box, None, "unlabelled")
                else:
                    _add_color(b, rgb, box, None, rng, pick_one=True, kind="unlabelled")


def build_crops(data: Path | None, *, chapters: int = 300, seed: int = 0, log=None,
                hold_out=("episode-05",)) -> CropSet:
    """All training crops; ``data`` None (no ``../shared/data``) gives synthetic crops only."""
    rng = np.random.default_rng(seed)
    b = _Builder()
    add_synthetic(b, range(10_000 + seed * 100_000, 10_000 + seed * 100_000 + chapters), rng, log=log)
    if data is not None:
        add_peppercarrot(b, data, rng, hold_out=hold_out)
        if log:
            log(f"pepper&carrot: {len(b.labels)} crops")
        add_unlabelled(b, data, rng)
        if log:
            log(f"unlabelled real art: {len(b.labels)} crops")
    return b.done()
