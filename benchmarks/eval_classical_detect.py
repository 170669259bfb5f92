"""Measure the classical detectors on the real annotated pages in ../shared/data/annotations.

Prints, per dataset: panel precision / recall / F1 at IoU 0.5 (box IoU of the polygon bounds against the
annotated boxes) and the mean IoU of matched panels; text recall (an annotated text box counts as found when
at least half of it is covered by detected text regions) and text precision (a detection counts when it
overlaps annotated text); character precision / recall against the annotated bodies at IoU 0.5 (and 0.3);
seconds per page for the whole detector.

    python benchmarks/eval_classical_detect.py [--data ../shared/data] [--limit N] [--synthetic N]
                                               [--viz DIR] [--json]

``--viz DIR`` writes overlays (red: annotated panels, magenta: detected; green: annotated text, cyan: detected;
blue: annotated bodies, yellow: detected) to DIR, which must lie outside the repository.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from detectors import ClassicalDetector, DetectorConfig
from manga_pipeline.records import box_iou

DATASETS = ("openmantra_dev.json", "manga109_dev.json", "comics_color_dev.json")
FAKE_ID = "0" * 64


def match(pred: list, gt: list, thr: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU (highest first); pairs with IoU >= thr."""
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
        raise FileNotFoundError(path)
    return img


def new_counts() -> dict:
    return dict(p_tp=0, p_pred=0, p_gt=0, iou_sum=0.0, t_found=0, t_gt=0, t_pred=0, t_ok=0,
                b_tp5=0, b_tp3=0, b_pred=0, b_gt=0, secs=0.0, pages=0)


def score_page(c: dict, gray: np.ndarray, det: ClassicalDetector, gt_panels, gt_texts, gt_bodies):
    """Detect on one page and add its matches to the counts ``c``.

    ``gt_texts``: ``[(box, mask or None)]`` (a mask of the box's shape restricts the region to its pixels).
    """
    h, w = gray.shape
    t0 = time.perf_counter()
    dets = det.detect(FAKE_ID, gray)
    c["secs"] += time.perf_counter() - t0
    c["pages"] += 1

    pred = [p.box for p in dets.panels_in_order()]
    m = match(pred, gt_panels, 0.5)
    c["p_tp"] += len(m)
    c["p_pred"] += len(pred)
    c["p_gt"] += len(gt_panels)
    c["iou_sum"] += sum(iou for _, _, iou in m)

    if gt_texts:
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
            c["t_found"] += float((sub[mask] if mask is not None else sub).mean()) >= 0.5
        c["t_pred"] += len(dets.texts)
        c["t_ok"] += sum(coverage(t.box, gt_mask) >= 0.15 for t in dets.texts)

    if gt_bodies:
        chars = [ch.box for ch in dets.characters]
        c["b_gt"] += len(gt_bodies)
        c["b_pred"] += len(chars)
        c["b_tp5"] += len(match(chars, gt_bodies, 0.5))
        c["b_tp3"] += len(match(chars, gt_bodies, 0.3))
    return dets


def evaluate(data: Path, name: str, det: ClassicalDetector, limit: int | None, viz: Path | None) -> dict:
    """One annotation file of ``data/annotations`` (colour pages are converted to gray)."""
    ann = json.loads((data / "annotations" / name).read_text())
    pages = ann["pages"][:limit] if limit else ann["pages"]
    c = new_counts()
    for page in pages:
        path = (data / "annotations" / page["image"]).resolve()
        gray = load_gray(path)
        dets = score_page(c, gray, det, [tuple(b) for b in page["panels"]],
                          [(tuple(t["box"]), None) for t in page["texts"]],
                          [tuple(b["box"]) for b in page.get("bodies", [])])
        if viz is not None:
            draw(viz, name, path, gray, page, dets)
    return summarise(c)


def evaluate_synthetic(n_pages: int, det: ClassicalDetector, seed: int = 100) -> dict:
    """Generated pages with exact ground truth; text = balloon interiors (their masks)."""
    from manga_pipeline.synthetic import generate_chapter

    c = new_counts()
    chapter = generate_chapter(n_pages, seed=seed, size=(1400, 2000))
    for page in chapter.pages:
        score_page(c, page.bw, det, [p.box for p in page.panels], [(b.box, b.mask) for b in page.balloons],
                   [ch.box for ch in page.characters])
    return summarise(c)


