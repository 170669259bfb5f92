"""Measuring identification on annotated pages (the shared annotation format, ``bodies: [{box, character}]``).

The identifier is scored on the annotated body boxes (identification only: every ground-truth body is its own
detection, so "matched at IoU 0.5" holds by construction; the character detector is measured elsewhere). The
pages of one annotation file form one chapter, so chapter-level reasoning (one name per panel, propagation,
clusters) runs as in the pipeline.

Banks (``bank_from_spec``):
- ``first-sample`` (default): one B/W sample per character, its first annotated body (annotation order, pages in
  order); that body is not scored;
- ``references``: the colour references listed in the file's ``cast`` (synthetic chapters' ground_truth.json);
- a workspace folder: its character bank;
- a folder of images: ``NAME.png`` (etc.) each registers NAME, colour images as references, gray ones as samples.

Metrics (``evaluate``): ``accuracy`` over every scored body (a body of a character outside the bank is right
when it stays unknown), ``known_accuracy`` over bodies of registered characters, ``unknown_accuracy`` and
``false_assignment_rate`` (a name given to a body of an unregistered character) and ``cluster_purity`` of the
unknowns. When every annotated character is registered, the unknown figures come from a leave-one-character-out
protocol: each name in turn is dropped from the bank and its bodies must stay unknown.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import Polygon, box as shapely_box

from manga_pipeline.records import CharacterInstance, PageDetections, Panel

from .embedding import Embedder
from .identify import Identifier, IdentifierConfig, describe_reference, describe_sample

UNNAMED = frozenset({"Other", "other", "unknown", "?"})  # ground-truth labels that never name one character
BANK_SPECS = ("first-sample", "references")


class EvalError(ValueError):
    """The annotation file or the bank spec cannot be used; the message says why."""


@dataclass
class EvalPage:
    """A page of the annotation file: gray image, detections (ground-truth bodies, identities unset), truth."""

    image: Path
    gray: np.ndarray = field(repr=False)
    det: PageDetections
    truth: list[str]
    color: np.ndarray | None = field(default=None, repr=False)


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise EvalError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    chroma = np.abs(rgb.astype(np.int16) - gray[..., None].astype(np.int16)).max(2)
    return gray, (rgb if float((chroma > 20).mean()) > 0.02 else None)


def load_annotations(path: Path) -> tuple[list[EvalPage], dict]:
    """Pages with at least one body; images are resolved relative to the JSON's folder."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: cannot read annotations ({exc})") from None
    if not isinstance(doc, dict) or "pages" not in doc:
        raise EvalError(f"{path}: not an annotation file (no 'pages')")
    pages = []
    for rec in doc["pages"]:
        bodies = [b for b in rec.get("bodies", []) if b.get("character")]
        if not bodies:
            continue
        img_path = (path.parent / rec["image"]).resolve()
        if not img_path.is_file():
            raise EvalError(f"{path}: page image {rec['image']} not found")
        gray, color = _decode(img_path)
        H, W = gray.shape
        page_id = hashlib.sha256(img_path.read_bytes()).hexdigest()
        polys = rec.get("panel_polygons")
        panels = []
        for k, pb in enumerate(rec.get("panels", [])):
            poly = Polygon(polys[k]) if polys and k < len(polys) else shapely_box(*pb)
            poly = poly.intersection(shapely_box(0, 0, W, H))
            if isinstance(poly, Polygon) and poly.is_valid and poly.area >= 1:
                panels.append(poly)
        chars, truth = [], []
        for b in bodies:
            x0, y0, x1, y1 = (int(round(float(v))) for v in b["box"])
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            panel = b.get("panel")
            if panel is None or not (0 <= int(panel) < len(panels)):
                centre = shapely_box(x0, y0, x1, y1).centroid
                inside = [(p.area, k) for k, p in enumerate(panels) if p.contains(centre)]
                panel = min(inside)[1] if inside else None
            chars.append(CharacterInstance((x0, y0, x1, y1), panel=None if panel is None else int(panel)))
            truth.append(str(b["character"]))
        det = PageDetections(page_id, W, H, panels=tuple(Panel(p, k) for k, p in enumerate(panels)),
                             characters=tuple(chars))
        pages.append(EvalPage(img_path, gray, det, truth, color))
    if not pages:
        raise EvalError(f"{path}: no page has a named body")
    return pages, doc


