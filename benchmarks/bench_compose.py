"""Speed (and, optionally, upsampling quality) of full-resolution compositing.

    python benchmarks/bench_compose.py                      # 1400x2000 page, 6 panels, one core
    python benchmarks/bench_compose.py --size 4000x6000     # a large scan
    python benchmarks/bench_compose.py --quality            # chroma error of the upsampling choices
    python benchmarks/bench_compose.py --quality --real ../shared/data/color/onepiece

Speed: a synthetic page (lines, screentone, a black fill, lettering) with 6 panels (one slanted, two
overlapping) whose chroma is at a working resolution of 384 px on the long side, a page pass at 512 px and
4 text regions; prints seconds per page (median and best of --repeat) and peak memory.

Quality: chroma is downsampled 2-8x from a known full-resolution chroma and upsampled back with each method;
prints mean |da*b*| on paper (non-ink) pixels and the share of pixels off by more than 10. Synthetic pages are
flat-coloured regions with ink outlines; --real DIR adds real colour pages, the page's L* turned into a B/W
guide by keeping only its dark, unsaturated pixels (the ink).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import Polygon

from layout.compose import compose_page
from layout.guided import guided_upsample
from manga_pipeline.colorspace import rgb_to_lab
from manga_pipeline.records import ColorizedPanel, Panel, TextRegion

PID = "0" * 64


def synthetic_page(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.full((h, w), 255, np.uint8)
    k = (h * w) / (1400 * 2000)
    for _ in range(int(400 * k) + 10):
        p = rng.integers(0, w, 2), rng.integers(0, h, 2)
        cv2.line(g, (int(p[0][0]), int(p[1][0])), (int(p[0][1]), int(p[1][1])), int(rng.integers(0, 60)),
                 int(rng.integers(1, 5)))
    for _ in range(int(30 * k) + 2):  # screentone patches
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        pw, ph = int(rng.integers(20, max(21, w // 5))), int(rng.integers(20, max(21, h // 5)))
        yy, xx = np.mgrid[y:min(h, y + ph), x:min(w, x + pw)]
        dots = ((xx % 5) < 2) & ((yy % 5) < 2)
        g[y:y + ph, x:x + pw][dots] = 40
    g[h // 10:h // 10 + h // 20, w // 2:w // 2 + w // 8] = 0
    return g


def synthetic_job(h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gray = synthetic_page(h, w, seed)
    m = max(2, w // 50)
    col = [m, w // 2 - m // 2, w // 2 + m // 2, w - m]
    row = [m, h // 3, h // 3 + m, 2 * h // 3, 2 * h // 3 + m, h - m]
    boxes = [(col[0], row[0], col[1], row[1]), (col[2], row[0], col[3], row[1]),
             (col[0], row[2], col[3], row[3]), (col[0], row[4], col[1], row[5]),
             (col[2], row[4], col[3], row[5])]
    panels = [Panel.from_box(b, i) for i, b in enumerate(boxes)]
    # a slanted panel overlapping two others, as an inset
    cx, cy = w // 2, h // 2
    panels.append(Panel(Polygon([(cx - w // 6, cy - h // 8), (cx + w // 5, cy - h // 10),
                                 (cx + w // 6, cy + h // 6), (cx - w // 5, cy + h // 7)]), 5))

    def chroma_for(box, long_side):
        bw, bh = box[2] - box[0], box[3] - box[1]
        s = long_side / max(bw, bh)
        ch = rng.normal(0, 40, (max(1, round(bh * s)), max(1, round(bw * s)), 2)).astype(np.float32)
        return cv2.GaussianBlur(ch, (0, 0), 4) * 5

    colorized = [ColorizedPanel(PID, p.order, p.box, chroma_for(p.box, 384)) for p in panels]
    page_pass = ColorizedPanel(PID, -1, (0, 0, w, h), chroma_for((0, 0, w, h), 512))
    texts = []
    for _ in range(4):
        x, y = int(rng.integers(0, w - w // 8)), int(rng.integers(0, h - h // 10))
        bw, bh = w // 10, h // 12
        yy, xx = np.mgrid[0:bh, 0:bw]
        oval = ((xx - bw / 2) / (bw / 2)) ** 2 + ((yy - bh / 2) / (bh / 2)) ** 2 <= 1
        texts.append(TextRegion((x, y, x + bw, y + bh), mask=oval))
    return gray, panels, colorized, page_pass, texts


def bench_speed(h: int, w: int, repeat: int) -> None:
    gray, panels, colorized, page_pass, texts = synthetic_job(h, w)
    compose_page(gray, panels, colorized, texts=texts, page_pass=page_pass)  # warm-up: gamut table, caches
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        compose_page(gray, panels, colorized, texts=texts, page_pass=page_pass)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    tracemalloc.start()  # one more run to measure memory: tracing slows numpy down, so not timed
    compose_page(gray, panels, colorized, texts=texts, page_pass=page_pass)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"compose_page {w}x{h}, {len(panels)} panels + page pass, {len(texts)} text regions, "
          f"{repeat} runs: median {statistics.median(times):.3f} s/page, best {min(times):.3f} s/page "
          f"(CPU time median {statistics.median(cpu):.3f} s; wall time suffers when other jobs share the core)")
    print(f"peak RSS {rss:.0f} MiB (whole process); peak numpy memory during compose {traced_peak / 2**20:.0f} MiB "
          f"(the result alone is {h * w * 11 / 2**20:.0f} MiB)")


def _flat_regions(rng, h=512, w=512):
    L = np.full((h, w), 100, np.float32)
    gt = np.zeros((h, w, 2), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(25):
        colour = rng.uniform(-50, 50, 2).astype(np.float32)
        centre = tuple(int(v) for v in rng.integers(0, w, 2))
        axes = tuple(int(v) for v in rng.integers(15, 90, 2))
        angle = float(rng.uniform(0, 180))
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, centre, axes, angle, 0, 360, 1, -1)
        m = m.astype(bool)
        gt[m] = colour
        kind = rng.choice(["white", "white", "gray", "dots"])
        if kind == "white":
            L[m] = 100
        elif kind == "gray":
            L[m] = rng.uniform(60, 90)
        else:
            period = int(rng.integers(4, 8))
            dots = ((xx % period) < period // 2) & ((yy % period) < period // 2)
            L[m] = np.where(dots[m], 10, 100)
        edge = np.zeros((h, w), np.uint8)
        cv2.ellipse(edge, centre, axes, angle, 0, 360, 1, int(rng.integers(1, 5)))
        L[edge.astype(bool)] = rng.uniform(0, 25)
    return L, gt, L >= 50


def _real_pages(folder: Path, limit: int = 8):
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        if max(rgb.shape[:2]) > 1600:
            rgb = cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        lab = rgb_to_lab(rgb)
        ink = (lab[..., 0] < 45) & (np.linalg.norm(lab[..., 1:], axis=2) < 20)
        yield np.where(ink, lab[..., 0], 100).astype(np.float32), np.ascontiguousarray(lab[..., 1:]), ~ink


def bench_quality(real: Path | None) -> None:
    methods = {
        "bilinear": dict(radius=0, snap=0),
        "snap s/2 (default)": dict(radius=0, snap=None),
        "snap s": dict(radius=0, snap="s"),
        "guided r8": dict(radius=8, snap=0),
        "guided r8 + snap s/2": dict(radius=8, snap=None),
    }
    sets = {"synthetic line art": [_flat_regions(np.random.default_rng(i)) for i in range(3)]}
    if real is not None:
        sets[f"real colour pages ({real.name})"] = list(_real_pages(real))
    for name, pages in sets.items():
        print(f"\n{name}: mean |da*b*| on paper / share of paper pixels off by > 10")
        print("  scale  " + "".join(f"{m:>22s}" for m in methods))
        for s in (2, 4, 8):
            cells = []
            for kw in methods.values():
                errs, bad = [], []
                for L, gt, paper in pages:
                    H, W = L.shape
                    low = cv2.resize(gt, (W // s, H // s), interpolation=cv2.INTER_AREA)
                    snap = s if kw["snap"] == "s" else kw["snap"]
                    out = guided_upsample(low, L, radius=kw["radius"], snap=snap)
                    e = np.linalg.norm(out - gt, axis=2)[paper]
                    errs.append(e.mean())
                    bad.append((e > 10).mean())
                cells.append(f"{np.mean(errs):6.2f} / {100 * np.mean(bad):5.2f}%")
            print(f"  {s:>5d}  " + "".join(f"{c:>22s}" for c in cells))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1400x2000", help="page WxH (default 1400x2000)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    ap.add_argument("--pin", action="store_true", help="also pin the process to --threads CPU cores")
    ap.add_argument("--quality", action="store_true", help="also compare upsampling methods")
    ap.add_argument("--real", type=Path, help="a folder of colour pages for --quality")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    if args.pin and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:args.threads]
        os.sched_setaffinity(0, cores)
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"python {sys.version.split()[0]}, opencv {cv2.__version__}, numpy {np.__version__}, "
          f"{args.threads} thread(s)")
    bench_speed(h, w, args.repeat)
    if args.quality:
        bench_quality(args.real)


if __name__ == "__main__":
    main()
