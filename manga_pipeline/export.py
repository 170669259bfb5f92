"""Exporting a workspace's coloured chapter: an image folder, a CBZ with ComicInfo.xml, a PDF, the colour layers
alone (RGBA, for artists who put them under their own line art), a JSON listing.

Every file is written atomically; pages that are not ready (failed, not coloured yet) are listed with a reason
and the rest is exported.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from .fsutil import atomic_path
from .imageio import ImageError, decode_image, write_image
from .workspace import Workspace

PDF_DPI = 300  # a 1400x2000 page prints at 4.7x6.7 in, about a tankobon; the pixels are kept whatever the dpi
PAPER_GRAY = 250  # page gray at and above which a pixel is paper
LAYER_ALPHA_CHROMA = (1.0, 5.0)  # chroma (a*b* units) at which a layer pixel starts to show / is fully opaque


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


def export_pdf(ws: Workspace, out: Path, *, dpi: float = PDF_DPI, quality: int = 92) -> tuple[list[Path], list[str]]:
    """Write one PDF page per ready page, in reading order, atomically.

    Each page embeds its image at its own pixel size (JPEG at ``quality``, as Pillow writes RGB into a PDF); the
    page measures pixels / ``dpi`` inches. Pages are appended one at a time, so memory holds one page.
    """
    if not 0 < dpi <= 2400:
        raise ValueError(f"dpi must be within 0..2400, got {dpi}")
    ready, missing = _ready(ws)
    out = Path(out)
    written = []
    if not ready:
        return written, missing
    with atomic_path(out) as tmp:
        for i, (page, src) in enumerate(ready):
            with Image.open(src) as im:
                im.convert("RGB").save(tmp, format="PDF", resolution=float(dpi), quality=quality, append=i > 0,
                                       title=ws.root.resolve().name, creator="manga-color")
            written.append(out)
    return written, missing


def colour_layer(ws: Workspace, page) -> np.ndarray:
    """The colour layer of a coloured page: RGBA uint8 (H, W, 4), rebuilt from the cached panel chroma.

    RGB is the flat colour paper takes under the ink (``colorspace.flat_lightness`` of white paper with the
    page's a*b*); alpha rises from 0 where the page has no colour (balloons, uncoloured art) to 255 where its
    chroma reaches LAYER_ALPHA_CHROMA[1]. Put it under the line art in "multiply" mode.

    The page is composed again from its stored panels with the settings of the latest run and checked pixel for
    pixel against the page's output; raises ImageError (one line) when it is not ready or does not match
    (settings changed since the run: run again first).
    """
    from .colorspace import compose_lab, flat_lightness
    from .pipeline import compose_colorized
    from .records import ColorizedPanel

    name = Path(ws.page_name(page.page_id)).name
    res = ws.page_result(page.page_id)
    if not res or res["status"] != "done" or not res["output"] or not Path(res["output"]).exists():
        why = "already in colour (no separate colour layer)" if res and res["status"] == "skipped" else \
            (f"failed ({res['reason']})" if res and res["status"] == "failed" else "not coloured yet (run it first)")
        raise ImageError(f"{name}: {why}")
    ident = ws.latest_identities(page.page_id)
    config = _latest_run_config(ws)
    if ident is None or config is None:
        raise ImageError(f"{name}: no stored detections or run settings; run `manga-color run` again")
    try:
        data = page.source.read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: the workspace's copy {page.source} cannot be read ({exc.strerror})") from None
    gray = decode_image(data, name).gray
    areas = [(p.order, p.box) for p in ident.panels_in_order()]
    if config.colorize.page_pass or not areas:
        areas.append((-1, (0, 0, ident.width, ident.height)))
    colorized = []
    for order, box in areas:
        x0, y0 = max(0, box[0]), max(0, box[1])
        x1, y1 = min(ident.width, box[2]), min(ident.height, box[3])
        got = ws.panel_result(page.page_id, order)
        if x1 > x0 and y1 > y0 and got is not None:
            colorized.append(ColorizedPanel(page.page_id, order, (x0, y0, x1, y1), got[1], got[2]))
    # the hints a run used: those inside a panel, or anywhere when the page pass ran (see Pipeline.panel_jobs)
    from shapely.geometry import Point

    panels = ident.panels_in_order()
    hint_points = [(h.x, h.y) for h in ws.overrides(page.page_id).hints
                   if config.colorize.page_pass or not panels
                   or any(p.polygon.buffer(0.5).contains(Point(h.x, h.y)) for p in panels)]
    composed = compose_colorized(gray, ident, colorized, config, hint_points)
    with Image.open(res["output"]) as im:
        stored = np.asarray(im.convert("RGB"))
    if stored.shape != composed.rgb.shape or not np.array_equal(stored, composed.rgb):
        raise ImageError(f"{name}: its cached colours no longer make its output (settings or overrides changed "
                         "since the last run); run `manga-color run` again, then export")
    chroma = composed.chroma
    if composed.flat is not None:  # paper outside the flats stayed white on the page: no colour there either
        chroma = chroma * (composed.flat | (gray < PAPER_GRAY))[..., None]
    paper = flat_lightness(np.full(gray.shape, 100.0, np.float32), chroma, config.colorize.max_darken)
    rgb = compose_lab(paper, chroma)
    lo, hi = LAYER_ALPHA_CHROMA
    alpha = np.clip((np.hypot(chroma[..., 0], chroma[..., 1]) - lo) / (hi - lo), 0.0, 1.0)
    return np.dstack([rgb, np.round(alpha * 255.0).astype(np.uint8)])


def export_layers(ws: Workspace, out: Path, *, fmt: str = "png") -> tuple[list[Path], list[str]]:
    """Write the colour layer of every coloured page to ``out/0001.<fmt>`` ... (RGBA PNG or WebP, lossless),
    numbered as ``export_pages`` numbers the pages (a page already in colour keeps its number, without a layer)."""
    if fmt not in ("png", "webp"):
        raise ValueError(f"colour layers need an alpha channel: png or webp, not {fmt}")
    ready, missing = _ready(ws)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (page, _) in enumerate(ready, 1):
        try:
            layer = colour_layer(ws, page)
        except ImageError as exc:
            missing.append(str(exc))
            continue
        target = out / f"{i:04d}.{fmt}"
        with atomic_path(target) as tmp:
            Image.fromarray(layer, "RGBA").save(tmp, format=fmt.upper(), **({"lossless": True} if fmt == "webp" else {}))
        written.append(target)
    return written, missing


def _latest_run_config(ws: Workspace):
    """The PipelineConfig of the latest run that recorded one (None when there is none)."""
    import json

    from .config import ConfigError, PipelineConfig, apply_overrides

    for run in reversed(ws.runs()):
        settings = json.loads(run["settings"]).get("config")
        if settings:
            flat = {f"{section}.{k}": v for section, values in settings.items() for k, v in values.items()}
            try:
                return apply_overrides(PipelineConfig(), flat)
            except ConfigError:
                return None  # written by another version of manga-color
    return None
