"""Ray's overhead: pages per minute of the same chapter run by the local engine and by the Ray engine.

    python benchmarks/bench_ray.py [--pages 12] [--size 1400x2000] [--engines local1,local2,ray2] [--repeat 2]

Engines: ``localN`` = LocalEngine with N worker processes (``local1``: the driver's own process, all cores for
torch), ``rayN`` = RayEngine with N actors on a local head (127.0.0.1, N CPUs, 1 thread per actor). Each engine
is started and its models loaded before the clock starts (a series run pays that once); every measured run
starts from a fresh workspace (nothing cached) and the engines take turns, ``--repeat`` rounds, so a busy
neighbour on a shared machine hits them alike. Prints one JSON object: per engine the median seconds of phase 1
(detect + embed), phase 2 (naming, in the driver), phase 3 (colour + compose + write), pages per minute, start-up
seconds, the driver's own CPU seconds per page (what bounds a single driver), and Ray's overhead against the
local engine with as many workers. ``--split`` adds one in-process run (1 thread) timed stage by stage: the
networks (detector, identity embedder, colorizer) against everything else, the figures a GPU scale plan needs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path


def _engine(spec: str, pipeline):
    from manga_pipeline.engine import LocalEngine

    kind, n = spec.rstrip("0123456789"), int(spec[len(spec.rstrip("0123456789")):] or 1)
    if kind == "local":
        return LocalEngine(pipeline.model_factory(), n, models=pipeline.models)
    if kind == "ray":
        from manga_pipeline.engine_ray import RayEngine

        return RayEngine(pipeline.model_factory(), workers=n, local_cpus=n)
    raise SystemExit(f"unknown engine {spec!r}: use localN or rayN")


def _warm(engine, ws):
    """Start the engine's workers and load their models (one phase-1 task per worker, results thrown away)."""
    from manga_pipeline.engine import PrepareTask, prepare_page

    if hasattr(engine, "start"):
        engine.start()
    page = ws.pages()[0]
    task = PrepareTask(page.page_id, "warm-up", page.source)
    for _ in engine.map(prepare_page, [task] * max(2, engine.workers)):
        pass


def _fresh(tmp: Path, name: str, pages: Path, bank: Path):
    from manga_pipeline.bank_archive import import_bank
    from manga_pipeline.cli import add_inputs
    from manga_pipeline.workspace import Workspace

    ws = Workspace.create(tmp / name)
    import_bank(ws, bank)
    add_inputs(ws, [pages])
    return ws


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # this process only: worker processes are not counted
    return r.ru_utime + r.ru_stime


def _timed_run(pipeline, ws, engine) -> dict:
    marks = {"prepared": [], "pages": []}
    cpu0 = _cpu()
    t0 = time.perf_counter()
    summary = pipeline.run(ws, engine=engine, on_prepared=lambda p: marks["prepared"].append(time.perf_counter()),
                           on_page=lambda p, o: marks["pages"].append(time.perf_counter()))
    total = time.perf_counter() - t0
    # phase 3 starts when the first page is submitted: after naming, i.e. after the last phase-1 result
    p1_end = max(marks["prepared"])
    return {"total": total, "phase1": p1_end - t0, "phase23": total - (p1_end - t0), "driver_cpu": _cpu() - cpu0,
            "done": summary.count("done"), "failed": summary.count("failed")}


