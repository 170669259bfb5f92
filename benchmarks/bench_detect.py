"""Compare the detectors (classical vs the trained YOLO one) on the shared annotations, per split, and time them.

    python benchmarks/bench_detect.py [--data ../shared/data] [--backends classical yolo] [--splits val train]
                                      [--json]

Prints per dataset, split and backend: panels P/R/F1 and mean IoU, characters (bodies) P/R/F1 at IoU 0.5,
texts P/R/F1 at IoU 0.5 and coverage recall, seconds per page; then the detection time of a 1400x2000
synthetic page (median of 5, after one warm-up) with the threads torch is allowed (``--threads``, default 2).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from detectors.evaluate import evaluate_file, jsonable

DATASETS = ("openmantra_dev.json", "manga109_dev.json", "comics_color_dev.json", "peppercarrot_dev_characters.json")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--backends", nargs="*", default=["classical", "yolo"])
    ap.add_argument("--splits", nargs="*", default=["val", "train"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from detectors.yolo import build_detector
    from manga_pipeline.synthetic import generate_page

    data = args.data.resolve()
    have_data = (data / "annotations").is_dir()
    if not have_data:
        print(f"no annotations under {data}: timing only", file=sys.stderr)
    page = generate_page(0, seed=11, size=(1400, 2000)).bw
    out = {}
    for backend in args.backends:
        det = build_detector(backend)
        det.detect("0" * 64, page)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            det.detect("0" * 64, page)
            times.append(time.perf_counter() - t0)
        res = {"detector": det.name, "seconds_1400x2000": statistics.median(times), "results": {}}
        if have_data:
            for n in args.datasets:
                for split in args.splits:
                    r = evaluate_file(data / "annotations" / n, det, split=split)
                    if r["pages"]:
                        res["results"][f"{Path(n).stem}/{split}"] = r
        out[backend] = res
    if args.json:
        print(json.dumps(jsonable(out), indent=1))
        return 0
    fmt = lambda v: "   -  " if v is None or v != v else f"{v:6.3f}"  # noqa: E731
    print(f"{'dataset/split':34s}{'backend':>10s} pages | panel P  R     F1    mIoU | body P  R     F1    | "
          f"text P  R     F1    covR  | s/page")
    for backend, res in out.items():
        for key, r in res["results"].items():
            p, c, t = r["panels"], r["characters"], r["texts"]
            print(f"{key:34s}{backend:>10s} {r['pages']:5d} | {fmt(p['precision'])}{fmt(p['recall'])}"
                  f"{fmt(p['f1'])}{fmt(p['mean_iou'])} | {fmt(c['precision'])}{fmt(c['recall'])}{fmt(c['f1'])} | "
                  f"{fmt(t['precision'])}{fmt(t['recall'])}{fmt(t['f1'])}{fmt(t.get('coverage_recall'))} | "
                  f"{r['seconds_per_page']:.3f}")
    for backend, res in out.items():
        print(f"{backend} ({res['detector']}): {res['seconds_1400x2000']:.3f} s per 1400x2000 page, "
              f"{args.threads} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
