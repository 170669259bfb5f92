"""Training and validation data for the colorizer.

Three sources:
- ``synthetic``: chapters drawn by ``manga_pipeline.synthetic`` with known characters. Input = the B/W page crop
  of a panel; target = the colour page's a*b*; each character's region = its mask; its reference = features of
  ``render_reference(design, seed=<another seed>)``, a *different* drawing of the same character, so the net
  learns to transfer colours rather than to copy pixels.
- ``real``: the colour images of ``../shared/data/color`` turned manga-like (gray, XDoG lines, screentone
  halftone, binarisation, mixed at random); the scene reference is another crop of the same image or another
  page of the same series (sometimes none). Nothing from that folder is ever written into the project.
- ``characters``: real characters with real references: crops around the annotated Pepper and Carrot bodies of
  ``annotations/peppercarrot_dev_characters.json`` (episodes given by the caller), each body's box its region and
  its reference the same character's box cut from *another* annotated page (as a user would register one).

Everything is prepared at the working resolution (panel long side ``size``) as ``PanelSample`` records; training
draws random square crops, flips, hint points and reference dropouts from them at batch time.
Validation splits are fixed by name or seed and never seen in training (see ``REAL_VAL`` / ``SYNTH_VAL_SEEDS``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from colorizer.conditioning import NetInputs, build_inputs_from_ids, working_shape
from colorizer.reference import ReferenceFeatures, extract_reference
from manga_pipeline.colorspace import rgb_to_gray, rgb_to_lab

REPO = Path(__file__).resolve().parent.parent
REAL_FOLDERS = ("onepiece", "peppercarrot", "illustrations", "faces", "comics", "golden_age_panels")
# held out from training: validation (a few One Piece pages) and one Pepper&Carrot episode that the
# per-character evaluation turns B/W
REAL_VAL = {
    "onepiece": ("022.jpg", "023.jpg", "024.jpg", "025.jpg", "026.jpg"),
    "peppercarrot": ("episode-28_page00.jpg", "episode-28_page01.jpg"),
}
# of those, the real validation figure is reported on these pages; the others tune the free-colour chroma scale
REAL_VAL_REPORTED = {"onepiece": ("024.jpg", "025.jpg", "026.jpg")}
REAL_TUNE = {"onepiece": ("022.jpg", "023.jpg")}
SYNTH_VAL_SEEDS = (910_001, 910_002)  # synthetic validation chapters; training seeds never reach 900_000
SYNTH_TUNE_SEEDS = (905_001,)  # synthetic chapter for tuning the chroma scale (never trained on, not reported)
_MAX_SIDE = 800  # real images are kept in memory at most this big


def shared_data_dir() -> Path:
    """``../shared/data`` next to the project (``MANGA_SHARED_DATA`` overrides)."""
    env = os.environ.get("MANGA_SHARED_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


@dataclass
class PanelSample:
    """One panel at working resolution.

    gray uint8 (h, w) B/W input; ab float16 (h, w, 2) true a*b*; L float16 (h, w) true L*;
    region_ids uint8 (h, w) (0 scene, r = character r); refs: one ReferenceFeatures or None per character;
    scene: the scene reference or None; source: where it came from (for reports).
    """

    gray: np.ndarray
    ab: np.ndarray
    L: np.ndarray
    region_ids: np.ndarray
    refs: list
    scene: ReferenceFeatures | None
    source: str


# --- B/W styles -----------------------------------------------------------------------------------------------


def xdog(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 (H, W) in 0..1: 1 paper, 0 ink lines (extended difference of Gaussians)."""
    g = gray.astype(np.float32) / 255.0
    sigma = rng.uniform(0.6, 1.4)
    g1 = cv2.GaussianBlur(g, (0, 0), sigma)
    g2 = cv2.GaussianBlur(g, (0, 0), sigma * 1.6)
    d = g1 - 0.98 * g2
    eps = rng.uniform(-0.02, 0.0)
    phi = rng.uniform(60, 200)
    out = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    return np.clip(out, 0, 1).astype(np.float32)


