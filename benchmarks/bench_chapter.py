"""End-to-end chapter benchmark: seconds per page and peak RSS of `manga-color run` on a synthetic chapter.

    python benchmarks/bench_chapter.py [--pages 20] [--size 1400x2000] [--threads 2]

Prints one JSON object: stage-by-stage seconds per page from a cold run, the cached re-run time and the peak
resident memory of the process. Figures go to BENCHMARKS.md with the machine and the command.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--size", default="1400x2000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from manga_pipeline.bank import build_character
    from manga_pipeline.cli import add_inputs
    from manga_pipeline.pipeline import Pipeline
    from manga_pipeline.synthetic import generate_chapter, write_chapter
    from manga_pipeline.workspace import Workspace

    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        chapter = generate_chapter(args.pages, seed=args.seed, size=(w, h))
        write_chapter(chapter, tmp / "chapter")
        gen_s = time.perf_counter() - t
        ws = Workspace.create(tmp / "ws")
        for d in chapter.cast:
            built = build_character(d.name, [tmp / "chapter" / "references" / f"{d.name}.png"])
            ws.add_character(d.name, built.features, built.descriptors, built.images)
        add_inputs(ws, [tmp / "chapter" / "pages"])
        t = time.perf_counter()
        pipeline = Pipeline()
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        summary = pipeline.run(ws)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        again = pipeline.run(ws)
        warm = time.perf_counter() - t
        ws.close()
    print(json.dumps({
        "machine": f"{platform.machine()} {platform.processor() or ''} threads={args.threads}".strip(),
        "pages": args.pages, "size": args.size,
        "generate_s": round(gen_s, 2), "load_models_s": round(load_s, 2),
        "cold_run_s": round(cold, 2), "cold_s_per_page": round(cold / args.pages, 3),
        "cached_rerun_s": round(warm, 2),
        "done": summary.count("done"), "failed": summary.count("failed"), "cached_on_rerun": again.cached,
        "colorizer": summary.weights, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
