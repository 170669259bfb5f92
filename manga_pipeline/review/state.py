"""What the review page shows, read from a workspace: JSON-able dicts, no web framework here.

Coordinates are page pixels (records.py conventions): boxes ``[x0, y0, x1, y1]``, panel polygons
``[[x, y], ...]`` (open rings), hint points ``(x, y)``.

Review status of a page, on top of the run status (pending / done / failed / skipped):
- ``accepted``: done, and every panel is locked (a page without panels: its page-level pass, panel -1);
- ``needs review``: done, with a character left unknown or named with confidence below ``low_confidence``
  (a user's own identity override never needs review);
- ``done`` otherwise.
"""
from __future__ import annotations

from pathlib import Path

from shapely.geometry import Point

from ..records import Page, PageDetections, PageOverrides
from ..workspace import Workspace

DEFAULT_LOW_CONFIDENCE = 0.9


def _panel_of(det: PageDetections | None, x: float, y: float) -> int | None:
    if det is None:
        return None
    pt = Point(x, y)
    for p in det.panels_in_order():
        if p.polygon.buffer(0.5).contains(pt):
            return p.order
    return None


def _char_panel(det: PageDetections, c) -> int | None:
    if c.panel is not None:
        return c.panel
    return _panel_of(det, (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2)


def review_issues(det: PageDetections | None, low_confidence: float) -> list[str]:
    """One line per reason a coloured page should be looked at."""
    if det is None:
        return []
    unknown = sum(c.identity is None and c.identity_source == "auto" for c in det.characters)
    low = sum(c.identity is not None and c.identity_source == "auto" and c.confidence < low_confidence
              for c in det.characters)
    out = []
    if unknown:
        out.append(f"{unknown} unknown character{'s' if unknown > 1 else ''}")
    if low:
        out.append(f"{low} identit{'ies' if low > 1 else 'y'} below {low_confidence:.0%} confidence")
    return out


def _panel_orders(det: PageDetections | None) -> list[int]:
    if det is None or not det.panels:
        return [-1]
    return [p.order for p in det.panels_in_order()]


def review_status(run_status: str, det: PageDetections | None, overrides: PageOverrides,
                  low_confidence: float) -> str:
    if run_status != "done":
        return run_status
    if det is not None and all(o in overrides.locked_panels for o in _panel_orders(det)):
        return "accepted"
    return "needs review" if review_issues(det, low_confidence) else "done"


def _result_version(res: dict | None) -> str:
    """Changes whenever the composed page changes: the page result's cache key and time (for cache-busting)."""
    if not res or not res.get("output"):
        return ""
    return f"{res['key'][:16]}-{res['created_at']}"


def with_pending_identities(det: PageDetections | None, overrides: PageOverrides) -> PageDetections | None:
    """The last run's identities with the stored identity overrides applied, as the next run will apply them
    (so a correction shows at once, before the page is re-run)."""
    if det is None or not overrides.identities:
        return det
    from detectors.identify import apply_identity_overrides, resolve_override_conflicts

    return resolve_override_conflicts(apply_identity_overrides(det, overrides.identities))


def page_summary(ws: Workspace, page: Page, low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> dict:
    res = ws.page_result(page.page_id)
    overrides = ws.overrides(page.page_id)
    det = with_pending_identities(ws.latest_identities(page.page_id), overrides)
    run_status = res["status"] if res else "pending"
    return {
        "page_id": page.page_id,
        "position": page.position,
        "name": Path(ws.page_name(page.page_id).split("!")[-1]).name,
        "width": page.width,
        "height": page.height,
        "run_status": run_status,
        "status": review_status(run_status, det, overrides, low_confidence),
        "reason": res["reason"] if res else "",
        "issues": review_issues(det, low_confidence) if run_status == "done" else [],
        "panels": len(det.panels) if det else 0,
        "characters": len(det.characters) if det else 0,
        "locked": sorted(overrides.locked_panels),
        "version": _result_version(res),
        "has_output": bool(res and res.get("output") and Path(res["output"]).exists()),
    }


def page_detail(ws: Workspace, page: Page, low_confidence: float = DEFAULT_LOW_CONFIDENCE) -> dict:
    """The summary plus panels, characters, hints and the raw override rows (with ids, for removal).

    Characters carry the identity the next run will give them; ``pending`` marks those that differ from the
    page's last run."""
    out = page_summary(ws, page, low_confidence)
    overrides = ws.overrides(page.page_id)
    ran = ws.latest_identities(page.page_id)
    det = with_pending_identities(ran, overrides)
    before = {(c.box, c.identity, c.identity_source) for c in ran.characters} if ran else set()
    refs = dict(overrides.panel_references)
    rows = ws.list_overrides(page.page_id)
    panels = []
    if det is not None:
        for p in det.panels_in_order():
            panels.append({
                "order": p.order,
                "box": list(p.box),
                "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in p.polygon.exterior.coords[:-1]],
                "locked": p.order in overrides.locked_panels,
                "reference": refs.get(p.order),
            })
    chars = []
    if det is not None:
        for i, c in enumerate(det.characters):
            chars.append({
                "index": i,
                "box": list(c.box),
                "identity": c.identity,
                "confidence": round(float(c.confidence), 3),
                "panel": _char_panel(det, c),
                "source": c.identity_source,
                "needs_review": c.identity_source == "auto" and (c.identity is None or c.confidence < low_confidence),
                "pending": (c.box, c.identity, c.identity_source) not in before,
            })
    hints = [
        {"id": r["id"], "x": r["x"], "y": r["y"], "color": r["color"], "panel": _panel_of(det, r["x"], r["y"])}
        for r in rows if r["kind"] == "hint"
    ]
    out.update({
        "panel_list": panels,
        "page_pass": {"locked": -1 in overrides.locked_panels, "reference": refs.get(-1)},
        "character_list": chars,
        "hints": hints,
        "overrides": rows,
    })
    return out


def bank_state(ws: Workspace) -> list[dict]:
    """Registered characters: palette (#rrggbb, most area first) and their stored images (by index)."""
    out = []
    for e in ws.bank():
        out.append({
            "name": e.name,
            "palette": list(e.features.get("palette", [])),
            "has_reference": bool(e.features.get("references")),
            "references": sum(k == "reference" for k, _ in e.images),
            "samples": sum(k == "sample" for k, _ in e.images),
            "images": [{"index": i, "kind": k} for i, (k, _) in enumerate(e.images)],
        })
    return out
