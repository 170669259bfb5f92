"""Exporting a workspace's coloured chapter: an image folder, a CBZ with ComicInfo.xml, a JSON listing."""
from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from .fsutil import atomic_path
from .imageio import write_image
from .workspace import Workspace


def _ready(ws: Workspace):
    """(position, page, output path) of pages with an output, and a reason line for each page without one."""
    ready, missing = [], []
    for page in ws.pages():
        res = ws.page_result(page.page_id)
        name = Path(ws.page_name(page.page_id)).name
        if res and res["status"] in ("done", "skipped") and res["output"] and Path(res["output"]).exists():
            ready.append((page, Path(res["output"])))
        elif res and res["status"] == "failed":
            missing.append(f"{name}: failed ({res['reason']})")
        else:
            missing.append(f"{name}: not coloured yet (run `manga-color run`)")
    return ready, missing


def export_pages(ws: Workspace, out: Path, *, fmt: str = "png") -> tuple[list[Path], list[str]]:
    """Write every ready page to ``out/0001.<fmt>`` ... in reading order; returns (written, missing reasons)."""
    ready, missing = _ready(ws)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (page, src) in enumerate(ready, 1):
        target = out / f"{i:04d}.{fmt}"
        if fmt == "png":
            with atomic_path(target) as tmp:
                tmp.write_bytes(src.read_bytes())
        else:
            with Image.open(src) as im:
                write_image(target, np.asarray(im.convert("RGB")))
        written.append(target)
    return written, missing


def comic_info(n_pages: int, title: str = "Coloured chapter") -> str:
    pages = "\n".join(f'    <Page Image="{i}" />' for i in range(n_pages))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ComicInfo xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"  <Title>{escape(title)}</Title>\n"
        f"  <PageCount>{n_pages}</PageCount>\n"
        "  <Manga>YesAndRightToLeft</Manga>\n"
        "  <Colorist>manga-color</Colorist>\n"
        f"  <Pages>\n{pages}\n  </Pages>\n"
        "</ComicInfo>\n"
    )


def export_cbz(ws: Workspace, out: Path, *, title: str | None = None) -> tuple[list[Path], list[str]]:
    """Write a CBZ (ZIP of PNG pages in reading order + ComicInfo.xml), atomically."""
    ready, missing = _ready(ws)
    out = Path(out)
    names = []
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for i, (page, src) in enumerate(ready, 1):
                name = f"{i:04d}.png"
                zf.write(src, name)
                names.append(out / name)
            zf.writestr("ComicInfo.xml", comic_info(len(ready), title or ws.root.resolve().name))
    return names, missing


def page_listing(ws: Workspace) -> list[dict]:
    """Every page with its panels and characters (box, identity, confidence), for scripts."""
    rows = []
    for page in ws.pages():
        det = ws.latest_identities(page.page_id)
        res = ws.page_result(page.page_id)
        rows.append({
            "page_id": page.page_id,
            "position": page.position,
            "name": ws.page_name(page.page_id),
            "status": res["status"] if res else "pending",
            "panels": [] if det is None else [
                {"order": p.order, "box": list(p.box),
                 "polygon": [[round(x, 1), round(y, 1)] for x, y in p.polygon.exterior.coords[:-1]]}
                for p in det.panels_in_order()
            ],
            "characters": [] if det is None else [
                {"box": list(c.box), "identity": c.identity, "confidence": round(c.confidence, 3),
                 "panel": c.panel, "source": c.identity_source}
                for c in det.characters
            ],
            "texts": [] if det is None else [{"box": list(t.box), "kind": t.kind} for t in det.texts],
        })
    return rows
