"""Score a detector against pages in the shared annotation format (``../shared/data/annotations/*.json``).

Per class, at IoU 0.5 with greedy one-to-one matching (highest IoU first):
- panels: precision, recall, F1 of the polygons' bounding boxes against the annotated boxes; mean IoU of the
  matched pairs;
- characters: the same against the annotated ``bodies`` (also at IoU 0.3, since body extents are loose);
- texts: the same against the annotated text boxes, plus the coverage figures of the classical benchmark
  (an annotated text box is found when at least half of it is covered by detected text; a detection is right
  when at least 15% of it lies on annotated text): what matters for keeping lettering paper-white.
Plus seconds per page for the whole detector. A class a dataset does not annotate (e.g. bodies in OpenMantra)
reports ``gt = 0`` and no figures (NaN → null in JSON).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from manga_pipeline.records import box_iou

FAKE_ID = "0" * 64


def match(pred: list, gt: list, thr: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU (highest first); pairs ``(pred i, gt j, iou)`` with IoU >= thr."""
    pairs = sorted(
        ((box_iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gt)), reverse=True
    )
    used_p, used_g, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < thr:
            break
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        out.append((i, j, iou))
    return out


def coverage(box, mask: np.ndarray) -> float:
    x0, y0, x1, y1 = box
    sub = mask[y0:y1, x0:x1]
    return float(sub.mean()) if sub.size else 0.0


