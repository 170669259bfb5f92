"""Seconds to colour one 1400x2000 page with `manga-color colorize`, and the process's peak memory.

    python benchmarks/bench_colorize.py                 # 4 synthetic pages, cast references, 2 threads
    python benchmarks/bench_colorize.py --pages 6 --threads 1

A synthetic chapter at 1400x2000 is written with its cast's colour references; `manga-color colorize` (the
one-off command: detect, identify, colorize every panel and the page pass, compose at full resolution, write
the PNG) runs in this process on 1 page and then on all pages. Seconds per page = (t(all) - t(1)) / (n - 1),
which leaves out model loading and the first call's warm-up; both raw times are printed too. Peak RSS is the
process's high-water mark (ru_maxrss), models included.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--size", default="1400x2000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    if args.pages < 2:
        ap.error("--pages must be at least 2 (one page is the warm-up)")

    import torch
    from click.testing import CliRunner

    from manga_pipeline.cli import main as cli
    from manga_pipeline.synthetic import generate_chapter, write_chapter

    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chapter = generate_chapter(args.pages, seed=args.seed, size=(w, h))
        write_chapter(chapter, tmp / "ch")
        pages = sorted((tmp / "ch" / "pages").glob("*.png"))
        refs = []
        for d in chapter.cast:
            refs += ["--reference", f"{d.name}={tmp / 'ch' / 'references' / (d.name + '.png')}"]

        def run(items, out):
            t0 = time.perf_counter()
            r = CliRunner().invoke(cli, ["colorize", *map(str, items), "--out", str(out), *refs],
                                   catch_exceptions=False)
            if r.exit_code != 0:
                sys.exit(f"colorize failed: {r.output}")
            return time.perf_counter() - t0

        t1 = run(pages[:1], tmp / "o1")
        tn = run(pages, tmp / "on")
    per_page = (tn - t1) / (len(pages) - 1)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"{w}x{h}, {len(pages)} pages, torch threads {args.threads}: 1 page {t1:.2f} s, "
          f"{len(pages)} pages {tn:.2f} s -> {per_page:.2f} s per page (models loaded, warm); "
          f"peak RSS {rss_gb:.2f} GB")


if __name__ == "__main__":
    main()