def summarise(c: dict) -> dict:
    def div(a, b):
        return a / b if b else float("nan")

    p, r = div(c["p_tp"], c["p_pred"]), div(c["p_tp"], c["p_gt"])
    return {
        "pages": c["pages"],
        "panel_precision": p,
        "panel_recall": r,
        "panel_f1": div(2 * p * r, p + r) if c["p_tp"] else 0.0,
        "panel_mean_iou": div(c["iou_sum"], c["p_tp"]),
        "panels_gt": c["p_gt"],
        "panels_pred": c["p_pred"],
        "text_recall": div(c["t_found"], c["t_gt"]),
        "text_precision": div(c["t_ok"], c["t_pred"]),
        "texts_gt": c["t_gt"],
        "char_precision@0.5": div(c["b_tp5"], c["b_pred"]),
        "char_recall@0.5": div(c["b_tp5"], c["b_gt"]),
        "char_precision@0.3": div(c["b_tp3"], c["b_pred"]),
        "char_recall@0.3": div(c["b_tp3"], c["b_gt"]),
        "bodies_gt": c["b_gt"],
        "seconds_per_page": div(c["secs"], c["pages"]),
    }


def draw(viz: Path, name: str, path: Path, gray, page, dets) -> None:
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    th = max(2, gray.shape[0] // 400)
    for b in page["panels"]:
        cv2.rectangle(img, tuple(b[:2]), tuple(b[2:]), (0, 0, 255), th)
    for t in page["texts"]:
        cv2.rectangle(img, tuple(t["box"][:2]), tuple(t["box"][2:]), (0, 160, 0), th)
    for b in page.get("bodies", []):
        cv2.rectangle(img, tuple(b["box"][:2]), tuple(b["box"][2:]), (255, 0, 0), th)
    for p in dets.panels:
        pts = np.int32(np.asarray(p.polygon.exterior.coords))
        cv2.polylines(img, [pts], True, (255, 0, 255), th)
        cx, cy = p.polygon.representative_point().coords[0]
        cv2.putText(img, str(p.order), (int(cx), int(cy)), cv2.FONT_HERSHEY_SIMPLEX, th, (255, 0, 255), th * 2)
    for t in dets.texts:
        x0, y0, x1, y1 = t.box
        if t.mask is not None:
            sub = img[y0:y1, x0:x1]
            sub[t.mask] = (0.6 * sub[t.mask] + 0.4 * np.array([255, 255, 0])).astype(np.uint8)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 0), max(1, th // 2))
    for ch in dets.characters:
        x0, y0, x1, y1 = ch.box
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 220, 255), th)
    s = 900 / img.shape[0]
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    out = viz / f"{Path(name).stem}__{path.parent.name}__{path.stem}.png"
    cv2.imwrite(str(out), img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--limit", type=int, default=None, help="first N pages of each dataset")
    ap.add_argument("--viz", type=Path, default=None, help="write overlays here (outside the repository)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="also measure on N generated pages (manga_pipeline.synthetic, 1400x2000)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    data = args.data.resolve()
    if not (data / "annotations").is_dir():
        print(f"no annotations under {data}; pass --data", file=sys.stderr)
        return 2
    if args.viz is not None:
        repo = Path(__file__).resolve().parents[1]
        if args.viz.resolve().is_relative_to(repo):
            print("--viz must lie outside the repository (the pages are not ours to commit)", file=sys.stderr)
            return 2
        args.viz.mkdir(parents=True, exist_ok=True)
    det = ClassicalDetector(DetectorConfig())
    results = {n: evaluate(data, n, det, args.limit, args.viz) for n in args.datasets}
    if args.synthetic:
        results[f"synthetic ({args.synthetic} p)"] = evaluate_synthetic(args.synthetic, det)
    if args.json:
        print(json.dumps({"detector": det.name, "results": results}, indent=1))
        return 0
    print(f"detector: {det.name}")
    cols = [("pages", "pages", "{:d}"), ("panel P", "panel_precision", "{:.3f}"),
            ("panel R", "panel_recall", "{:.3f}"), ("panel F1", "panel_f1", "{:.3f}"),
            ("mIoU", "panel_mean_iou", "{:.3f}"), ("text R", "text_recall", "{:.3f}"),
            ("text P", "text_precision", "{:.3f}"), ("char P.5", "char_precision@0.5", "{:.3f}"),
            ("char R.5", "char_recall@0.5", "{:.3f}"), ("char P.3", "char_precision@0.3", "{:.3f}"),
            ("char R.3", "char_recall@0.3", "{:.3f}"), ("s/page", "seconds_per_page", "{:.3f}")]
    print(f"{'dataset':24s}" + "".join(f"{h:>9s}" for h, _, _ in cols))
    for n, r in results.items():
        print(f"{n:24s}" + "".join(f"{f.format(r[k]):>9s}" for _, k, f in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