def _split(pipeline, ws) -> dict:
    """Seconds per page by stage in one in-process run (1 thread): the three networks, and the rest."""
    from manga_pipeline.engine import LocalEngine

    models = pipeline.models
    spent = {"detect": 0.0, "embed": 0.0, "colorize": 0.0}

    def timed(obj, method, key):
        fn = getattr(obj, method)

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t
        setattr(obj, method, wrapper)
        return fn

    saved = [(models.detector, "detect", timed(models.detector, "detect", "detect")),
             (models.embedder, "embed", timed(models.embedder, "embed", "embed")),
             (models.colorizer, "colorize_panel", timed(models.colorizer, "colorize_panel", "colorize"))]
    try:
        t0 = time.perf_counter()
        pipeline.run(ws, engine=LocalEngine(pipeline.model_factory(), 1, models=models))
        total = time.perf_counter() - t0
    finally:
        for obj, method, fn in saved:
            setattr(obj, method, fn)
    n = len(ws.pages())
    out = {f"{k}_s_per_page": round(v / n, 3) for k, v in spent.items()}
    out["networks_s_per_page"] = round(sum(spent.values()) / n, 3)
    out["rest_s_per_page"] = round((total - sum(spent.values())) / n, 3)
    out["total_s_per_page"] = round(total / n, 3)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=12)
    ap.add_argument("--size", default="1400x2000")
    ap.add_argument("--engines", default="local1,local2,ray2")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", action="store_true", help="also time the stages of one in-process run")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from manga_pipeline.bank_archive import export_bank
    from manga_pipeline.bank import build_character
    from manga_pipeline.pipeline import Pipeline
    from manga_pipeline.synthetic import generate_series, write_series
    from manga_pipeline.workspace import Workspace

    w, h = (int(v) for v in args.size.split("x"))
    specs = args.engines.split(",")
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        src = write_series(generate_series(1, args.pages, seed=args.seed, size=(w, h)), tmp / "data")
        with Workspace.create(tmp / "bankws") as bws:
            for ref in sorted((tmp / "data" / "references").glob("*.png")):
                built = build_character(ref.stem, [ref])
                bws.add_character(ref.stem, built.features, built.descriptors, built.images)
            export_bank(bws, tmp / "bank.zip")
        pipeline = Pipeline()
        engines, startup = {}, {}
        probe = _fresh(tmp, "probe", src / "ch01", tmp / "bank.zip")
        for spec in specs:
            t = time.perf_counter()
            engines[spec] = _engine(spec, pipeline)
            _warm(engines[spec], probe)
            startup[spec] = time.perf_counter() - t
        runs = {spec: [] for spec in specs}
        split = None
        try:
            if args.split:
                with _fresh(tmp, "split", src / "ch01", tmp / "bank.zip") as ws:
                    split = _split(pipeline, ws)
            for r in range(args.repeat):
                for spec in specs:
                    with _fresh(tmp, f"{spec}-{r}", src / "ch01", tmp / "bank.zip") as ws:
                        runs[spec].append(_timed_run(pipeline, ws, engines[spec]))
        finally:
            for e in engines.values():
                e.close()
            probe.close()
    out = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load average before/after "
                   f"{load0[0]:.2f}/{os.getloadavg()[0]:.2f}",
        "pages": args.pages, "size": args.size, "repeat": args.repeat, "engines": {},
    }
    if split:
        out["split_1_thread"] = split
    for spec in specs:
        med = {k: statistics.median(run[k] for run in runs[spec]) for k in ("total", "phase1", "phase23")}
        out["engines"][spec] = {
            "startup_s": round(startup[spec], 2),
            "run_s": round(med["total"], 2), "runs_s": [round(r["total"], 2) for r in runs[spec]],
            "phase1_s": round(med["phase1"], 2), "phase2_3_s": round(med["phase23"], 2),
            "s_per_page": round(med["total"] / args.pages, 3),
            "driver_cpu_s_per_page": round(statistics.median(r["driver_cpu"] for r in runs[spec]) / args.pages, 3),
            "pages_per_min": round(60 * args.pages / med["total"], 1),
            "done": min(r["done"] for r in runs[spec]), "failed": max(r["failed"] for r in runs[spec]),
        }
    for spec in specs:
        if spec.startswith("ray"):
            twin = "local" + spec[3:]
            if twin in out["engines"]:
                out["engines"][spec]["overhead_vs_" + twin] = round(
                    out["engines"][spec]["run_s"] / out["engines"][twin]["run_s"] - 1, 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
