"""Character bank and identification commands: `character show/rename/clusters/name-cluster`,
`train identifier`, `eval identify` (registered on the main CLI by ``cli_extra``)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import cv2

from .cli import PathArg, _echo_json, _open_ws, character, json_option, workspace_option
from .cli_extra import eval_, train
from .imageio import ImageError, decode_image, write_png
from .records import RecordError
from .workspace import WorkspaceError


def _entry(ws, name: str):
    for e in ws.bank():
        if e.name == name:
            return e
    raise click.ClickException(f"no character named {name!r}; see `manga-color character list`")


@character.command("show")
@click.argument("name")
@workspace_option
@json_option
def character_show(name, ws_path, as_json):
    """Show NAME: palette, images, identity descriptors (and whether they match the current network)."""
    from detectors.identify import default_embedder

    with _open_ws(ws_path) as ws:
        e = _entry(ws, name)
    made_by = (e.features.get("identity") or {}).get("weights")
    current = default_embedder().weights_id
    refs = e.features.get("references", [])
    row = {
        "name": e.name,
        "palette": e.features.get("palette", []),
        "palette_weights": [round(w, 3) for w in refs[0]["weights"] if w > 0] if refs else [],
        "histogram_bins": len(refs[0]["histogram"]) if refs else 0,
        "images": [{"kind": k, "file": str(p)} for k, p in e.images],
        "descriptors": list(e.descriptors.shape),
        "identity_weights": made_by,
        "identity_current": made_by == current,
        "fingerprint": e.fingerprint[:12],
    }
    if as_json:
        _echo_json(row)
        return
    click.echo(f"{e.name}  (fingerprint {row['fingerprint']})")
    pal = " ".join(f"{c} ({w:.0%})" for c, w in zip(row["palette"], row["palette_weights"]))
    click.echo(f"  palette: {pal or '(no colour reference)'}")
    for im in row["images"]:
        click.echo(f"  {im['kind']:9s} {im['file']}")
    state = "current" if row["identity_current"] else f"stale (made by {made_by}; recomputed on each run)"
    click.echo(f"  identity: {row['descriptors'][0]} views x {row['descriptors'][1]} dims, {state}")


@character.command("rename")
@click.argument("old")
@click.argument("new")
@workspace_option
def character_rename(old, new, ws_path):
    """Rename OLD to NEW (images and overrides follow; pages are re-identified on the next run)."""
    with _open_ws(ws_path) as ws:
        try:
            ws.rename_character(old, new)
        except (WorkspaceError, RecordError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"renamed {old} to {new}")


def _clusters(ws) -> list[dict]:
    """The latest run's unknown clusters, members still unknown (an override may have named some since)."""
    stored = ws.unknown_clusters()["clusters"]
    positions = {p.page_id: p.position for p in ws.pages()}
    still = {}
    for pid in positions:
        det = ws.latest_identities(pid)
        if det is not None:
            still[pid] = {tuple(c.box) for c in det.characters if c.identity is None}
    out = []
    for cl in stored:
        members = [m for m in cl["members"] if tuple(m["box"]) in still.get(m["page_id"], set())]
        if members:
            out.append({"cluster": cl["cluster"], "size": len(members),
                        "members": [{**m, "page": positions.get(m["page_id"])} for m in members]})
    return out


@character.command("clusters")
@workspace_option
@click.option("--crops", "crops_dir", type=PathArg, help="Also write each member's crop to CROPS/<cluster>/.")
@json_option
def character_clusters(ws_path, crops_dir, as_json):
    """List the clusters of unknown characters found by the last run (name one with `name-cluster`)."""
    with _open_ws(ws_path) as ws:
        rows = _clusters(ws)
        if crops_dir is not None:
            for cl in rows:
                for k, m in enumerate(cl["members"]):
                    img = decode_image(ws.page(m["page_id"]).source.read_bytes(), m["page_id"][:12])
                    x0, y0, x1, y1 = m["box"]
                    write_png(crops_dir / str(cl["cluster"]) / f"{k:03d}_page{m['page']}.png", img.rgb[y0:y1, x0:x1])
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no unknown characters (run `manga-color run` first)")
    for cl in rows:
        where = ", ".join(f"p{m['page']}@{','.join(map(str, m['box']))}" for m in cl["members"][:4])
        more = f" (+{cl['size'] - 4})" if cl["size"] > 4 else ""
        click.echo(f"cluster {cl['cluster']:3d}: {cl['size']} appearance(s)  {where}{more}")