def _crop(gray, box):
    return np.ascontiguousarray(gray[box[1]:box[3], box[0]:box[2]])


def bank_from_spec(spec: str | Path | None, pages: list[EvalPage], doc: dict, ann_path: Path,
                   embedder: Embedder) -> tuple[list[tuple[str, np.ndarray]], set, str]:
    """(bank [(name, descriptors)], bodies used to build it {(page index, body index)}, description)."""
    spec = "first-sample" if spec is None else spec
    if str(spec) == "first-sample":
        bank, used, seen = [], set(), set()
        for p, page in enumerate(pages):
            for i, name in enumerate(page.truth):
                if name in seen or name in UNNAMED:
                    continue
                seen.add(name)
                used.add((p, i))
                bank.append((name, describe_sample(_crop(page.gray, page.det.characters[i].box), embedder)))
        return bank, used, "one B/W sample per character: its first annotated body (not scored)"
    if str(spec) == "references":
        cast = doc.get("cast") or []
        if not cast:
            raise EvalError(f"{ann_path}: no 'cast' with references in this file; use --bank DIR or first-sample")
        bank = []
        for c in cast:
            img = cv2.imread(str(ann_path.parent / c["reference"]))
            if img is None:
                raise EvalError(f"{ann_path}: reference {c['reference']} not readable")
            bank.append((c["name"], describe_reference(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), embedder)))
        return bank, set(), "the colour references of the file's cast"
    folder = Path(spec)
    if (folder / "workspace.sqlite").exists():
        from manga_pipeline.bank import identity_descriptors
        from manga_pipeline.workspace import Workspace

        with Workspace.open(folder) as ws:
            bank = [(e.name, identity_descriptors(e, embedder)) for e in ws.bank()]
        return bank, set(), f"the character bank of workspace {folder}"
    if folder.is_dir():
        bank = []
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
                continue
            gray, color = _decode(f)
            desc = describe_reference(color, embedder) if color is not None else describe_sample(gray, embedder)
            bank.append((f.stem, desc))
        if not bank:
            raise EvalError(f"{folder}: no images to register")
        return bank, set(), f"images of {folder} (one character per file, named by the file)"
    raise EvalError(f"--bank {spec!r} is neither {' / '.join(BANK_SPECS)}, a workspace nor a folder of images")


def _purity(pred_clusters: dict, truth_of: dict) -> tuple[int, int]:
    """(sum over clusters of their majority count, clustered bodies)."""
    top, total = 0, 0
    for members in pred_clusters.values():
        labels = [truth_of[m] for m in members]
        top += max(labels.count(x) for x in set(labels))
        total += len(labels)
    return top, total


def _run(identifier: Identifier, items, scored):
    """Assign, then {(p, i): predicted name} and {cluster: [(p, i)]} over the scored bodies."""
    t = time.perf_counter()
    res = identifier.assign(items)
    dt = time.perf_counter() - t
    pred = {(p, i): res.pages[p].characters[i].identity for p, i in scored}
    where = {(det.page_id, c.box): (p, i) for p, (det, _) in enumerate(items) for i, c in enumerate(det.characters)}
    clusters = {}
    for cl in res.clusters:
        members = [where[m] for m in cl.members if where.get(m) in scored]
        if members:
            clusters[cl.cluster] = members
    return pred, clusters, dt


