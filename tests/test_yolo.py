"""The learned detector: ultralytics offline, a tiny training run, inference contract."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from detectors.yolo_env import ensure_offline_ultralytics


def test_offline_env_has_font_and_no_sync(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO_CONFIG_DIR", raising=False)
    cfg = ensure_offline_ultralytics(tmp_path / "yolo")
    assert cfg == tmp_path / "yolo"
    assert os.environ["YOLO_CONFIG_DIR"] == str(cfg)
    assert os.environ["YOLO_OFFLINE"] == "1" and os.environ["YOLO_AUTOINSTALL"] == "false"
    font = cfg / "Ultralytics" / "Arial.ttf"
    assert font.is_file() and font.stat().st_size > 10_000
    assert json.loads((cfg / "Ultralytics" / "settings.json").read_text())["sync"] is False
    ensure_offline_ultralytics(tmp_path / "yolo")  # idempotent


def test_ultralytics_settings_sync_off():
    ensure_offline_ultralytics()
    from ultralytics.utils import SETTINGS

    assert SETTINGS["sync"] is False
    assert "ultralytics" in sys.modules


def test_yaml_model_trains_one_tiny_epoch_offline(tmp_path):
    """4 synthetic pages at 128 px, one epoch, on the CPU; the exported file loads with weights_only."""
    import torch

    from detectors.yolo import build_network, run_network
    from detectors.yolo_data import CLASSES, build_dataset
    from detectors.yolo_train import export_weights, train

    yaml = build_dataset(tmp_path / "ds", None, n_synthetic=4, n_synthetic_val=1, max_side=128)
    labels = sorted((tmp_path / "ds" / "labels" / "train").glob("*.txt"))
    assert len(labels) == 4
    rows = [list(map(float, line.split())) for f in labels for line in f.read_text().split("\n") if line]
    assert {int(r[0]) for r in rows} <= set(range(len(CLASSES))) and rows
    assert all(0 <= v <= 1 for r in rows for v in r[1:])
    model = train(yaml, imgsz=128, epochs=1, hours=None, device="cpu", out=tmp_path / "runs", batch=2, cache=False,
                  mosaic=0.0)
    path = export_weights(model, tmp_path / "w.pt", 128)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["names"] == list(CLASSES) and payload["imgsz"] == 128
    net = build_network(payload)
    gray = np.full((131, 97), 255, np.uint8)
    det = run_network(net, gray, 128, conf=0.0, iou=0.5)
    assert det.shape[1] == 6
    if len(det):
        assert det[:, [0, 2]].max() <= 97 and det[:, [1, 3]].max() <= 131 and det[:, :4].min() >= 0


def _shipped_detector():
    from detectors.yolo import YoloConfig, YoloDetector, available

    if not available():
        pytest.skip("no detector weights shipped in weights/ (train them with `manga-color train detector`)")
    return YoloDetector(YoloConfig())


def test_yolo_detector_on_synthetic_page():
    from manga_pipeline.records import PageDetections
    from manga_pipeline.synthetic import generate_page

    det = _shipped_detector()
    assert det.name.startswith("yolo-detector.")
    page = generate_page(0, seed=7, size=(700, 1000), layouts=None)
    out = det.detect("a" * 64, page.bw)
    assert isinstance(out, PageDetections) and (out.width, out.height) == (700, 1000)
    assert len(out.panels) >= 1
    assert sorted(p.order for p in out.panels) == list(range(len(out.panels)))
    for t in out.texts:
        assert t.mask is None or t.mask.shape == (t.box[3] - t.box[1], t.box[2] - t.box[0])


def test_figures_network_supplies_bodies_and_main_network_the_rest():
    from detectors.yolo import YoloConfig, YoloDetector
    from manga_pipeline.synthetic import generate_page
    from weights import default_tag

    if default_tag("figures") is None:
        pytest.skip("no figures network shipped")
    both = _shipped_detector()
    main_only = YoloDetector(YoloConfig(figures="main"))
    assert both.figures_spec is not None and both.figures_spec.name_tag.startswith("figures.")
    assert main_only.figures_spec is None
    # the cache key of detections names both networks, so swapping one re-runs detection
    assert both.figures_spec.short in both.name and both.figures_spec.short not in main_only.name
    page = generate_page(1, seed=11, size=(700, 1000), layouts=None)
    a, b = both.detect("a" * 64, page.bw), main_only.detect("a" * 64, page.bw)
    assert [p.box for p in a.panels] == [p.box for p in b.panels]
    assert [t.box for t in a.texts] == [t.box for t in b.texts]
    truth = [c.box for c in page.characters]
    found = sum(any(_iou(c.box, t) >= 0.5 for c in a.characters) for t in truth)
    assert found >= len(truth) // 2, (found, len(truth))
    with pytest.raises(Exception, match="figures.nope"):
        YoloDetector(YoloConfig(figures="figures.nope"))


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_build_detector_backends():
    from detectors import ClassicalDetector
    from detectors.yolo import available, build_detector

    assert isinstance(build_detector("classical", rtl=False), ClassicalDetector)
    with pytest.raises(ValueError, match="unknown detector backend"):
        build_detector("nope")
    auto = build_detector("auto")
    assert auto.name.startswith("yolo-") == available()


# --- composite training pages (real layouts + cut-out character art) -------------------------------------------


def _figure_on_paper(h=200, w=120, paper=245):
    """An RGB 'character' (a dark-outlined coloured blob) on off-white paper, and its true mask."""
    import cv2

    rgb = np.full((h, w, 3), paper, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, 1, -1)
    rgb[mask > 0] = (200, 120, 90)
    cv2.ellipse(rgb, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, (20, 20, 20), 3)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, 1, 3)
    return rgb, mask.astype(bool)


def test_cut_out_keeps_the_figure_not_the_paper():
    from detectors.yolo_composite import cut_out

    rgb, truth = _figure_on_paper()
    mask = cut_out(rgb)
    assert mask is not None
    inter, union = (mask & truth).sum(), (mask | truth).sum()
    assert inter / union > 0.9
    # a scene with no plain paper around the figure is not a cut-out
    busy = np.random.default_rng(0).integers(0, 255, (200, 120, 3), dtype=np.uint8)
    assert cut_out(busy) is None


def test_composite_page_labels_pasted_art_and_keeps_frames_and_lettering():
    from detectors.yolo_composite import ArtPiece, composite_page
    from detectors.yolo_data import BODY, PANEL, TEXT

    rng = np.random.default_rng(3)
    H, W = 600, 400
    page = np.full((H, W), 255, np.uint8)
    panels = [(10, 10, 390, 290), (10, 310, 390, 590)]
    for x0, y0, x1, y1 in panels:
        page[y0:y0 + 3, x0:x1] = 0
        page[y1 - 3:y1, x0:x1] = 0
        page[y0:y1, x0:x0 + 3] = 0
        page[y0:y1, x1 - 3:x1] = 0
        page[y0 + 40:y1 - 40, x0 + 40:x1 - 40] = 90  # an unlabelled "figure" that must be erased
    texts = [(300, 30, 370, 120)]
    page[40:110, 320:330] = 0  # lettering
    rgb, alpha = _figure_on_paper()
    art = [ArtPiece("blob", rgb, alpha, [])]
    bodies = 0
    for k in range(6):
        s = composite_page(f"p{k}", page, panels, texts, art, rng)
        assert s.gray.shape == page.shape
        # frames (outside the emptied interiors) and the lettering box are the page's own pixels
        frame = np.ones_like(page, bool)
        for x0, y0, x1, y1 in panels:
            frame[y0 + 3:y1 - 3, x0 + 3:x1 - 3] = False
        assert np.array_equal(s.gray[frame], page[frame])
        assert np.array_equal(s.gray[30:120, 300:370], page[30:120, 300:370])
        assert [b for c, b in s.boxes if c == PANEL] == panels
        assert [b for c, b in s.boxes if c == TEXT] == texts
        # the unlabelled figure (60 % of the interiors, gray 90) is gone
        assert (s.gray[~frame] == 90).mean() < 0.02
        for c, (x0, y0, x1, y1) in s.boxes:
            if c != BODY:
                continue
            bodies += 1
            crop = s.gray[y0:y1, x0:x1]
            assert (crop < 60).mean() > 0.01  # the pasted outline is inside the labelled box
            assert any(px0 <= x0 and py0 <= y0 and x1 <= px1 and y1 <= py1 for px0, py0, px1, py1 in panels)
    assert bodies >= 3