@character.command("name-cluster")
@click.argument("cluster", type=int)
@click.argument("name")
@click.option("--reference", "references", multiple=True, type=PathArg, help="Colour reference for a new NAME.")
@click.option("--max-samples", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Appearances of the cluster stored as B/W samples.")
@workspace_option
@json_option
def character_name_cluster(cluster, name, references, max_samples, ws_path, as_json):
    """Name unknown CLUSTER (see `character clusters`) as NAME: its appearances become B/W samples of NAME
    (registered now if new), so the next run names them, and NAME's look-alikes on later pages."""
    from .bank import build_character

    for p in references:
        if not p.is_file():
            raise click.ClickException(f"{p}: no such file")
    with _open_ws(ws_path) as ws:
        rows = {c["cluster"]: c for c in _clusters(ws)}
        if cluster not in rows:
            known = ", ".join(map(str, sorted(rows))) or "none"
            raise click.ClickException(f"no unknown cluster {cluster} in the last run (clusters: {known})")
        members = rows[cluster]["members"]
        step = max(1, len(members) / max_samples)
        chosen = [members[int(k * step)] for k in range(min(max_samples, len(members)))]
        samples = []
        for m in chosen:
            img = decode_image(ws.page(m["page_id"]).source.read_bytes(), m["page_id"][:12])
            x0, y0, x1, y1 = m["box"]
            ok, buf = cv2.imencode(".png", img.gray[y0:y1, x0:x1])
            samples.append((f"cluster{cluster}_page{m['page']}_{x0}_{y0}.png", buf.tobytes()))
        existing = {e.name for e in ws.bank()}
        old = ws.character_image_bytes(name) if name in existing else []
        refs = [(src, data) for kind, data, src in old if kind == "reference"]
        refs += [(str(p), p.read_bytes()) for p in references]
        olds = [(src, data) for kind, data, src in old if kind == "sample"]
        try:
            built = build_character(name, refs, olds + samples)
            ws.add_character(built.name, built.features, built.descriptors, built.images, replace=True)
        except (ImageError, RecordError, WorkspaceError) as exc:
            raise click.ClickException(str(exc)) from None
    report = {"cluster": cluster, "name": name, "samples_added": len(samples), "new_character": name not in existing}
    if as_json:
        _echo_json(report)
    else:
        what = "registered" if report["new_character"] else "added to"
        click.echo(f"{what} {name}: {len(samples)} sample(s) from cluster {cluster}; `manga-color run` names them")


# --- training and evaluation -------------------------------------------------------------------------------


@train.command("identifier")
@click.option("--data", "data_dir", type=PathArg, default=Path("../shared/data"), show_default=True,
              help="Shared data folder (Pepper&Carrot names, real art); synthetic crops only when absent.")
@click.option("--chapters", type=click.IntRange(2, 100000), default=200, show_default=True,
              help="Synthetic training chapters.")
@click.option("--steps", type=click.IntRange(1, 10**7), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tag", default="v1", show_default=True, help="Weights are registered as identifier.TAG.")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--cache", "cache_dir", type=PathArg, help="Keep the prepared crops here (reused when present).")
@click.option("--val-chapters", type=click.IntRange(1, 12), default=12, show_default=True,
              help="Held-out synthetic chapters for validation and the confidence calibration.")
@click.option("--classes-per-batch", type=click.IntRange(2, 512), default=24, show_default=True,
              help="Synthetic characters per batch (whole casts).")
@click.option("--image-classes", type=click.IntRange(0, 512), default=6, show_default=True,
              help="Real art instances per batch (an illustration or face in two B/W styles).")
@click.option("--unlabelled", type=click.IntRange(0, 512), default=8, show_default=True,
              help="Unlabelled real crops per batch, each seen in two views.")
@click.option("--widths", default="24,48,96,160,256", show_default=True,
              help="Channels of the embedding network's stem and stride-2 stages.")
@click.option("--out", type=PathArg, help="Weights file (default: weights/identifier-TAG.pt).")
@click.option("--no-register", is_flag=True, help="Write the weights file but leave the manifest alone.")
@json_option
def train_identifier(data_dir, chapters, steps, seed, tag, threads, cache_dir, val_chapters, classes_per_batch,
                     image_classes, unlabelled, widths, out, no_register, as_json):
    """Train the identity embedding (metric learning on character crops) and register weights/identifier-TAG.pt."""
    import torch

    import weights as registry
    from detectors.embedding import EmbedderConfig, net_to_state
    from detectors.identify_data import CropSet, build_crops
    from detectors.identify_train import TrainConfig, config_json, train as run_training

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    data = data_dir if data_dir.is_dir() else None
    if data is None:
        click.echo(f"warning: {data_dir} not found: training on synthetic crops only", err=True)
    log = (lambda m: click.echo(m, err=True))
    cache = None if cache_dir is None else cache_dir / f"identify-crops-c{chapters}-s{seed}-{'data' if data else 'syn'}.npz"
    if cache is not None and cache.exists():
        crops = CropSet.load(cache)
    else:
        crops = build_crops(data, chapters=chapters, seed=seed, log=log)
        if cache is not None:
            crops.save(cache)
    log(f"{len(crops)} crops, {len(crops.classes)} classes")
    try:
        width_list = tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise click.BadParameter(f"{widths!r} is not a comma list of integers", param_hint="--widths") from None
    if len(width_list) < 2 or min(width_list) < 1:
        raise click.BadParameter("need at least two positive widths", param_hint="--widths")
    cfg = TrainConfig(steps=steps, chapters=chapters, seed=seed, val_chapters=val_chapters,
                      classes_per_batch=classes_per_batch, image_classes=image_classes, unlabelled=unlabelled,
                      embed=EmbedderConfig(widths=width_list))
    net, metrics = run_training(crops, cfg, log=log)
    out = out or registry.WEIGHTS_DIR / f"identifier-{tag}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".part"), "wb") as fh:
        torch.save(net_to_state(net), fh)
    out.with_suffix(".part").replace(out)
    folders = ["synthetic (manga_pipeline.synthetic, seeds 10000+)"]
    if data is not None:
        folders += ["annotations/peppercarrot_dev_characters.json (episodes 1, 4, 28)", "color/peppercarrot",
                    "pages_bw/openmantra", "pages_bw/black_jack", "pages_bw/panel_extractor", "color/onepiece",
                    "color/comics", "color/golden_age_panels", "color/illustrations", "color/faces"]
    command = (f"manga-color train identifier --data {shlex.quote(str(data_dir))} --chapters {chapters} "
               f"--steps {steps} --seed {seed} --tag {tag} --threads {threads} --val-chapters {val_chapters}")
    defaults = {"classes_per_batch": (classes_per_batch, 24), "image_classes": (image_classes, 6),
                "unlabelled": (unlabelled, 8), "widths": (widths, "24,48,96,160,256")}
    command += "".join(f" --{k.replace('_', '-')} {v}" for k, (v, d) in defaults.items() if v != d)
    report = {"file": str(out), "metrics": metrics, "crops": len(crops), "classes": len(crops.classes)}
    if not no_register:
        spec = registry.register(
            f"identifier.{tag}", out, command=command, data=folders, seed=seed, metrics=metrics,
            config=config_json(cfg),
            notes="identity embedding for character naming; never trained on Manga109 (held-out evaluation)",
        )
        report["weights"] = spec.short
    if as_json:
        _echo_json(report)
    else:
        click.echo(f"wrote {out}" + (f", registered {report['weights']}" if "weights" in report else ""))
        click.echo(json.dumps(metrics))


@eval_.command("identify")
@click.argument("annotations", type=PathArg)
@click.option("--bank", "bank_spec", help="first-sample (default), references, a workspace folder, or a folder "
              "of NAME.png images.")
@click.option("--hold-out", "hold_out", multiple=True, metavar="NAME",
              help="Leave NAME out of the bank (its bodies must stay unknown).")
@click.option("--weights", "tag", help="Identifier weights tag (default: the shipped default).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Confidence needed to name a character (default: identify.threshold of the config, 0.80).")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True)
@json_option
def eval_identify(annotations, bank_spec, hold_out, tag, threshold, threads, as_json):
    """Naming accuracy on ANNOTATIONS (shared format, bodies with character names), on the annotated boxes."""
    import torch

    from detectors.identify import default_embedder
    from detectors.identify_eval import EvalError, bank_from_spec, evaluate, load_annotations

    torch.set_num_threads(threads)
    if not annotations.is_file():
        raise click.ClickException(f"{annotations}: no such file")
    try:
        embedder = default_embedder(tag)
        pages, doc = load_annotations(annotations)
        bank, used, how = bank_from_spec(bank_spec, pages, doc, annotations, embedder)
    except (EvalError, ImageError) as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # unknown weights tag and the like
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    missing = [n for n in hold_out if n not in {b[0] for b in bank}]
    if missing:
        raise click.ClickException(f"--hold-out {', '.join(missing)}: not in the bank ({', '.join(b[0] for b in bank)})")
    bank = [b for b in bank if b[0] not in hold_out]
    if not bank:
        raise click.ClickException("the bank is empty")
    from detectors.identify import IdentifierConfig

    from .config import PipelineConfig

    defaults = PipelineConfig().identify
    config = IdentifierConfig(threshold=defaults.threshold if threshold is None else threshold, margin=defaults.margin)
    res = evaluate(pages, bank, used, embedder, config)
    res = {"annotations": str(annotations), "bank": how, "trained": embedder.trained, "threshold": config.threshold,
           **res}
    if as_json:
        _echo_json(res)
        return
    if not embedder.trained:
        click.echo("warning: the identifier is UNTRAINED (no weights shipped): figures are not meaningful", err=True)

    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    click.echo(f"{res['bodies']} bodies on {res['pages']} pages; bank: {how}")
    click.echo(f"  accuracy {pct(res['accuracy'])}  known {pct(res['known_accuracy'])} "
               f"(unnamed {pct(res['known_unnamed_rate'])}, wrong name {pct(res['wrong_name_rate'])})")
    click.echo(f"  unknowns [{res['unknown_protocol']}]: kept unknown {pct(res['unknown_accuracy'])}, "
               f"false assignment {pct(res['false_assignment_rate'])}, cluster purity {pct(res['cluster_purity'])}")
    click.echo(f"  {res['seconds_per_page']:.3f} s/page ({res['characters_per_page']} characters/page); {res['identifier']}")
