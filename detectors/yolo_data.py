"""Build the YOLO training set of the learned detector: real annotated pages + synthetic pages.

Classes (``CLASSES``): 0 panel, 1 body (a character's figure), 2 face, 3 text (balloon or lettering).
Sources and how each is used:

- synthetic pages (``manga_pipeline.synthetic``): exact panels, bodies, faces, balloons and lettering;
- ``openmantra_dev.json``: real B/W manga with panels and texts (no bodies: their figures are unlabelled, a
  known source of label noise for the body class);
- ``comics_color_dev.json``: colour comic pages with panels, turned B/W (gray and an inked/halftoned variant);
- ``peppercarrot_dev_characters.json``: colour pages with every character's box, turned B/W (bodies only);
- ``manga109_dev.json``: the only real B/W manga bodies; validation only.

The validation split (:func:`is_validation`) is fixed by page index / title / episode so that training never
sees it. Images are written as gray PNGs with the long side ``max_side``; labels in YOLO format
(``cls cx cy w h`` normalised). Nothing here is written inside the repository: ``out`` is a cache folder.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("panel", "body", "face", "text")
PANEL, BODY, FACE, TEXT = range(4)

REAL_SETS = ("openmantra_dev.json", "comics_color_dev.json", "peppercarrot_dev_characters.json", "manga109_dev.json")


def is_validation(dataset: str, index: int, page: dict) -> bool:
    """The fixed held-out split of the shared annotations (never used for training)."""
    name = Path(dataset).name
    if name.startswith("manga109"):
        return True  # the only real B/W bodies: kept for measurement
    if name.startswith("openmantra"):
        return index % 5 == 4  # 24 of 124 pages, spread over the 3 titles
    if name.startswith("comics_color"):
        return index % 4 == 3  # 4 of 19 pages
    if name.startswith("peppercarrot"):
        return "episode-05" in page["image"]  # a whole episode held out (4 pages, 30 bodies)
    return False


def load_pages(data: Path, dataset: str, split: str | None = None) -> list[dict]:
    """Pages of ``data/annotations/dataset`` with an absolute ``path``; ``split``: None, "train" or "val"."""
    ann = json.loads((Path(data) / "annotations" / dataset).read_text())
    out = []
    for i, page in enumerate(ann["pages"]):
        val = is_validation(dataset, i, page)
        if split is not None and val != (split == "val"):
            continue
        out.append({**page, "path": str((Path(data) / "annotations" / page["image"]).resolve()), "index": i})
    return out


@dataclass
class Sample:
    """A gray page (``uint8 (H, W)``) and its labelled boxes ``[(cls, (x0, y0, x1, y1))]`` in its pixels."""

    name: str
    gray: np.ndarray
    boxes: list


def page_labels(page: dict) -> list:
    boxes = [(PANEL, b) for b in page.get("panels", [])]
    boxes += [(BODY, b["box"]) for b in page.get("bodies", [])]
    boxes += [(FACE, b["box"] if isinstance(b, dict) else b) for b in page.get("faces", [])]
    boxes += [(TEXT, t["box"]) for t in page.get("texts", [])]
    return boxes


def to_bw_variants(img: np.ndarray, colour: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """B/W versions of a page: gray, plus for colour pages an inked variant (ink kept, flats → halftone dots)."""
    gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    out = [gray]
    if colour:
        # line art stays black; mid tones become a dot screen, as a manga printer would render them
        h, w = gray.shape
        period = int(rng.integers(4, 8))
        yy, xx = np.mgrid[0:h, 0:w]
        screen = ((np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period)) + 1) * 127.5
        ink = gray < 70
        tone = np.where(gray.astype(np.float32) > screen, 255, 0).astype(np.uint8)
        tone[gray > 225] = 255
        tone[ink] = 0
        out.append(tone)
    return out


def resize_long(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = gray.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return gray, 1.0
    return cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA), s


def write_sample(out: Path, split: str, sample: Sample, max_side: int) -> None:
    img, s = resize_long(sample.gray, max_side)
    h, w = img.shape
    lines = []
    for cls, (x0, y0, x1, y1) in sample.boxes:
        x0, x1 = np.clip([x0 * s, x1 * s], 0, w)
        y0, y1 = np.clip([y0 * s, y1 * s], 0, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        lines.append(f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "images" / split / f"{sample.name}.png"), img)
    (out / "labels" / split / f"{sample.name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def synthetic_samples(n: int, seed: int, size=(704, 1000)):
    """``n`` synthetic pages in chapters of 8 (a new cast per chapter); seeds from ``seed`` upward."""
    from manga_pipeline.synthetic import generate_page, make_cast

    rng = np.random.default_rng(seed)
    for i in range(n):
        chapter, idx = divmod(i, 8)
        if idx == 0:
            cast = make_cast(3, seed=seed + chapter)
            # vary the page size so the model sees several scales of line art and lettering
            w = int(rng.integers(size[0] * 3 // 4, size[0] * 5 // 4))
            sz = (w, int(w * rng.uniform(1.3, 1.5)))
        page = generate_page(idx, seed=seed + chapter, size=sz, cast=cast)
        boxes = [(PANEL, p.box) for p in page.panels]
        boxes += [(BODY, c.box) for c in page.characters]
        boxes += [(FACE, f.box) for f in page.faces]
        boxes += [(TEXT, t.box) for t in (*page.balloons, *page.texts)]
        yield Sample(f"syn_{seed}_{i:05d}", page.bw, boxes)


def real_samples(data: Path, split: str, seed: int = 0, sets: tuple[str, ...] = REAL_SETS):
    rng = np.random.default_rng(seed)
    for dataset in sets:
        colour = not dataset.startswith(("openmantra", "manga109"))
        for page in load_pages(data, dataset, split):
            img = cv2.imread(page["path"], cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(page["path"])
            stem = re.sub(r"[^A-Za-z0-9_]+", "_", Path(dataset).stem + "_" + str(page["index"]))
            variants = to_bw_variants(img, colour, rng) if split == "train" else to_bw_variants(img, False, rng)
            for k, gray in enumerate(variants):
                yield Sample(f"{stem}_v{k}", gray, page_labels(page))


def composite_samples(data: Path, per_page: int, seed: int, log=None):
    """``per_page`` composites (``detectors.yolo_composite``) of every OpenMantra training page."""
    from .yolo_composite import composite_page, load_art

    art = load_art(data)
    if not art:
        raise FileNotFoundError(f"no character art found under {data} for composite pages")
    if log:
        log(f"composite pages: {len(art)} pieces of character art cut out of their paper")
    rng = np.random.default_rng(seed + 7)
    for page in load_pages(data, "openmantra_dev.json", "train"):
        gray = cv2.imread(page["path"], cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise FileNotFoundError(page["path"])
        texts = [t["box"] for t in page.get("texts", [])]
        for k in range(per_page):
            yield composite_page(f"comp_openmantra_{page['index']}_{k}", gray, page["panels"], texts, art, rng)


def build_dataset(out: Path, data: Path | None, *, n_synthetic: int = 400, max_side: int = 640, seed: int = 0,
                  real_repeat: int = 2, n_synthetic_val: int = 16, real_sets: tuple[str, ...] = REAL_SETS,
                  composites: int = 0, log=None) -> Path:
    """Write the dataset under ``out`` and return its ``data.yaml``.

    ``data`` None (or missing) builds a synthetic-only set. Real training pages of ``real_sets`` are written
    ``real_repeat`` times (distinct file names; ultralytics augments each copy differently) so they weigh as much
    as the synthetic pages. ``composites``: composite pages per OpenMantra training page (real layouts and
    lettering, cut-out character art with exact body boxes). The validation split always holds every real set.
    """
    out = Path(out)
    counts = {"train": 0, "val": 0}
    for s in synthetic_samples(n_synthetic, seed):
        write_sample(out, "train", s, max_side)
        counts["train"] += 1
    for s in synthetic_samples(n_synthetic_val, seed + 100_000):
        write_sample(out, "val", s, max_side)
        counts["val"] += 1
    if data is not None and (Path(data) / "annotations").is_dir():
        for split in ("train", "val"):
            for s in real_samples(Path(data), split, seed, real_sets if split == "train" else REAL_SETS):
                for r in range(real_repeat if split == "train" else 1):
                    write_sample(out, split, Sample(f"{s.name}_r{r}", s.gray, s.boxes), max_side)
                    counts[split] += 1
        if composites:
            for s in composite_samples(Path(data), composites, seed, log):
                write_sample(out, "train", s, max_side)
                counts["train"] += 1
    yaml = out / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    yaml.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    (out / "counts.json").write_text(json.dumps(counts))
    return yaml
