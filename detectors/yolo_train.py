"""Train the learned detector (YOLO11n built from its yaml, no pretrained weights) and register its weights.

    manga-color train detector [--data ../shared/data] [--synthetic 400] [--imgsz 640] [--epochs 30]
                               [--hours 0.55] [--device auto] [--tag v1] [--out DIR] [--no-register]
                               [--composites N] [--real-sets all|openmantra,comics,peppercarrot]
                               [--role detector|figures]

Builds the dataset (``detectors.yolo_data``) in a cache folder outside the repository, trains with ultralytics
fully offline (``detectors.yolo_env``), then saves ``weights/detector-<tag>.pt``: a plain dict (state dict, the
model's yaml, class names, image size) loadable with ``torch.load(weights_only=True)``, and records it in
``weights/manifest.json`` as ``detector.<tag>`` (``--role figures``: ``figures.<tag>``, a network for the body
and face classes only, trained where every figure on a page is labelled: synthetic pages, Pepper&Carrot and
composite pages, ``detectors.yolo_composite``).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from .yolo_data import CLASSES, REAL_SETS, build_dataset
from .yolo_env import CACHE_DIR, ensure_offline_ultralytics

MODEL_YAML = "yolo11n.yaml"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def build_model(nc: int = len(CLASSES)):
    """An untrained YOLO11n detection model for ``nc`` classes (loads no weights)."""
    ensure_offline_ultralytics()
    from ultralytics import YOLO

    model = YOLO(MODEL_YAML, task="detect")
    return model


def train(data_yaml: Path, *, imgsz: int, epochs: int, hours: float | None, device: str, out: Path,
          name: str = "run", seed: int = 0, batch: int = 16, workers: int = 0, val: bool = False,
          cache: bool | str = "ram", **overrides):
    """Run ultralytics training; returns the trained ``ultralytics.YOLO`` (its last epoch's weights)."""
    ensure_offline_ultralytics()
    from ultralytics import YOLO

    model = YOLO(MODEL_YAML, task="detect")
    args = dict(
        data=str(data_yaml), imgsz=imgsz, epochs=epochs, batch=batch, workers=workers, device=device,
        pretrained=False, amp=False, plots=False, val=val, project=str(out), name=name, exist_ok=True,
        seed=seed, deterministic=True, cache=cache, verbose=False,
        # pages are gray: no hue/saturation jitter; a little brightness; mosaic of pages is kept
        hsv_h=0.0, hsv_s=0.0, hsv_v=0.3, fliplr=0.5, mosaic=1.0, close_mosaic=2, scale=0.4, translate=0.1,
        patience=1000, warmup_epochs=1,
        # an optimizer step every batch (ultralytics accumulates to nbs=64 by default): short CPU runs need steps
        nbs=batch,
    )
    if hours:
        args["time"] = hours
    args.update(overrides)
    model.train(**args)
    return model


def load_checkpoint(ckpt: Path):
    """The network of an ultralytics checkpoint (``last.pt`` of a run of ours), as float32 on the CPU."""
    import torch

    ensure_offline_ultralytics()
    # a checkpoint this project's own training wrote (it pickles the module, so weights_only cannot load it)
    data = torch.load(ckpt, map_location="cpu", weights_only=False)
    net = data.get("ema") or data.get("model")
    return net.float().eval()


def export_weights(model, path: Path, imgsz: int) -> Path:
    """Save the trained network (an ``ultralytics.YOLO`` or its ``nn.Module``) as a plain dict for
    ``torch.load(weights_only=True)``: ``state_dict``, ``yaml``, ``names``, ``imgsz``."""
    import torch

    from ultralytics.nn.tasks import BaseModel

    net = model if isinstance(model, BaseModel) else model.model  # a DetectionModel, or the YOLO wrapping one
    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    payload = {"state_dict": state, "yaml": _plain(net.yaml), "names": list(CLASSES), "imgsz": int(imgsz)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _plain(obj):
    """The model yaml as plain lists/dicts/str/numbers (safe for ``weights_only`` loading)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="manga-color train detector", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (optional)")
    ap.add_argument("--synthetic", type=int, default=400, help="synthetic training pages")
    ap.add_argument("--composites", type=int, default=0,
                    help="composite pages per OpenMantra training page (real layouts + cut-out character art)")
    ap.add_argument("--real-sets", default="all",
                    help="real annotated sets trained on as they are: all, or a comma list of "
                         "openmantra,comics,peppercarrot (pages whose figures are unlabelled teach the body class "
                         "that a real figure is background)")
    ap.add_argument("--imgsz", type=int, default=448)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hours", type=float, default=0.55, help="wall-clock budget (ultralytics `time`); 0 = epochs")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or a cuda index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="v1")
    ap.add_argument("--role", choices=("detector", "figures"), default="detector",
                    help="detector: the main network (panels, texts, bodies, faces), registered as detector.TAG; "
                         "figures: a network whose body and face classes the main one defers to, registered as "
                         "figures.TAG")
    ap.add_argument("--out", type=Path, default=CACHE_DIR / "detector", help="dataset and run folder (cache)")
    ap.add_argument("--no-register", action="store_true", help="train only; do not write weights/")
    ap.add_argument("--from-checkpoint", type=Path, default=None,
                    help="register the last.pt of an earlier run of this command instead of training")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    if out.is_relative_to(REPO):
        ap.error("--out must lie outside the repository (datasets and runs are not committed)")
    data = args.data.resolve() if (args.data / "annotations").is_dir() else None
    prefixes = {"openmantra": "openmantra_dev.json", "comics": "comics_color_dev.json",
                "peppercarrot": "peppercarrot_dev_characters.json"}
    if args.real_sets == "all":
        real_sets = REAL_SETS
    else:
        wanted = [w.strip() for w in args.real_sets.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in prefixes]
        if unknown:
            ap.error(f"--real-sets: unknown set(s) {', '.join(unknown)}; choose from all, {', '.join(prefixes)}")
        real_sets = tuple(prefixes[w] for w in wanted)
    suffix = "" if (args.real_sets == "all" and not args.composites) else \
        f"_c{args.composites}_{args.real_sets.replace(',', '+')}"
    ds = out / f"dataset_s{args.synthetic}_i{args.imgsz}_seed{args.seed}{suffix}"
    t0 = time.time()
    if not (ds / "data.yaml").exists():
        print(f"building the dataset in {ds} ...", flush=True)
        build_dataset(ds, data, n_synthetic=args.synthetic, max_side=args.imgsz, seed=args.seed,
                      real_sets=real_sets, composites=args.composites if data is not None else 0,
                      log=lambda m: print(m, flush=True))
    device = resolve_device(args.device)
    if args.from_checkpoint is not None:
        model = load_checkpoint(args.from_checkpoint)
    else:
        model = train(ds / "data.yaml", imgsz=args.imgsz, epochs=args.epochs, hours=args.hours or None,
                      device=device, out=out / "runs", name=f"{args.tag}", seed=args.seed, batch=args.batch)
    secs = time.time() - t0
    print(f"trained in {secs / 60:.1f} min on {device}", flush=True)
    if args.no_register:
        return 0
    from weights import WEIGHTS_DIR, register

    path = export_weights(model, WEIGHTS_DIR / f"{args.role}-{args.tag}.pt", args.imgsz)
    argv = list(argv if argv is not None else sys.argv[1:])
    if args.from_checkpoint is not None:  # the command that reproduces the file is the training one
        argv = [a for a in argv if a not in (str(args.from_checkpoint), "--from-checkpoint", "--no-register")]
    cmd = "manga-color train detector " + " ".join(shlex.quote(a) for a in argv)
    sources = ["synthetic (manga_pipeline.synthetic)"]
    if data is not None:
        sources += [f"annotations/{n} (train split: detectors.yolo_data.is_validation)" for n in real_sets
                    if not n.startswith("manga109")]
        sources += [{"openmantra_dev.json": "pages_bw/openmantra", "comics_color_dev.json": "color/comics",
                     "peppercarrot_dev_characters.json": "color/peppercarrot"}[n] for n in real_sets
                    if not n.startswith("manga109")]
        if args.composites:
            from .yolo_composite import ART_GLOBS, CASCADE

            sources += [f"composites: annotations/openmantra_dev.json train pages (layouts, lettering) x "
                        f"{args.composites}", *ART_GLOBS, f"{CASCADE} (weak face labels)"]
    spec = register(
        f"{args.role}.{args.tag}", path, command=cmd.strip(), data=sources, seed=args.seed,
        config={"model": MODEL_YAML, "imgsz": args.imgsz, "epochs": args.epochs, "hours": args.hours,
                "synthetic": args.synthetic, "classes": list(CLASSES), "composites": args.composites,
                "real_sets": args.real_sets, "train_minutes": None if args.from_checkpoint else round(secs / 60, 1)},
        device="cuda" if device != "cpu" else "cpu",
        notes="YOLO11n from yaml (no pretrained weights), ultralytics offline; manga109_dev and the held-out "
              "pages of the other sets never seen in training"
              + ("; the pipeline uses only its body and face classes (detectors.yolo.YoloConfig.figures)"
                 if args.role == "figures" else ""),
    )
    print(f"registered {spec.short} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