def evaluate(pages: list[EvalPage], bank, used: set, embedder: Embedder,
             config: IdentifierConfig = IdentifierConfig(), *, loo: bool = True) -> dict:
    """Metrics of naming ``pages`` against ``bank``; see the module docstring. Timing covers embedding the crops
    and the chapter assignment (not image decoding, not the network's one-time warm-up)."""
    identifier = Identifier(bank, config, embedder)
    embedder.embed([np.full((32, 16), 255, np.uint8)])  # warm-up: the first call pays torch's one-time set-up
    t = time.perf_counter()
    embs = [identifier.embed_characters(p.gray, p.det) for p in pages]
    t_embed = time.perf_counter() - t
    items = [(p.det, e) for p, e in zip(pages, embs)]
    scored = [(p, i) for p, page in enumerate(pages) for i in range(len(page.truth)) if (p, i) not in used]
    truth_of = {(p, i): pages[p].truth[i] for p, i in scored}
    names = set(identifier.names)
    pred, clusters, t_assign = _run(identifier, items, scored)

    def right(k, predicted, registered):
        t_ = truth_of[k]
        return predicted == t_ if t_ in registered and t_ not in UNNAMED else predicted is None

    known = [k for k in scored if truth_of[k] in names and truth_of[k] not in UNNAMED]
    unknown = [k for k in scored if k not in set(known)]
    out = {
        "bodies": len(scored),
        "pages": len(pages),
        "boxes": "ground truth (identification scored on the annotated bodies)",
        "bank_names": sorted(names),
        "accuracy": _ratio(sum(right(k, pred[k], names) for k in scored), len(scored)),
        "known_bodies": len(known),
        "known_accuracy": _ratio(sum(pred[k] == truth_of[k] for k in known), len(known)),
        "known_unnamed_rate": _ratio(sum(pred[k] is None for k in known), len(known)),
        "wrong_name_rate": _ratio(sum(pred[k] is not None and pred[k] != truth_of[k] for k in known), len(known)),
    }
    if unknown:
        top, total = _purity(clusters, truth_of)
        out.update({
            "unknown_protocol": "natural (characters outside the bank)",
            "unknown_bodies": len(unknown),
            "unknown_accuracy": _ratio(sum(pred[k] is None for k in unknown), len(unknown)),
            "false_assignment_rate": _ratio(sum(pred[k] is not None for k in unknown), len(unknown)),
            "cluster_purity": _ratio(top, total),
            "unknown_clusters": len(clusters),
        })
    elif loo and len(bank) >= 2:
        n_unk = n_false = top_sum = tot_sum = n_clusters = n_right = 0
        for drop in sorted(names):
            sub = Identifier([(n, d) for n, d in bank if n != drop], config, embedder)
            p2, cl2, _ = _run(sub, items, scored)
            mine = [k for k in scored if truth_of[k] == drop]
            n_unk += len(mine)
            n_false += sum(p2[k] is not None for k in mine)
            n_right += sum(right(k, p2[k], names - {drop}) for k in scored)
            top, total = _purity(cl2, truth_of)
            top_sum, tot_sum, n_clusters = top_sum + top, tot_sum + total, n_clusters + len(cl2)
        out.update({
            "unknown_protocol": "leave-one-character-out (each name dropped from the bank in turn)",
            "unknown_bodies": n_unk,
            "unknown_accuracy": _ratio(n_unk - n_false, n_unk),
            "false_assignment_rate": _ratio(n_false, n_unk),
            "cluster_purity": _ratio(top_sum, tot_sum),
            "unknown_clusters": n_clusters,
            "loo_accuracy": _ratio(n_right, len(scored) * len(names)),
        })
    else:
        out.update({"unknown_protocol": "none (needs two registered names)", "unknown_bodies": 0,
                    "unknown_accuracy": None, "false_assignment_rate": None, "cluster_purity": None})
    n_chars = sum(len(p.det.characters) for p in pages)
    out["seconds_per_page"] = round((t_embed + t_assign) / len(pages), 4)
    out["characters_per_page"] = round(n_chars / len(pages), 2)
    out["identifier"] = f"{Identifier.name} ({embedder.weights_id})"
    return out


def _ratio(a, b):
    return None if b == 0 else round(float(a) / float(b), 4)


def raw_scores(pages: list[EvalPage], bank, used: set, embedder: Embedder, *, drop: str | None = None):
    """Per scored body (best similarity, runner-up, right?) before any chapter reasoning, for calibration.
    ``drop``: leave that name out of the bank (its bodies are then unknowns: never right when named)."""
    identifier = Identifier([(n, d) for n, d in bank if n != drop], IdentifierConfig(), embedder)
    rows = []
    for p, page in enumerate(pages):
        emb = identifier.embed_characters(page.gray, page.det)
        s = identifier.similarities(emb)
        for i, name in enumerate(page.truth):
            if (p, i) in used or not len(identifier.names):
                continue
            order = np.argsort(-s[i])
            best = float(s[i, order[0]])
            second = float(s[i, order[1]]) if len(order) > 1 else 0.0
            rows.append((best, second, identifier.names[order[0]] == name))
    return rows
