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


def test_build_detector_backends():
    from detectors import ClassicalDetector
    from detectors.yolo import available, build_detector

    assert isinstance(build_detector("classical", rtl=False), ClassicalDetector)
    with pytest.raises(ValueError, match="unknown detector backend"):
        build_detector("nope")
    auto = build_detector("auto")
    assert auto.name.startswith("yolo-") == available()
