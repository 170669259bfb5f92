"""Detection commands: `detect`, `eval detect` and `train detector` (registered on the main CLI)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli import EXIT_PARTIAL, PathArg, main
from .cli_extra import eval_, train

backend_option = click.option("--backend", type=click.Choice(["auto", "yolo", "classical"]), default="auto",
                              show_default=True, help="auto = the trained YOLO detector when shipped, else classical.")
weights_option = click.option("--weights", default=None, help="Detector weights tag (see `manga-color weights`).")
figures_option = click.option("--figures", default=None,
                              help="Body/face network: a figures.* weights tag (default: the shipped one), or "
                                   "'main' for the main detector's own body and face classes.")
ltr_option = click.option("--ltr", is_flag=True, help="Western reading order (left-to-right rows).")


def _detector(backend: str, weights: str | None, ltr: bool, figures: str | None = None,
              body_conf: float | None = None, figures_imgsz: int | None = None):
    from detectors.yolo import build_detector
    from weights import WeightsError

    try:
        return build_detector(backend, rtl=not ltr, weights=weights, figures=figures, body_conf=body_conf,
                              figures_imgsz=figures_imgsz)
    except (WeightsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def detections_json(image: str, dets) -> dict:
    """The JSON-lines record of one page (page pixels of the input image)."""
    return {
        "image": image,
        "width": dets.width,
        "height": dets.height,
        "panels": [{"polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in list(p.polygon.exterior.coords)[:-1]],
                    "box": list(p.box), "order": p.order, "score": round(float(p.score), 4)}
                   for p in dets.panels_in_order()],
        "characters": [{"box": list(c.box), "score": round(float(c.score), 4), "panel": c.panel}
                       for c in dets.characters],
        "texts": [{"box": list(t.box), "score": round(float(t.score), 4), "kind": t.kind} for t in dets.texts],
    }


@main.command("detect")
@click.argument("images", nargs=-1, required=True, type=PathArg)
@backend_option
@weights_option
@figures_option
@ltr_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per page and line (JSON Lines).")
def detect_cmd(images, backend, weights, figures, ltr, as_json):
    """Find panels (polygons, reading order), characters and text regions on page images."""
    from .imageio import ImageError, load_image

    det = _detector(backend, weights, ltr, figures)
    failed = 0
    for path in images:
        try:
            img = load_image(path)
            dets = det.detect("0" * 64, img.gray)
        except (ImageError, OSError) as exc:
            click.echo(f"{path}: {exc}", err=True)
            failed += 1
            continue
        except Exception as exc:  # noqa: BLE001  one bad page never stops the others; it is reported
            click.echo(f"{path}: {type(exc).__name__}: {exc}", err=True)
            failed += 1
            continue
        rec = detections_json(str(path), dets)
        if as_json:
            click.echo(json.dumps(rec))
        else:
            click.echo(f"{path}: {img.width}x{img.height}, {len(rec['panels'])} panels, "
                       f"{len(rec['characters'])} characters, {len(rec['texts'])} text regions ({det.name})")
    if failed:
        sys.exit(EXIT_PARTIAL)


@eval_.command("detect")
@click.argument("annotations", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@backend_option
@weights_option
@figures_option
@ltr_option
@click.option("--split", type=click.Choice(["all", "train", "val"]), default="all", show_default=True,
              help="The fixed split of the shared data (detectors.yolo_data.is_validation).")
@click.option("--limit", type=int, default=None, help="Only the first N pages.")
@click.option("--body-conf", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score a body box needs (YOLO backend; default: the detector's tuned value).")
@click.option("--figures-imgsz", type=click.IntRange(64, 4096), default=None,
              help="Long side (pixels) the figures network sees (default: the detector's tuned value).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def eval_detect(annotations, backend, weights, figures, ltr, split, limit, body_conf, figures_imgsz, as_json):
    """Per-class precision / recall / F1 at IoU 0.5, panel mean IoU and seconds per page on ANNOTATIONS.json."""
    from detectors.evaluate import evaluate_file, jsonable

    det = _detector(backend, weights, ltr, figures, body_conf, figures_imgsz)
    try:
        res = evaluate_file(annotations, det, split=split, limit=limit)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    out = {"detector": det.name, "annotations": str(annotations), "split": split, **res}
    if as_json:
        click.echo(json.dumps(jsonable(out), indent=1))
        return
    click.echo(f"{annotations.name} ({split}, {res['pages']} pages), detector {det.name}: "
               f"{res['seconds_per_page']:.3f} s/page")
    for cls in ("panels", "characters", "texts"):
        r = res[cls]
        if not r.get("gt"):
            click.echo(f"  {cls:10s} (not annotated)")
            continue
        extra = f"  mean IoU {r['mean_iou']:.3f}" if cls == "panels" else ""
        if cls == "texts":
            extra = f"  coverage recall {r['coverage_recall']:.3f}"
        click.echo(f"  {cls:10s} P {r['precision']:.3f}  R {r['recall']:.3f}  F1 {r['f1']:.3f}  "
                   f"(gt {r['gt']}, pred {r['pred']}){extra}")


@train.command("detector", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_detector(args):
    """Train the YOLO detector and register its weights (`manga-color train detector --help` for options)."""
    from detectors.yolo_train import main as train_main

    sys.exit(train_main(list(args)))
