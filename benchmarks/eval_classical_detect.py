"""Measure the classical detectors on the real annotated pages in ../shared/data/annotations.

Prints, per dataset: panel precision / recall / F1 at IoU 0.5 (box IoU of the polygon bounds against the
annotated boxes) and the mean IoU of matched panels; text recall (an annotated text box counts as found when
at least half of it is covered by detected text regions) and text precision (a detection counts when it
overlaps annotated text); character precision / recall against the annotated bodies at IoU 0.5 (and 0.3);
seconds per page for the whole detector. The scoring lives in ``detectors/evaluate.py`` (also behind
``manga-color eval detect``).

    python benchmarks/eval_classical_detect.py [--data ../shared/data] [--limit N] [--synthetic N]
                                               [--viz DIR] [--json] [--backend classical|yolo] [--split all]

``--viz DIR`` writes overlays (red: annotated panels, magenta: detected; green: annotated text, cyan: detected;
blue: annotated bodies, yellow: detected) to DIR, which must lie outside the repository.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from detectors.evaluate import evaluate_file, evaluate_synthetic, jsonable

DATASETS = ("openmantra_dev.json", "manga109_dev.json", "comics_color_dev.json")


def flat(r: dict) -> dict:
    """The per-class summary as the flat row this script prints."""
    nan = float("nan")
    p, t, c = r["panels"], r["texts"], r["characters"]
    return {
        "pages": r["pages"], "panel_precision": p["precision"], "panel_recall": p["recall"], "panel_f1": p["f1"],
        "panel_mean_iou": p["mean_iou"], "text_recall": t.get("coverage_recall", nan),
        "text_precision": t.get("coverage_precision", nan), "char_precision@0.5": c["precision"],
        "char_recall@0.5": c["recall"], "char_precision@0.3": c.get("precision@0.3", nan),
        "char_recall@0.3": c.get("recall@0.3", nan), "seconds_per_page": r["seconds_per_page"],
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
    ap.add_argument("--backend", default="classical", choices=["classical", "yolo", "auto"])
    ap.add_argument("--split", default="all", choices=["all", "train", "val"])
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
    from detectors.yolo import build_detector

    det = build_detector(args.backend)
    results = {}
    for n in args.datasets:
        def on_page(page, gray, dets, n=n):
            if args.viz is not None:
                draw(args.viz, n, Path(page["path"]), gray, page, dets)

        results[n] = evaluate_file(data / "annotations" / n, det, split=args.split, limit=args.limit,
                                   on_page=on_page)
    if args.synthetic:
        results[f"synthetic ({args.synthetic} p)"] = evaluate_synthetic(args.synthetic, det)
    if args.json:
        print(json.dumps(jsonable({"detector": det.name, "split": args.split, "results": results}), indent=1))
        return 0
    print(f"detector: {det.name} (split: {args.split})")
    cols = [("pages", "pages", "{:d}"), ("panel P", "panel_precision", "{:.3f}"),
            ("panel R", "panel_recall", "{:.3f}"), ("panel F1", "panel_f1", "{:.3f}"),
            ("mIoU", "panel_mean_iou", "{:.3f}"), ("text R", "text_recall", "{:.3f}"),
            ("text P", "text_precision", "{:.3f}"), ("char P.5", "char_precision@0.5", "{:.3f}"),
            ("char R.5", "char_recall@0.5", "{:.3f}"), ("char P.3", "char_precision@0.3", "{:.3f}"),
            ("char R.3", "char_recall@0.3", "{:.3f}"), ("s/page", "seconds_per_page", "{:.3f}")]
    print(f"{'dataset':24s}" + "".join(f"{h:>9s}" for h, _, _ in cols))
    for n, r in results.items():
        row = flat(r)
        print(f"{n:24s}" + "".join(f"{f.format(row[k]):>9s}" for _, k, f in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
