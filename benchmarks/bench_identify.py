"""Identification benchmark: seconds per page and naming quality on synthetic chapters (and Manga109 when present).

    python benchmarks/bench_identify.py [--chapters 4] [--pages 6] [--size 1400x2000] [--threads 2] [--weights TAG]

For each synthetic chapter (seeds 100.., never trained on) the bank is built twice: from the colour references
(`render_reference`) and from one B/W sample per character (its first body, not scored). Identification runs on
the ground-truth body boxes (the character detector is measured elsewhere). Prints one JSON object: pooled
accuracy, known accuracy, false-assignment rate (leave-one-character-out), cluster purity, seconds per page
(embedding the crops + chapter assignment, images already decoded) and the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pooled(results: list[dict]) -> dict:
    out = {}
    for key, weight in (("accuracy", "bodies"), ("known_accuracy", "known_bodies"),
                        ("false_assignment_rate", "unknown_bodies"), ("cluster_purity", "unknown_bodies")):
        num = sum(r[key] * r[weight] for r in results if r.get(key) is not None)
        den = sum(r[weight] for r in results if r.get(key) is not None)
        out[key] = round(num / den, 4) if den else None
    out["bodies"] = sum(r["bodies"] for r in results)
    pages = sum(r["pages"] for r in results)
    out["seconds_per_page"] = round(sum(r["seconds_per_page"] * r["pages"] for r in results) / pages, 4)
    out["characters_per_page"] = round(sum(r["characters_per_page"] * r["pages"] for r in results) / pages, 2)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chapters", type=int, default=4)
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--size", default="1400x2000")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None, help="identifier weights tag or .pt file (default: shipped)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from detectors.identify import default_embedder
    from detectors.identify_eval import bank_from_spec, evaluate, load_annotations
    from detectors.identify_train import EVAL_SEEDS
    from manga_pipeline.synthetic import generate_chapter, write_chapter

    embedder = default_embedder(args.weights)
    w, h = (int(v) for v in args.size.split("x"))
    report = {"identifier": embedder.weights_id, "trained": embedder.trained, "threads": args.threads,
              "machine": f"{platform.machine()} {os.cpu_count()} cpus", "size": args.size}
    by_bank = {"references": [], "first-sample": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k, seed in enumerate(EVAL_SEEDS[: args.chapters]):
            folder = Path(tmp) / f"ch{seed}"
            write_chapter(generate_chapter(args.pages, seed=seed, size=(w, h), cast_size=3 + k % 3), folder)
            pages, doc = load_annotations(folder / "ground_truth.json")
            for spec in by_bank:
                t = time.perf_counter()
                bank, used, _ = bank_from_spec(spec, pages, doc, folder / "ground_truth.json", embedder)
                res = evaluate(pages, bank, used, embedder)
                res["bank_seconds"] = time.perf_counter() - t
                by_bank[spec].append(res)
    report["synthetic"] = {spec: pooled(rs) for spec, rs in by_bank.items()}
    ann = SHARED / "annotations" / "manga109_dev.json"
    if ann.is_file():
        pages, doc = load_annotations(ann)
        bank, used, _ = bank_from_spec("first-sample", pages, doc, ann, embedder)
        res = evaluate(pages, bank, used, embedder)
        report["manga109_dev"] = {k: res[k] for k in ("bodies", "accuracy", "known_accuracy", "wrong_name_rate",
                                                      "false_assignment_rate", "cluster_purity", "seconds_per_page")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
