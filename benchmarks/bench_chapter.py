"""End-to-end chapter benchmark: `manga-color` as a user runs it, with 1 and 2 worker processes.

    python benchmarks/bench_chapter.py [--pages 20] [--size 1400x2000] [--workers 1,2] [--real DIR ...] [--no-real]

For a synthetic chapter (its three characters registered with their colour references) and, when present, the
real B/W pages of ../shared/data/pages_bw (black_jack, then panel_extractor; no references), every step runs as
its own `manga-color` process, timed wall-clock from process start to exit (interpreter start and model loading
included): `add`, `run --workers N` on a fresh workspace, `export` (CBZ). Peak RSS is the largest sum of the
resident memory of the `manga-color` process and all its worker processes, sampled every 100 ms (and the same
for PSS, which counts shared library pages once).

Then, on the synthetic workspace: one colour hint on one panel (`override hint`) and the re-run, timed both as
a `manga-color run` process and in-process (``Pipeline.run`` with the models already loaded, as the review
server re-runs), with the stages it recomputed.

Prints one JSON object; figures go to BENCHMARKS.md with the machine and the command. Real pages are only read
from ../shared/data (the workspace's copies live in a temporary folder and are deleted).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "pages_bw"
REAL_FOLDERS = ("black_jack", "panel_extractor")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class PeakRSS:
    """Samples the memory of a process and all its descendants: ``peak`` is the largest sum of RSS seen, ``peak_pss``
    the largest sum of PSS (bytes). RSS counts the shared libraries (torch: ~0.5 GB) once per process; PSS shares
    them out, so its sum is what the processes take from the machine together."""

    def __init__(self, pid: int, every: float = 0.1):
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = pss = 0
            try:
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    try:
                        info = p.memory_full_info()
                        total += info.rss
                        pss += info.pss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)
            time.sleep(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def manga_color(*args, check: bool = True) -> dict:
    """Run one `manga-color` command; wall seconds, peak RSS (MB) of its process tree, exit code, stdout."""
    cmd = [sys.executable, "-c", "from manga_pipeline.cli import main; main()", *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = PeakRSS(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    peak = rss.stop()
    if check and proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{err}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20),
            "peak_pss_mb": round(rss.peak_pss / 2**20), "code": proc.returncode, "stdout": out}


def chapter_figures(name: str, pages_dir: Path, n_pages: int, refs: list[Path], tmp: Path, workers: list[int]):
    """add + run --workers N + export, each on a fresh workspace, for every N."""
    rows = {}
    for n in workers:
        ws = tmp / f"{name}-ws{n}"
        manga_color("init", ws)
        for ref in refs:
            manga_color("character", "add", ref.stem, "--reference", ref, "-w", ws)
        add = manga_color("add", "-w", ws, pages_dir)
        run = manga_color("run", "-w", ws, "--workers", n, "--json")
        report = json.loads(run["stdout"])
        export = manga_color("export", "-w", ws, "--out", tmp / f"{name}-{n}.cbz")
        total = add["seconds"] + run["seconds"] + export["seconds"]
        rows[f"workers_{n}"] = {
            "pages": report["pages"], "done": report["done"], "failed": report["failed"],
            "add_s": add["seconds"], "run_s": run["seconds"], "export_s": export["seconds"],
            "end_to_end_s": round(total, 2),
            "run_s_per_page": round(run["seconds"] / n_pages, 3),
            "pages_per_minute": round(60 * n_pages / run["seconds"], 1),
            "peak_rss_mb": max(add["peak_rss_mb"], run["peak_rss_mb"], export["peak_rss_mb"]),
            "peak_pss_mb": max(add["peak_pss_mb"], run["peak_pss_mb"], export["peak_pss_mb"]),
        }
    return rows


def override_rerun(ws: Path, page: int) -> dict:
    """One hint on one panel of ``page``, then the re-run: as a process, and in-process with loaded models."""
    listing = json.loads(manga_color("export", "-w", ws, "--out", ws.parent / "listing", "--json")["stdout"])
    panel = listing["pages"][page]["panels"][0]
    x0, y0, x1, y1 = panel["box"]
    manga_color("override", "hint", page, (x0 + x1) // 2, (y0 + y1) // 2, "#e8b090", "-w", ws)
    cli = manga_color("run", "-w", ws, "--json")
    report = json.loads(cli["stdout"])
    changed = [o for o in report["outcomes"] if o["recomputed"]]

    from manga_pipeline.pipeline import Pipeline
    from manga_pipeline.workspace import Workspace

    t = time.perf_counter()
    pipeline = Pipeline()
    load = time.perf_counter() - t
    manga_color("override", "hint", page, (x0 + x1) // 2 + 3, (y0 + y1) // 2 + 3, "#80a0e0", "-w", ws)
    with Workspace.open(ws) as w:
        t = time.perf_counter()
        summary = pipeline.run(w)
        in_process = time.perf_counter() - t
    return {
        "cli_rerun_s": cli["seconds"], "cli_recomputed": {o["page_id"][:12]: o["recomputed"] for o in changed},
        "in_process_rerun_s": round(in_process, 2), "in_process_model_load_s": round(load, 2),
        "in_process_recomputed": [list(o.recomputed) for o in summary.outcomes if o.recomputed],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--size", default="1400x2000")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="skip the real pages even when present")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    w, h = (int(v) for v in args.size.lower().split("x"))
    from manga_pipeline.synthetic import generate_chapter, write_chapter

    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_cores": len(os.sched_getaffinity(0)), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-chapter-") as tmp:
        tmp = Path(tmp)
        chapter = generate_chapter(args.pages, seed=args.seed, size=(w, h))
        write_chapter(chapter, tmp / "synthetic")
        refs = [tmp / "synthetic" / "references" / f"{d.name}.png" for d in chapter.cast]
        out["synthetic"] = {"size": args.size, **chapter_figures("synthetic", tmp / "synthetic" / "pages",
                                                                 args.pages, refs, tmp, workers)}
        page = min(3, args.pages - 1)
        out["synthetic"]["override_rerun"] = override_rerun(tmp / f"synthetic-ws{workers[-1]}", page)
        if REAL.is_dir() and not args.no_real:
            files = [p for folder in REAL_FOLDERS for p in sorted((REAL / folder).glob("*"))
                     if p.suffix.lower() in IMAGE_SUFFIXES][: args.pages]
            real_dir = tmp / "real"
            real_dir.mkdir()
            for i, p in enumerate(files):  # links, not copies: the data stays in ../shared/data
                (real_dir / f"{i:03d}_{p.name}").symlink_to(p)
            out["real"] = {"pages_from": [f"pages_bw/{f}" for f in REAL_FOLDERS],
                           **chapter_figures("real", real_dir, len(files), [], tmp, workers)}
        out["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