def load_gray(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


def new_counts() -> dict:
    return dict(p_tp=0, p_pred=0, p_gt=0, iou_sum=0.0, t_found=0, t_gt=0, t_pred=0, t_ok=0, t_tp=0,
                b_tp5=0, b_tp3=0, b_pred=0, b_gt=0, b_pages=0, t_pages=0, secs=0.0, pages=0)


def score_page(c: dict, gray: np.ndarray, det, gt_panels, gt_texts, gt_bodies, *, has_panels: bool = True,
               has_texts: bool = True, has_bodies: bool = True):
    """Detect on one page with ``det`` and add its matches to the counts ``c``; returns the detections.

    ``gt_texts``: ``[(box, mask or None)]`` (a mask of the box's shape restricts the region to its pixels).
    ``has_panels`` / ``has_texts`` / ``has_bodies``: whether the annotation covers that class at all (a set
    that never annotates a class is not scored on it).
    """
    h, w = gray.shape
    t0 = time.perf_counter()
    dets = det.detect(FAKE_ID, gray)
    c["secs"] += time.perf_counter() - t0
    c["pages"] += 1

    if has_panels:
        pred = [p.box for p in dets.panels_in_order()]
        m = match(pred, gt_panels, 0.5)
        c["p_tp"] += len(m)
        c["p_pred"] += len(pred)
        c["p_gt"] += len(gt_panels)
        c["iou_sum"] += sum(iou for _, _, iou in m)

    if has_texts:
        c["t_pages"] += 1
        cover = np.zeros((h, w), bool)
        for t in dets.texts:
            x0, y0, x1, y1 = t.box
            cover[y0:y1, x0:x1] |= t.mask if t.mask is not None else True
        gt_mask = np.zeros((h, w), bool)
        for (x0, y0, x1, y1), mask in gt_texts:
            gt_mask[y0:y1, x0:x1] |= mask if mask is not None else True
        c["t_gt"] += len(gt_texts)
        for (x0, y0, x1, y1), mask in gt_texts:
            sub = cover[y0:y1, x0:x1]
            vals = sub[mask] if mask is not None else sub
            c["t_found"] += bool(vals.size and float(vals.mean()) >= 0.5)
        c["t_pred"] += len(dets.texts)
        c["t_ok"] += sum(coverage(t.box, gt_mask) >= 0.15 for t in dets.texts)
        c["t_tp"] += len(match([t.box for t in dets.texts], [b for b, _ in gt_texts], 0.5))

    if has_bodies:
        c["b_pages"] += 1
        chars = [ch.box for ch in dets.characters]
        c["b_gt"] += len(gt_bodies)
        c["b_pred"] += len(chars)
        c["b_tp5"] += len(match(chars, gt_bodies, 0.5))
        c["b_tp3"] += len(match(chars, gt_bodies, 0.3))
    return dets


def _div(a, b):
    return a / b if b else float("nan")


def _prf(tp, n_pred, n_gt) -> dict:
    p, r = _div(tp, n_pred), _div(tp, n_gt)
    f1 = 2 * p * r / (p + r) if tp else (0.0 if n_gt or n_pred else float("nan"))
    return {"precision": p, "recall": r, "f1": f1}


def summarise(c: dict) -> dict:
    """Per-class figures from the counts: ``{"pages", "seconds_per_page", "panels": {...}, ...}``."""
    out = {"pages": c["pages"], "seconds_per_page": _div(c["secs"], c["pages"])}
    if c["p_gt"]:
        out["panels"] = {**_prf(c["p_tp"], c["p_pred"], c["p_gt"]), "mean_iou": _div(c["iou_sum"], c["p_tp"]),
                         "gt": c["p_gt"], "pred": c["p_pred"]}
    else:
        out["panels"] = {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"),
                         "mean_iou": float("nan"), "gt": 0, "pred": c["p_pred"], "note": "no annotated panels"}
    if c["b_pages"] and c["b_gt"]:
        out["characters"] = {**_prf(c["b_tp5"], c["b_pred"], c["b_gt"]),
                             "precision@0.3": _div(c["b_tp3"], c["b_pred"]),
                             "recall@0.3": _div(c["b_tp3"], c["b_gt"]), "gt": c["b_gt"], "pred": c["b_pred"]}
    else:
        out["characters"] = {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"),
                             "gt": 0, "pred": c["b_pred"], "note": "no annotated bodies"}
    if c["t_pages"] and c["t_gt"]:
        out["texts"] = {**_prf(c["t_tp"], c["t_pred"], c["t_gt"]),
                        "coverage_recall": _div(c["t_found"], c["t_gt"]),
                        "coverage_precision": _div(c["t_ok"], c["t_pred"]), "gt": c["t_gt"], "pred": c["t_pred"]}
    else:
        out["texts"] = {"precision": float("nan"), "recall": float("nan"), "f1": float("nan"),
                        "gt": 0, "pred": c["t_pred"], "note": "no annotated texts"}
    return out


def jsonable(obj):
    """NaN → None, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def read_annotations(path: Path) -> list[dict]:
    """Pages of an annotation file, each with ``path`` (absolute image path), ``index`` and ``annotated``
    (the classes this file annotates: those with a box on at least one of its pages)."""
    path = Path(path)
    try:
        ann = json.loads(path.read_text(encoding="utf-8"))
        pages = list(ann["pages"])
        annotated = {k for k in ("panels", "texts", "bodies") if any(p.get(k) for p in pages)}
        return [{**p, "path": str((path.parent / p["image"]).resolve()), "index": i, "annotated": annotated}
                for i, p in enumerate(pages)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an annotation file (need {{'pages': [{{'image': ...}}]}}): {exc}") from exc


def select_split(name: str, pages: list[dict], split: str) -> list[dict]:
    """``split``: "all", "train" or "val" (the fixed split of ``detectors.yolo_data.is_validation``)."""
    if split == "all":
        return pages
    from .yolo_data import is_validation

    return [p for p in pages if is_validation(name, p["index"], p) == (split == "val")]


def evaluate_pages(pages: list[dict], det, *, on_page=None) -> dict:
    """Score ``det`` on annotated pages (colour images are read as gray). ``on_page(page, gray, dets)``."""
    c = new_counts()
    for page in pages:
        gray = load_gray(Path(page["path"]))
        annotated = page.get("annotated", {"panels", "texts", "bodies"})
        dets = score_page(c, gray, det, [tuple(b) for b in page.get("panels", [])],
                          [(tuple(t["box"]), None) for t in page.get("texts", [])],
                          [tuple(b["box"]) for b in page.get("bodies", [])],
                          has_panels="panels" in annotated, has_texts="texts" in annotated,
                          has_bodies="bodies" in annotated)
        if on_page is not None:
            on_page(page, gray, dets)
    return summarise(c)


def evaluate_file(path: Path, det, *, split: str = "all", limit: int | None = None, on_page=None) -> dict:
    pages = select_split(Path(path).name, read_annotations(path), split)
    if limit:
        pages = pages[:limit]
    return evaluate_pages(pages, det, on_page=on_page)


def evaluate_synthetic(n_pages: int, det, seed: int = 100) -> dict:
    """Generated pages with exact ground truth; text = balloon interiors (their masks)."""
    from manga_pipeline.synthetic import generate_chapter

    c = new_counts()
    chapter = generate_chapter(n_pages, seed=seed, size=(1400, 2000))
    for page in chapter.pages:
        score_page(c, page.bw, det, [p.box for p in page.panels], [(b.box, b.mask) for b in page.balloons],
                   [ch.box for ch in page.characters])
    return summarise(c)
