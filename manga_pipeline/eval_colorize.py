"""`manga-color eval colorize`: colour pages whose true colours are known and score the whole pipeline.

Each case is a B/W page with its true colour page: a synthetic chapter's ``ground_truth.json`` gives both (the
B/W page as drawn, with screentones), a colour image is turned B/W here (``style`` "gray": its own L*;
"screentone": mid-tones halftoned as in print). The pages run through the real pipeline (detect, identify
against the references, colorize, compose) in a scratch workspace, and the output is scored against the truth
next to the gray baseline (the B/W input itself as output): mean CIEDE2000, mean |Δa*b*|, PSNR, SSIM and
colourfulness relative to the truth. RESEARCH.md: only the figures *relative to gray* say anything.

Consistency: for every named character, the mean colour of its coloured pixels inside its boxes on each page;
the spread is the largest CIEDE2000 of a page's mean from the character's chapter mean. The same statistic on
the true colour pages in the same boxes says how much of it framing alone explains (a face on one page, a full
figure on another).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from colorizer.metrics import colourfulness, delta_e2000
from .colorspace import rgb_to_gray, rgb_to_lab
from .imageio import ImageError, decode_image, iter_inputs, load_image


class EvalError(ValueError):
    pass


@dataclass(frozen=True)
class Case:
    """One scored page: ``bw`` uint8 (H, W) goes in, ``truth`` uint8 (H, W, 3) is what it should become."""

    name: str
    bw: np.ndarray
    truth: np.ndarray
    bodies: tuple = ()  # annotated character boxes (page px): the colour inside them is scored apart
    names: tuple = ()   # the annotated name of each body ("" where the annotation has none)


def _screentone(gray: np.ndarray, seed: int) -> np.ndarray:
    from colorizer.data import screentone

    return (screentone(gray, np.random.default_rng(seed)) * 255.0).round().astype(np.uint8)


def to_bw(rgb: np.ndarray, style: str, seed: int = 0) -> np.ndarray:
    gray = rgb_to_gray(rgb)
    if style == "gray":
        return gray
    if style == "screentone":
        return _screentone(gray, seed)
    raise EvalError(f"unknown B/W style {style!r}: use gray or screentone")


def _json_case(path: Path, p: dict, style: str, seed: int) -> Case:
    if "color_image" in p:  # a synthetic chapter: the B/W page as drawn, and its colours
        truth = load_image(path.parent / p["color_image"]).rgb
        bw = load_image(path.parent / p["image"]).gray
    else:  # the shared annotation format: the image is a colour page
        truth = load_image(path.parent / p["image"]).rgb
        bw = to_bw(truth, style, seed=seed)
    bodies = tuple(tuple(int(v) for v in b["box"]) for b in p.get("bodies", ()))
    names = tuple(str(b.get("character") or "") for b in p.get("bodies", ()))
    return Case(p["image"], bw, truth, bodies, names)


def load_cases(inputs: Sequence[Path], style: str, limit: int | None = None) -> tuple[list[Case], dict]:
    """Cases from colour images / folders, or from one synthetic ``ground_truth.json``; plus the references
    that file names (NAME -> image path), empty for plain images."""
    cases, refs = [], {}
    for path in inputs:
        path = Path(path)
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise EvalError(f"{path}: cannot read annotations ({exc})") from None
            pages = data.get("pages") if isinstance(data, dict) else None
            if not pages:
                raise EvalError(f"{path}: no pages in it")
            for c in data.get("cast", []):
                if c.get("reference"):
                    refs[c["name"]] = path.parent / c["reference"]
            for p in pages:
                try:
                    cases.append(_json_case(path, p, style, len(cases)))
                except ImageError:
                    raise
                except (KeyError, TypeError, ValueError) as exc:
                    raise EvalError(f"{path}: a page entry is not in the annotation format ({exc!r})") from None
        else:
            for item in iter_inputs([path]):
                if item.error:
                    raise EvalError(item.error)
                truth = decode_image(item.data, item.name).rgb
                cases.append(Case(item.name, to_bw(truth, style, seed=len(cases)), truth))
    if limit:
        cases = cases[:limit]
    if not cases:
        raise EvalError("nothing to score: give colour images, folders or a ground_truth.json")
    return cases, refs


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the RGB channels (Gaussian window sigma 1.5, Wang et al. 2004 constants)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    out = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        mx, my = cv2.GaussianBlur(x, (11, 11), 1.5), cv2.GaussianBlur(y, (11, 11), 1.5)
        sxx = cv2.GaussianBlur(x * x, (11, 11), 1.5) - mx * mx
        syy = cv2.GaussianBlur(y * y, (11, 11), 1.5) - my * my
        sxy = cv2.GaussianBlur(x * y, (11, 11), 1.5) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out.append(float(s.mean()))
    return float(np.mean(out))


def score(out: np.ndarray, truth: np.ndarray, bodies=()) -> dict:
    lab_o, lab_t = rgb_to_lab(out), rgb_to_lab(truth)
    de = delta_e2000(lab_o, lab_t)
    inside = np.zeros(de.shape, bool)
    for x0, y0, x1, y1 in bodies:
        inside[max(0, y0):y1, max(0, x0):x1] = True
    return {
        "de2000": float(de.mean()),
        **({"de2000_bodies": float(de[inside].mean())} if inside.any() else {}),
        "dab": float(np.hypot(*(lab_o[..., 1:] - lab_t[..., 1:]).transpose(2, 0, 1)).mean()),
        "psnr": _psnr(out, truth),
        "ssim": _ssim(out, truth),
        "colourfulness": colourfulness(out),
    }


def _r(v: float, k: int = 3) -> float:
    return round(float(v), k)


def evaluate(cases: Sequence[Case], references: dict, *, overrides: dict, sheet: Path | None = None,
             annotated_names: bool = False) -> dict:
    """Run the pipeline over ``cases`` with ``references`` (NAME -> colour image) and score it.

    annotated_names: name every annotated body whose name has a reference, as a user would in review (identity
    overrides), so the colorizer is measured apart from detection and identification."""
    from .bank import build_character
    from .pipeline import Pipeline
    from .config import load_config
    from .export import page_listing
    from .imageio import write_png
    from .workspace import Workspace

    config = load_config(None, overrides)
    per_page, rows = [], []
    with tempfile.TemporaryDirectory(prefix="manga-color-eval-") as tmp:
        tmp = Path(tmp)
        ws = Workspace.create(tmp / "ws")
        with ws:
            for name, path in references.items():
                built = build_character(name, [Path(path)])
                ws.add_character(name, built.features, built.descriptors, built.images, replace=True)
            from .cli import add_inputs

            inputs = []
            for i, case in enumerate(cases):
                p = tmp / "in" / f"{i:04d}.png"
                write_png(p, case.bw)
                inputs.append(p)
            added, errors = add_inputs(ws, inputs)
            if errors:
                raise EvalError("; ".join(errors))
            by_name = {Path(rec["name"]).name: rec["page_id"] for rec in added}
            page_ids = [by_name[p.name] for p in inputs]
            if annotated_names:
                from .records import IdentityOverride

                for pid, case in zip(page_ids, cases):
                    for box, name in zip(case.bodies, case.names):
                        if name in references:
                            ws.add_override(IdentityOverride(pid, box, name))
            pipeline = Pipeline(config)
            summary = pipeline.run(ws)
            failed = [o.reason for o in summary.outcomes if o.status == "failed"]
            if failed:
                raise EvalError(f"{len(failed)} page(s) failed: {failed[0]}")
            listing = {row["page_id"]: row for row in page_listing(ws)}
            colours: dict[str, list[np.ndarray]] = {}
            for pid, case in zip(page_ids, cases):
                out = load_image(ws.output_path(ws.page(pid))).rgb
                gray_rgb = np.repeat(case.bw[..., None], 3, axis=2)
                ours, base = score(out, case.truth, case.bodies), score(gray_rgb, case.truth, case.bodies)
                truth_cf = colourfulness(case.truth)
                per_page.append({"image": case.name, "ours": {k: _r(v) for k, v in ours.items()},
                                 "gray": {k: _r(v) for k, v in base.items()}, "truth_colourfulness": _r(truth_cf)})
                lab, lab_true = rgb_to_lab(out), rgb_to_lab(case.truth)
                pixels: dict[str, list[np.ndarray]] = {}
                for c in listing[pid]["characters"]:
                    if c["identity"]:
                        x0, y0, x1, y1 = c["box"]
                        sub = lab[y0:y1, x0:x1].reshape(-1, 3)
                        true = lab_true[y0:y1, x0:x1].reshape(-1, 3)
                        pixels.setdefault(c["identity"], []).append((sub[np.hypot(sub[:, 1], sub[:, 2]) > 5],
                                                                     true[np.hypot(true[:, 1], true[:, 2]) > 5]))
                for who, parts in pixels.items():  # one mean colour per character and page, ours and the truth's
                    sub = np.concatenate([a for a, _ in parts])
                    true = np.concatenate([b for _, b in parts])
                    if len(sub) >= 50 and len(true) >= 50:
                        colours.setdefault(who, []).append((sub.mean(0), true.mean(0)))
                rows.append((case.bw, out, case.truth))
            trained = pipeline.colorizer.trained
            weights = pipeline.colorizer.weights_id
    if sheet is not None:
        contact_sheet(rows, sheet)
    mean = lambda who, k: float(np.mean([p[who][k] for p in per_page]))  # noqa: E731
    keys = ("de2000", "dab", "psnr", "ssim", "colourfulness")
    overall = {f"{k}": _r(mean("ours", k)) for k in keys}
    overall.update({f"{k}_gray": _r(mean("gray", k)) for k in keys})
    overall["de2000_ratio"] = _r(overall["de2000"] / max(overall["de2000_gray"], 1e-9))
    with_bodies = [p for p in per_page if "de2000_bodies" in p["ours"]]
    if with_bodies:  # the per-character target: inside the annotated characters only
        overall["de2000_bodies"] = _r(np.mean([p["ours"]["de2000_bodies"] for p in with_bodies]))
        overall["de2000_bodies_gray"] = _r(np.mean([p["gray"]["de2000_bodies"] for p in with_bodies]))
        overall["de2000_bodies_ratio"] = _r(overall["de2000_bodies"] / max(overall["de2000_bodies_gray"], 1e-9))
    overall["colourfulness_ratio"] = _r(overall["colourfulness"] / max(np.mean([p["truth_colourfulness"]
                                                                                for p in per_page]), 1e-9))
    spread = {}

    def _spread(means):
        m = np.mean(means, 0)
        return delta_e2000(np.array(means, np.float32)[None], np.broadcast_to(m, (1, len(means), 3)).astype(np.float32))

    for name, pairs in colours.items():
        if len(pairs) < 2:
            continue
        de, de_true = _spread([a for a, _ in pairs]), _spread([b for _, b in pairs])
        # the truth's own spread in the same boxes: what framing alone (a face here, a full body there) gives
        spread[name] = {"pages": len(pairs), "max_de2000": _r(de.max()), "mean_de2000": _r(de.mean()),
                        "truth_max_de2000": _r(de_true.max()), "truth_mean_de2000": _r(de_true.mean())}
    return {"pages": len(per_page), "references": sorted(references), "colorizer": weights,
            "names": "annotated (identity overrides)" if annotated_names else "identified by the pipeline",
            "colorizer_trained": trained, "settings": overrides, **overall, "consistency": spread,
            "per_page": per_page}


def contact_sheet(rows, path: Path, height: int = 480) -> None:
    """A PNG with one row per page: B/W input | pipeline output | true colours."""
    from .imageio import write_png

    tiles = []
    for bw, out, truth in rows:
        h, w = out.shape[:2]
        s = height / h
        size = (max(1, int(round(w * s))), height)
        parts = [cv2.resize(np.repeat(bw[..., None], 3, 2), size, interpolation=cv2.INTER_AREA),
                 cv2.resize(out, size, interpolation=cv2.INTER_AREA),
                 cv2.resize(truth, size, interpolation=cv2.INTER_AREA)]
        gap = np.full((height, 8, 3), 255, np.uint8)
        tiles.append(np.concatenate([parts[0], gap, parts[1], gap, parts[2]], 1))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 8), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    write_png(Path(path), np.concatenate(tiles, 0))


def parse_references(specs: Sequence[str]) -> dict:
    refs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise EvalError(f"--references wants NAME=IMAGE, got {spec!r}")
        if not Path(path).is_file():
            raise EvalError(f"{path}: no such file")
        refs[name] = Path(path)
    return refs


__all__ = ["Case", "EvalError", "ImageError", "contact_sheet", "evaluate", "load_cases", "parse_references",
           "score", "to_bw"]