def screentone(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 0..1: mid-tones as a rotated dot halftone, darks ink, lights paper."""
    h, w = gray.shape
    dark = 1.0 - gray.astype(np.float32) / 255.0
    period = rng.uniform(3.5, 7.0)
    ang = np.deg2rad(rng.choice([45.0, 30.0, 0.0, 15.0]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    thr = 0.5 + 0.25 * (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period))
    levels = rng.uniform(0.15, 0.3), rng.uniform(0.75, 0.9)
    tone = (dark > thr).astype(np.float32)
    tone[dark < levels[0]] = 0.0
    tone[dark > levels[1]] = 1.0
    return 1.0 - tone


def mangaify(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB -> uint8 gray in a random manga-like style (at the resolution given)."""
    gray = rgb_to_gray(rgb)
    style = rng.choice(["gray", "gray_lines", "lines_tone", "binary_lines", "lines", "tone"],
                       p=[0.15, 0.2, 0.3, 0.1, 0.1, 0.15])
    g = gray.astype(np.float32) / 255.0
    if style == "gray":
        out = g
    elif style == "gray_lines":
        out = np.minimum(g, xdog(gray, rng))
    elif style == "lines_tone":
        out = np.minimum(screentone(gray, rng), xdog(gray, rng))
    elif style == "binary_lines":
        t = rng.uniform(0.25, 0.5)
        out = np.minimum((g > t).astype(np.float32), xdog(gray, rng))
    elif style == "lines":
        out = xdog(gray, rng)
    else:
        out = screentone(gray, rng)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 0.8))
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _area(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _lab_targets(rgb_work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = rgb_to_lab(rgb_work)
    return lab[..., 1:].astype(np.float16), lab[..., 0].astype(np.float16)


# --- real images ----------------------------------------------------------------------------------------------


def _load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    s = _MAX_SIDE / max(rgb.shape[:2])
    if s < 1:
        rgb = _area(rgb, (round(rgb.shape[0] * s), round(rgb.shape[1] * s)))
    return rgb


def real_files(split: str, folders: Sequence[str] = REAL_FOLDERS, exclude: Sequence[str] = ()) -> dict[str, list[Path]]:
    """{folder: files} of the training ("train") or validation ("val") split; empty when the data is absent.
    exclude: "folder/name-prefix" entries left out of the training split (e.g. "peppercarrot/episode-05")."""
    root = shared_data_dir() / "color"
    out: dict[str, list[Path]] = {}
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            continue
        held = set(REAL_VAL.get(folder, ()))
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        keep = [p for p in files if (p.name in held) == (split == "val")]
        if split == "train":
            keep = [p for p in keep if not any(f"{folder}/{p.name}".startswith(e) for e in exclude)]
        if keep:
            out[folder] = keep
    return out


def _random_crop_box(h: int, w: int, rng: np.random.Generator, page_like: bool) -> tuple[int, int, int, int]:
    if page_like:  # a panel-sized part of a page
        ch = int(h * rng.uniform(0.25, 0.6))
        cw = int(w * rng.uniform(0.3, 0.8))
    else:  # a single illustration / face / panel: most of it
        ch = int(h * rng.uniform(0.6, 1.0))
        cw = int(w * rng.uniform(0.6, 1.0))
    ch, cw = max(ch, 16), max(cw, 16)
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return x0, y0, x0 + cw, y0 + ch


def _training_shape(h: int, w: int, size: int, min_side: int) -> tuple[int, int]:
    """``working_shape`` of an (h, w) crop, its short side grown to ``min_side`` so a training crop fits."""
    h, w = working_shape(h, w, size)
    if min(h, w) < min_side:
        s = min_side / min(h, w)
        h, w = max(min_side, round(h * s)), max(min_side, round(w * s))
    return h, w


def _panel_sample_from_rgb(rgb_crop: np.ndarray, size: int, rng: np.random.Generator, *, min_side: int,
                           scene: ReferenceFeatures | None, source: str) -> PanelSample:
    h, w = _training_shape(*rgb_crop.shape[:2], size, min_side)
    # draw the B/W style at twice the working size and area-average down, as a real page's tones are
    hi = _area(rgb_crop, (2 * h, 2 * w))
    gray = _area(mangaify(hi, rng), (h, w))
    ab, L = _lab_targets(_area(rgb_crop, (h, w)))
    return PanelSample(gray, ab, L, np.zeros((h, w), np.uint8), [], scene, source)


def real_panel_samples(n: int, *, size: int, seed: int, min_side: int = 0, split: str = "train",
                       folders: Sequence[str] = REAL_FOLDERS, exclude: Sequence[str] = (),
                       progress=None) -> list[PanelSample]:
    """``n`` random panel-like crops of the real colour images, each with a scene reference taken from another
    crop of the same image (40 %), another image of the same folder (20 %) or none (40 %)."""
    files = real_files(split, folders, exclude)
    if not files:
        return []
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}

    def get(p: Path) -> np.ndarray:
        if p not in cache:
            cache[p] = _load_rgb(p)
        return cache[p]

    page_like = {"onepiece", "peppercarrot", "comics"}
    folder_names = sorted(files)
    out = []
    for i in range(n):
        folder = folder_names[int(rng.integers(len(folder_names)))]
        path = files[folder][int(rng.integers(len(files[folder])))]
        img = get(path)
        box = _random_crop_box(*img.shape[:2], rng, folder in page_like)
        crop = img[box[1]:box[3], box[0]:box[2]]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        u = rng.random()
        scene = None
        if u < 0.6:
            other = img if (u < 0.4 or len(files[folder]) == 1) else get(
                files[folder][int(rng.integers(len(files[folder])))])
            b2 = _random_crop_box(*other.shape[:2], rng, folder in page_like)
            scene = extract_reference(np.ascontiguousarray(other[b2[1]:b2[3], b2[0]:b2[2]]),
                                      remove_background=folder in ("illustrations",), seed=i)
        out.append(_panel_sample_from_rgb(np.ascontiguousarray(crop), size, rng, min_side=min_side, scene=scene,
                                          source=f"{folder}/{path.name}"))
        if progress and (i + 1) % 100 == 0:
            progress(f"real samples {i + 1}/{n}")
    return out


def real_val_samples(*, size: int, pages: dict[str, Sequence[str]] = REAL_VAL_REPORTED) -> list[PanelSample]:
    """Held-out real pages ({folder: file names}, all in ``REAL_VAL``) cut into a fixed 2 x 3 grid of panel-sized
    crops, B/W style fixed by seed, no reference (the pipeline's situation for a character it does not know)."""
    out = []
    for folder, paths in real_files("val", tuple(pages)).items():
        paths = [p for p in paths if p.name in set(pages[folder])]
        for j, path in enumerate(paths):
            img = _load_rgb(path)
            h, w = img.shape[:2]
            for r in range(3):
                for c in range(2):
                    crop = img[r * h // 3:(r + 1) * h // 3, c * w // 2:(c + 1) * w // 2]
                    rng = np.random.default_rng(7000 + 10 * j + 2 * r + c)
                    out.append(_panel_sample_from_rgb(np.ascontiguousarray(crop), size, rng, min_side=0,
                                                      scene=None, source=f"{folder}/{path.name}[{r},{c}]"))
    return out


PC_ANNOTATIONS = "annotations/peppercarrot_dev_characters.json"
PC_CHARACTERS = ("Pepper", "Carrot")
# never a training source of characters: its pages are the validation set of ``character_panel_samples`` and the
# held-out pages of benchmarks/eval_peppercarrot.py
PC_VAL_EPISODES = ("episode-05",)


def character_panel_samples(episodes: Sequence[str], *, size: int, seed: int, min_side: int = 0,
                            variants: int = 3, progress=None) -> list[PanelSample]:
    """Real characters with references from other pages: for each annotated Pepper / Carrot body on a page of
    ``episodes`` (image-name prefixes such as "episode-01"), ``variants`` crops around it (1.2-2.2x its box),
    every Pepper / Carrot box in the crop a region (clipped to the crop), each region's reference that character's
    box cut from another annotated page of those episodes (full resolution, background removed as for a user's
    reference). B/W input: plain gray half of the time (as ``eval colorize`` turns pages), else ``mangaify``.
    Empty when the annotations are absent."""
    import json

    ann = shared_data_dir() / PC_ANNOTATIONS
    if not ann.is_file() or not episodes:
        return []
    pages = [p for p in json.loads(ann.read_text())["pages"]
             if any(Path(p["image"]).name.startswith(e) for e in episodes)
             and any(b["character"] in PC_CHARACTERS for b in p["bodies"])]
    rng = np.random.default_rng(seed)
    full = {}
    for p in pages:
        bgr = cv2.imread(str((ann.parent / p["image"]).resolve()), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read {p['image']}")
        full[p["image"]] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    # every (page, box) reference crop of each character, extracted once
    ref_pool: dict[str, list[tuple[str, ReferenceFeatures]]] = {c: [] for c in PC_CHARACTERS}
    for p in pages:
        for b in p["bodies"]:
            if b["character"] in PC_CHARACTERS:
                x0, y0, x1, y1 = (int(v) for v in b["box"])
                crop = np.ascontiguousarray(full[p["image"]][y0:y1, x0:x1])
                if min(crop.shape[:2]) >= 8:
                    ref_pool[b["character"]].append((p["image"], extract_reference(crop)))
    out = []
    for p in pages:
        img = full[p["image"]]
        H, W = img.shape[:2]
        bodies = [b for b in p["bodies"] if b["character"] in PC_CHARACTERS]
        for b in bodies:
            for v in range(variants):
                x0, y0, x1, y1 = (float(t) for t in b["box"])
                cx, cy = (x0 + x1) / 2 + rng.uniform(-0.15, 0.15) * (x1 - x0), (y0 + y1) / 2
                s_ = rng.uniform(1.2, 2.2)
                hw, hh = max(x1 - x0, 0.6 * (y1 - y0)) * s_ / 2, max(y1 - y0, 0.6 * (x1 - x0)) * s_ / 2
                cx0, cy0 = int(max(0, cx - hw)), int(max(0, cy - hh))
                cx1, cy1 = int(min(W, cx + hw)), int(min(H, cy + hh))
                if cx1 - cx0 < 16 or cy1 - cy0 < 16:
                    continue
                h, w = _training_shape(cy1 - cy0, cx1 - cx0, size, min_side)
                crop = np.ascontiguousarray(img[cy0:cy1, cx0:cx1])
                hi = _area(crop, (2 * h, 2 * w))
                g = rgb_to_gray(hi) if rng.random() < 0.5 else mangaify(hi, rng)
                gray = _area(g, (h, w))
                ab, L = _lab_targets(_area(crop, (h, w)))
                ids = np.zeros((h, w), np.uint8)
                refs: list = []
                sx, sy = w / (cx1 - cx0), h / (cy1 - cy0)
                inside = []
                for o in bodies:
                    bx0, by0, bx1, by1 = o["box"]
                    ix0, iy0 = round((max(bx0, cx0) - cx0) * sx), round((max(by0, cy0) - cy0) * sy)
                    ix1, iy1 = round((min(bx1, cx1) - cx0) * sx), round((min(by1, cy1) - cy0) * sy)
                    if (ix1 - ix0) * (iy1 - iy0) >= 12 and ix1 > ix0 and iy1 > iy0:
                        inside.append(((ix1 - ix0) * (iy1 - iy0), o["character"], (ix0, iy0, ix1, iy1)))
                for _, name, (ix0, iy0, ix1, iy1) in sorted(inside, key=lambda t: -t[0]):
                    others = [f for img_name, f in ref_pool[name] if img_name != p["image"]]
                    refs.append(others[int(rng.integers(len(others)))] if others else None)
                    ids[iy0:iy1, ix0:ix1] = len(refs)
                if rng.random() < 0.5:
                    gray, ab, L, ids = gray[:, ::-1], ab[:, ::-1], L[:, ::-1], ids[:, ::-1]
                out.append(PanelSample(np.ascontiguousarray(gray), np.ascontiguousarray(ab), np.ascontiguousarray(L),
                                       np.ascontiguousarray(ids), refs, None,
                                       f"characters/{Path(p['image']).name}[{b['character']}#{v}]"))
    if progress:
        progress(f"character panels: {len(out)} from {len(pages)} pages of {', '.join(episodes)}")
    return out


# --- synthetic chapters ---------------------------------------------------------------------------------------


def synthetic_available() -> bool:
    try:
        from manga_pipeline import synthetic  # noqa: F401
    except ImportError:
        return False
    return True


def _box_of(obj) -> tuple[int, int, int, int]:
    if hasattr(obj, "box"):
        return tuple(int(v) for v in obj.box)
    x0, y0, x1, y1 = obj.bounds  # a bare shapely polygon
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def synthetic_panel_samples(seeds: Sequence[int], *, size: int, pages: int = 4, page_size=(768, 1088),
                            min_side: int = 0, ref_seed_offset: int = 1_000_003, refs_per_design: int = 2,
                            scene_prob: float = 0.3, progress=None) -> list[PanelSample]:
    """Every panel of the synthetic chapters ``seeds`` at working resolution, with per-character regions and
    references drawn from other renders of the same characters."""
    from manga_pipeline.synthetic import generate_chapter, render_reference

    out: list[PanelSample] = []
    for ci, seed in enumerate(seeds):
        rng = np.random.default_rng(seed + 17)
        chapter = generate_chapter(pages, seed=int(seed), size=tuple(page_size))
        designs = {d.name: d for d in chapter.cast}
        ref_cache: dict[str, list[ReferenceFeatures]] = {}
        for name, design in designs.items():
            ref_cache[name] = [
                extract_reference(render_reference(design, seed=int(seed) * 7 + ref_seed_offset + j))
                for j in range(refs_per_design)
            ]
        for pi, page in enumerate(chapter.pages):
            color = np.asarray(page.color)
            bw = np.asarray(page.bw)
            H, W = bw.shape
            chars = []
            for ch in page.characters:
                x0, y0, x1, y1 = _box_of(ch)
                m = np.zeros((H, W), bool)
                if getattr(ch, "mask", None) is not None:
                    m[y0:y1, x0:x1] = np.asarray(ch.mask, bool)[: y1 - y0, : x1 - x0]
                else:
                    m[y0:y1, x0:x1] = True
                chars.append((ch.identity, m))
            panels = list(page.panels)
            for k, panel in enumerate(panels):
                x0, y0, x1, y1 = _box_of(panel)
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
                if x1 - x0 < 16 or y1 - y0 < 16:
                    continue
                h, w = _training_shape(y1 - y0, x1 - x0, size, min_side)
                gray = _area(bw[y0:y1, x0:x1], (h, w))
                ab, L = _lab_targets(_area(np.ascontiguousarray(color[y0:y1, x0:x1]), (h, w)))
                ids = np.zeros((h, w), np.uint8)
                refs = []
                # bigger characters first so a small one overlapping a big one keeps its pixels
                visible = []
                for name, m in chars:
                    mm = _area(m[y0:y1, x0:x1].astype(np.float32), (h, w)) >= 0.5
                    if mm.sum() >= 12:
                        visible.append((int(mm.sum()), name, mm))
                for _, name, mm in sorted(visible, key=lambda t: -t[0]):
                    if len(refs) >= 254:
                        break
                    refs.append(ref_cache[name][int(rng.integers(len(ref_cache[name])))] if name in ref_cache
                                else None)
                    ids[mm] = len(refs)
                scene = None
                if rng.random() < scene_prob and len(panels) > 1:
                    other = panels[(k + 1 + int(rng.integers(len(panels) - 1))) % len(panels)]
                    ox0, oy0, ox1, oy1 = _box_of(other)
                    crop = np.ascontiguousarray(color[max(0, oy0):oy1, max(0, ox0):ox1])
                    if crop.size:
                        scene = extract_reference(crop, remove_background=False, seed=k)
                out.append(PanelSample(gray, ab, L, ids, refs, scene, f"synthetic/{seed}/p{pi}/panel{k}"))
        if progress:
            progress(f"synthetic chapter {ci + 1}/{len(seeds)}: {len(out)} panels")
    return out


def synthetic_val_samples(*, size: int, pages: int = 4, seeds: Sequence[int] = SYNTH_VAL_SEEDS) -> list[PanelSample]:
    """Panels of the fixed validation chapters, every character with a reference, no scene reference."""
    return synthetic_panel_samples(seeds, size=size, pages=pages, scene_prob=0.0, refs_per_design=1)


# --- batches --------------------------------------------------------------------------------------------------


def sample_hints(ab: np.ndarray, rng: np.random.Generator, max_points: int = 8) -> list:
    """Random hint points (x, y, a*, b*) taken from the truth; none half of the time."""
    if rng.random() < 0.5:
        return []
    h, w = ab.shape[:2]
    n = int(rng.integers(1, max_points + 1))
    pts = []
    for _ in range(n):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        a, b = ab[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 2).astype(np.float32).mean(0)
        pts.append((x, y, float(a), float(b)))
    return pts


def training_item(s: PanelSample, crop: int, rng: np.random.Generator, *, ref_dropout: float = 0.15,
                  table_dropout: float = 0.0, hints: bool = True) -> tuple[NetInputs, np.ndarray]:
    """A random ``crop`` x ``crop`` window (flipped half of the time) -> (inputs, target a*b* float32 (2, c, c)).

    table_dropout: chance that a kept reference loses its lightness table (a reference without one gives no
    prior; the network learns to colour such a region from the rest of the reference)."""
    h, w = s.gray.shape
    y0 = int(rng.integers(0, h - crop + 1))
    x0 = int(rng.integers(0, w - crop + 1))
    sl = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    gray, ab, ids = s.gray[sl], s.ab[sl].astype(np.float32), s.region_ids[sl].astype(np.int64)
    if rng.random() < 0.5:
        gray, ab, ids = gray[:, ::-1], ab[:, ::-1], ids[:, ::-1]
    refs = [r if rng.random() >= ref_dropout else None for r in s.refs]
    scene = s.scene if rng.random() >= ref_dropout else None
    if table_dropout > 0:
        refs = [replace(r, l_table=None) if r is not None and rng.random() < table_dropout else r for r in refs]
        if scene is not None and rng.random() < table_dropout:
            scene = replace(scene, l_table=None)
    pts = sample_hints(ab, rng) if hints else []
    inp = build_inputs_from_ids(np.ascontiguousarray(gray), np.ascontiguousarray(ids), refs, scene, pts)
    return inp, np.ascontiguousarray(ab.transpose(2, 0, 1))


# --- toy panels (always available: tests, and a smoke source when neither real nor synthetic data exists) -------


def _toy_design(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Colours of a toy character: skin, hair, clothes, accent (RGB)."""
    def hue_rgb(sat: float, val: float) -> tuple[int, int, int]:
        hsv = np.array([[[rng.uniform(0, 180), sat * 255, val * 255]]], np.uint8)
        return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    return [(244, 208, 180), hue_rgb(rng.uniform(0.5, 1), rng.uniform(0.3, 0.9)),
            hue_rgb(rng.uniform(0.5, 1), rng.uniform(0.4, 1.0)), hue_rgb(rng.uniform(0.6, 1), rng.uniform(0.5, 1))]


def draw_toy_character(rgb: np.ndarray, design, cx: float, cy: float, scale: float) -> np.ndarray:
    """Draw a toy character (body, arms, head, hair) with black outlines; returns its bool mask."""
    skin, hair, clothes, accent = design
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    s = scale
    shapes = [  # (kind, centre offset, axes, colour)
        ("ellipse", (0, 0.55), (0.32, 0.6), clothes),
        ("ellipse", (0, 0.45), (0.12, 0.1), accent),
        ("ellipse", (0, -0.35), (0.3, 0.32), skin),
        ("ellipse", (0, -0.55), (0.34, 0.18), hair),
    ]
    for kind, (ox, oy), (ax, ay), col in shapes:
        c = (int(cx + ox * s), int(cy + oy * s))
        axes = (max(1, int(ax * s)), max(1, int(ay * s)))
        cv2.ellipse(rgb, c, axes, 0, 0, 360, col, -1, cv2.LINE_AA)
        cv2.ellipse(rgb, c, axes, 0, 0, 360, (20, 20, 20), max(1, int(s * 0.02)), cv2.LINE_AA)
        cv2.ellipse(mask, c, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def toy_reference(design, seed: int, size: int = 128) -> np.ndarray:
    """A toy character alone on white (another pose/scale for every seed)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, np.uint8)
    draw_toy_character(img, design, size / 2 + rng.uniform(-8, 8), size * 0.45, size * rng.uniform(0.5, 0.6))
    return img


def toy_panel_samples(n: int, *, size: int, seed: int, min_side: int = 0) -> list[PanelSample]:
    """``n`` toy panels: a light background and one or two characters with their own references."""
    rng = np.random.default_rng(seed)
    cast = [_toy_design(rng) for _ in range(6)]
    out = []
    for i in range(n):
        h = max(min_side, int(size * rng.uniform(0.6, 1.0)))
        w = size
        bg = tuple(int(v) for v in rng.integers(170, 256, 3))
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[:] = bg
        ids = np.zeros((h, w), np.uint8)
        refs = []
        for j in range(int(rng.integers(1, 3))):
            who = int(rng.integers(len(cast)))
            m = draw_toy_character(rgb, cast[who], w * (0.3 + 0.4 * j) + rng.uniform(-5, 5),
                                   h * rng.uniform(0.4, 0.6), h * rng.uniform(0.35, 0.5))
            refs.append(extract_reference(toy_reference(cast[who], seed=int(rng.integers(1 << 30)))))
            ids[m] = len(refs)
        gray = rgb_to_gray(rgb)
        ab, L = _lab_targets(rgb)
        out.append(PanelSample(gray, ab, L, ids, refs, None, f"toy/{seed}/{i}"))
    return out
