"""Classical detectors on pages drawn with literal coordinates, on synthetic chapters, and on real pages."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from detectors import ClassicalDetector, DetectorConfig, detect_characters, detect_panels, detect_text
from manga_pipeline.records import PageDetections, Panel, TextRegion, box_iou

PAGE_ID = "ab" * 32
W, H = 700, 1000


# --- drawing ----------------------------------------------------------------------------------------------


def blank(w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w), 255, np.uint8)


def draw_panel(page: np.ndarray, pts, seed: int = 0, frame: int = 3) -> None:
    """A framed panel with some line art inside (strokes and circles clipped to the panel)."""
    pts = np.int32(pts)
    clip = np.zeros_like(page)
    cv2.fillPoly(clip, [pts], 255)
    art = np.full_like(page, 255)
    rng = np.random.default_rng(seed)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    for _ in range(6):
        p = (int(rng.integers(x0, x1)), int(rng.integers(y0, y1)))
        q = (int(rng.integers(x0, x1)), int(rng.integers(y0, y1)))
        cv2.line(art, p, q, 0, 2)
    for _ in range(2):
        c = (int(rng.integers(x0, x1)), int(rng.integers(y0, y1)))
        cv2.circle(art, c, int(rng.integers(15, 40)), 0, 2)
    page[clip > 0] = art[clip > 0]
    cv2.polylines(page, [pts], True, 0, frame)


def draw_balloon(page: np.ndarray, center, axes, n_lines: int = 3) -> None:
    """A white speech balloon with a black outline and vertical 'lettering' strokes inside."""
    cv2.ellipse(page, center, axes, 0, 0, 360, 255, -1)
    cv2.ellipse(page, center, axes, 0, 0, 360, 0, 3)
    cx, cy = center
    ax, ay = axes
    for i in range(n_lines):
        x = cx - ax // 2 + i * (ax // max(1, n_lines - 1))
        for j in range(4):
            y = cy - ay // 2 + j * (ay // 4) + 4
            cv2.line(page, (x, y), (x, y + ay // 6), 0, 3)
            cv2.line(page, (x - 5, y + 5), (x + 5, y + 5), 0, 2)


def draw_figure(page: np.ndarray, x: int, y: int, scale: float = 1.0) -> tuple[int, int, int, int]:
    """A simple character: black hair, a face with eyes, a toned body with an outline. Returns its box."""
    s = scale
    head_c, head_r = (x + int(60 * s), y + int(60 * s)), int(45 * s)
    cv2.circle(page, head_c, head_r, 0, 3)
    cv2.ellipse(page, head_c, (head_r + 4, head_r + 4), 0, 180, 360, 0, -1)  # hair
    cv2.circle(page, (head_c[0] - int(15 * s), head_c[1] + int(10 * s)), int(6 * s), 0, -1)
    cv2.circle(page, (head_c[0] + int(15 * s), head_c[1] + int(10 * s)), int(6 * s), 0, -1)
    body = np.int32([[x + int(20 * s), y + int(105 * s)], [x + int(100 * s), y + int(105 * s)],
                     [x + int(115 * s), y + int(300 * s)], [x + int(5 * s), y + int(300 * s)]])
    cv2.fillPoly(page, [body], 90)
    cv2.polylines(page, [body], True, 0, 3)
    cv2.line(page, (x + int(30 * s), y + int(300 * s)), (x + int(30 * s), y + int(380 * s)), 0, 8)
    cv2.line(page, (x + int(90 * s), y + int(300 * s)), (x + int(90 * s), y + int(380 * s)), 0, 8)
    return (x, y + int(10 * s), x + int(120 * s), y + int(384 * s))


def grid_page() -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    page = blank()
    boxes = [(40, 40, 340, 480), (360, 40, 660, 480), (40, 500, 340, 960), (360, 500, 660, 960)]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        draw_panel(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], seed=i)
    return page, boxes


def best_iou(panel_boxes, target) -> float:
    return max((box_iou(b, target) for b in panel_boxes), default=0.0)


def poly_iou(a: Polygon, b: Polygon) -> float:
    return a.intersection(b).area / a.union(b).area


# --- panels -----------------------------------------------------------------------------------------------


def test_grid_page_gives_four_panels_in_manga_order():
    page, boxes = grid_page()
    panels = detect_panels(page)
    assert len(panels) == 4
    by_order = sorted(panels, key=lambda p: p.order)
    # manga order: top right, top left, bottom right, bottom left
    for panel, want in zip(by_order, [boxes[1], boxes[0], boxes[3], boxes[2]]):
        assert box_iou(panel.box, want) > 0.9
        assert 0.0 <= panel.score <= 1.0


def test_grid_page_left_to_right_option():
    page, boxes = grid_page()
    by_order = sorted(detect_panels(page, rtl=False), key=lambda p: p.order)
    for panel, want in zip(by_order, boxes):
        assert box_iou(panel.box, want) > 0.9


def test_slanted_gutters_give_slanted_polygons():
    page = blank()
    quads = [
        [(40, 40), (660, 40), (660, 330), (40, 400)],          # top row, slanted bottom edge
        [(370, 383), (660, 350), (660, 960), (385, 960)],      # bottom right, slanted top and left edges
        [(40, 420), (350, 385), (365, 960), (40, 960)],        # bottom left
    ]
    for i, q in enumerate(quads):
        draw_panel(page, q, seed=10 + i)
    panels = detect_panels(page)
    assert len(panels) == 3
    for q in quads:
        assert max(poly_iou(p.polygon, Polygon(q)) for p in panels) > 0.85
    first = min(panels, key=lambda p: p.order)
    assert poly_iou(first.polygon, Polygon(quads[0])) > 0.85
    # the bottom right panel is read before the bottom left one
    order = {i: max(panels, key=lambda p: poly_iou(p.polygon, Polygon(q))).order for i, q in enumerate(quads)}
    assert order[1] < order[2]


def test_balloon_crossing_a_gutter_does_not_merge_panels():
    page = blank()
    top, bottom = (40, 40, 660, 480), (40, 500, 660, 960)
    for i, (x0, y0, x1, y1) in enumerate((top, bottom)):
        draw_panel(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], seed=20 + i)
    draw_balloon(page, (360, 490), (90, 70))  # straddles the gutter at y 480-500
    panels = detect_panels(page)
    assert len(panels) == 2
    boxes = [p.box for p in panels]
    assert best_iou(boxes, top) > 0.85 and best_iou(boxes, bottom) > 0.85


def test_figure_crossing_a_vertical_gutter_does_not_merge_panels():
    page = blank()
    left, right = (40, 40, 340, 960), (360, 40, 660, 960)
    for i, (x0, y0, x1, y1) in enumerate((left, right)):
        draw_panel(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], seed=30 + i)
    draw_figure(page, 290, 300)  # a figure standing across the gutter at x 340-360
    panels = detect_panels(page)
    assert len(panels) == 2
    boxes = [p.box for p in panels]
    assert best_iou(boxes, left) > 0.8 and best_iou(boxes, right) > 0.8


def test_black_gutters():
    page = np.zeros((H, W), np.uint8)
    boxes = [(40, 40, 660, 480), (40, 510, 330, 960), (360, 510, 660, 960)]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        page[y0:y1, x0:x1] = 255
        draw_panel(page, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], seed=40 + i)
    panels = detect_panels(page)
    assert len(panels) == 3
    for b in boxes:
        assert best_iou([p.box for p in panels], b) > 0.85


def test_panel_bleeding_off_the_page():
    page = blank()
    draw_panel(page, [(0, 0), (700, 0), (700, 450), (0, 450)], seed=50)  # full bleed at the top
    draw_panel(page, [(40, 480), (660, 480), (660, 960), (40, 960)], seed=51)
    boxes = [p.box for p in detect_panels(page)]
    assert len(boxes) == 2
    assert best_iou(boxes, (0, 0, 700, 450)) > 0.85


def test_frameless_page_is_one_panel_over_the_content():
    page = blank()
    fig = draw_figure(page, 250, 250, scale=1.2)
    panels = detect_panels(page)
    assert len(panels) == 1
    assert panels[0].order == 0
    x0, y0, x1, y1 = panels[0].box
    assert x0 <= fig[0] + 5 and y0 <= fig[1] + 5 and x1 >= fig[2] - 5 and y1 >= fig[3] - 5


def test_blank_and_tiny_pages_do_not_crash():
    for page in (blank(), blank(7, 5), blank(1, 1), np.zeros((30, 20), np.uint8)):
        det = ClassicalDetector().detect(PAGE_ID, page)
        assert isinstance(det, PageDetections)
        assert len(det.panels) == 1  # page-level panel
        assert det.panels[0].box == (0, 0, page.shape[1], page.shape[0])


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="uint8"):
        detect_panels(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ClassicalDetector().detect(PAGE_ID, np.zeros((10, 10), np.float32))


# --- text -------------------------------------------------------------------------------------------------


def toned_panel_with_balloon():
    page = blank()
    x0, y0, x1, y1 = 40, 40, 660, 960
    page[y0:y1, x0:x1] = 170  # a screentone-like gray background
    cv2.rectangle(page, (x0, y0), (x1, y1), 0, 3)
    draw_figure(page, 120, 450)
    center, axes = (480, 250), (110, 150)
    draw_balloon(page, center, axes, n_lines=3)
    interior = np.zeros_like(page, bool)
    m = np.zeros_like(page)
    cv2.ellipse(m, center, (axes[0] - 2, axes[1] - 2), 0, 0, 360, 255, -1)
    interior[m > 0] = True
    return page, interior


def test_white_balloon_is_found_and_its_mask_covers_the_interior():
    page, interior = toned_panel_with_balloon()
    panels = detect_panels(page)
    texts = detect_text(page, panels)
    balloons = [t for t in texts if t.kind == "balloon"]
    assert len(balloons) == 1
    b = balloons[0]
    x0, y0, x1, y1 = b.box
    assert b.mask.dtype == np.bool_ and b.mask.shape == (y1 - y0, x1 - x0)
    found = np.zeros_like(interior)
    found[y0:y1, x0:x1] = b.mask
    coverage = (found & interior).sum() / interior.sum()
    spill = (found & ~interior).sum() / found.sum()
    assert coverage > 0.9  # lettering included
    assert spill < 0.05


def test_face_is_not_a_balloon():
    page = blank()
    cv2.rectangle(page, (40, 40), (660, 960), 0, 3)
    draw_figure(page, 250, 300, scale=1.5)
    texts = detect_text(page, detect_panels(page))
    assert not [t for t in texts if t.kind == "balloon"]


# --- characters -------------------------------------------------------------------------------------------


def test_figure_is_found_in_the_right_panel():
    page = blank()
    left, right = (40, 40, 340, 960), (360, 40, 660, 960)
    for x0, y0, x1, y1 in (left, right):
        cv2.rectangle(page, (x0, y0), (x1, y1), 0, 3)
    fig = draw_figure(page, 420, 300)
    panels = detect_panels(page)
    assert len(panels) == 2
    right_order = max(panels, key=lambda p: box_iou(p.box, right)).order
    chars = detect_characters(page, panels, detect_text(page, panels))
    assert chars, "the drawn figure was not found"
    best = max(chars, key=lambda c: box_iou(c.box, fig))
    assert box_iou(best.box, fig) > 0.5
    assert best.panel == right_order
    assert best.identity is None
    assert best.mask is None or best.mask.shape == (best.box[3] - best.box[1], best.box[2] - best.box[0])
    # nothing is reported in the empty left panel
    left_order = 1 - right_order
    assert not [c for c in chars if c.panel == left_order]


# --- whole detector ---------------------------------------------------------------------------------------


def test_detector_returns_valid_records_in_page_pixels():
    page, interior = toned_panel_with_balloon()
    big = cv2.resize(page, (1400, 2000), interpolation=cv2.INTER_NEAREST)
    det = ClassicalDetector(DetectorConfig()).detect(PAGE_ID, big)
    assert ClassicalDetector.name == "classical-v1"
    assert (det.width, det.height) == (1400, 2000)
    assert det.page_id == PAGE_ID
    assert all(isinstance(p, Panel) for p in det.panels)
    assert all(isinstance(t, TextRegion) for t in det.texts)
    # the balloon is found at page scale, twice the drawing
    ys, xs = np.nonzero(interior)
    want = (2 * xs.min(), 2 * ys.min(), 2 * xs.max() + 2, 2 * ys.max() + 2)
    assert best_iou([t.box for t in det.texts], want) > 0.8
    for c in det.characters:
        assert c.identity is None and c.panel is not None
    # records are frozen and rebuilt records validate again
    PageDetections(det.page_id, det.width, det.height, det.panels, det.characters, det.texts)


def test_detector_name_is_a_stable_cache_key_part():
    a, b = ClassicalDetector(), ClassicalDetector(DetectorConfig(rtl=False))
    assert a.name == b.name == "classical-v1"
    assert a.config != b.config


# --- synthetic chapters -----------------------------------------------------------------------------------


def _match_count(pred, gt, thr=0.5) -> int:
    pairs = sorted(((box_iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gt)), reverse=True)
    used_p, used_g, n = set(), set(), 0
    for iou, i, j in pairs:
        if iou < thr:
            break
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            n += 1
    return n


def test_synthetic_chapter():
    synthetic = pytest.importorskip("manga_pipeline.synthetic", reason="synthetic page generator not available")
    chapter = synthetic.generate_chapter(3, seed=4, size=(700, 1000))
    det = ClassicalDetector()
    tp = n_pred = n_gt = 0
    b_found = b_gt = 0
    for page in chapter.pages:
        d = det.detect(PAGE_ID, page.bw)
        pred, gt = [p.box for p in d.panels], [p.box for p in page.panels]
        tp += _match_count(pred, gt)
        n_pred += len(pred)
        n_gt += len(gt)
        cover = np.zeros(page.bw.shape, bool)
        for t in d.texts:
            x0, y0, x1, y1 = t.box
            cover[y0:y1, x0:x1] |= t.mask
        for b in page.balloons:
            x0, y0, x1, y1 = b.box
            want = b.mask if b.mask is not None else np.ones((y1 - y0, x1 - x0), bool)
            b_gt += 1
            b_found += cover[y0:y1, x0:x1][want].mean() > 0.5
    assert tp / n_pred > 0.6 and tp / n_gt > 0.6, (tp, n_pred, n_gt)
    assert b_found / b_gt > 0.6, (b_found, b_gt)


# --- real pages -------------------------------------------------------------------------------------------

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.shared_data
def test_real_openmantra_pages():
    ann = SHARED / "annotations" / "openmantra_dev.json"
    if not ann.is_file():
        pytest.skip(f"real annotated pages not found at {SHARED} (../shared/data is not on this machine)")
    pages = json.loads(ann.read_text())["pages"][:12]
    det = ClassicalDetector()
    tp = n_pred = n_gt = 0
    for page in pages:
        gray = cv2.imread(str((ann.parent / page["image"]).resolve()), cv2.IMREAD_GRAYSCALE)
        assert gray is not None
        d = det.detect(PAGE_ID, gray)
        pred, gt = [p.box for p in d.panels], [tuple(b) for b in page["panels"]]
        tp += _match_count(pred, gt)
        n_pred += len(pred)
        n_gt += len(gt)
    precision, recall = tp / n_pred, tp / n_gt
    assert precision > 0.6 and recall > 0.6, (precision, recall)
