"""`manga-color detect --json` (JSON Lines contract) and `manga-color eval detect` on a synthetic chapter."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from manga_pipeline.cli import main
from manga_pipeline.synthetic import generate_chapter, write_chapter


def _page(tmp_path, size=(517, 733)):
    page = generate_chapter(1, seed=3, size=size, layouts=None).pages[0]
    path = tmp_path / "odd page.png"
    cv2.imwrite(str(path), page.bw)
    return path, page


def test_detect_json_lines_contract(tmp_path):
    path, page = _page(tmp_path)
    other = tmp_path / "b.png"
    cv2.imwrite(str(other), np.full((301, 211), 255, np.uint8))
    res = CliRunner().invoke(main, ["detect", str(path), str(other), "--json"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 2
    rec = json.loads(lines[0])
    assert rec["image"] == str(path) and (rec["width"], rec["height"]) == (517, 733)
    assert set(rec) >= {"image", "width", "height", "panels", "characters", "texts"}
    assert rec["panels"], "a framed synthetic page has panels"
    assert sorted(p["order"] for p in rec["panels"]) == list(range(len(rec["panels"])))
    for p in rec["panels"]:
        assert set(p) >= {"polygon", "box", "order", "score"} and len(p["polygon"]) >= 3
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 < x1 <= 517 and 0 <= y0 < y1 <= 733
        assert all(-0.5 <= x <= 517.5 and -0.5 <= y <= 733.5 for x, y in p["polygon"])
        assert 0 <= p["score"] <= 1
    for key in ("characters", "texts"):
        for item in rec[key]:
            x0, y0, x1, y1 = item["box"]
            assert 0 <= x0 < x1 <= 517 and 0 <= y0 < y1 <= 733 and 0 <= item["score"] <= 1
    assert (json.loads(lines[1])["width"], json.loads(lines[1])["height"]) == (211, 301)


def test_detect_classical_backend_and_bad_input(tmp_path):
    path, _ = _page(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    res = CliRunner().invoke(main, ["detect", str(path), str(bad), "--json", "--backend", "classical", "--ltr"])
    assert res.exit_code == 3
    assert "broken.png" in res.output


def test_eval_detect_json_per_class(tmp_path):
    gt = write_chapter(generate_chapter(2, seed=5, size=(600, 850), layouts=None), tmp_path / "ch")
    res = CliRunner().invoke(main, ["eval", "detect", str(gt), "--json", "--backend", "classical"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pages"] == 2 and out["detector"] == "classical-v1" and out["seconds_per_page"] > 0
    for cls in ("panels", "characters", "texts"):
        assert {"precision", "recall", "f1", "gt", "pred"} <= set(out[cls])
    assert out["panels"]["gt"] > 0 and 0 <= out["panels"]["f1"] <= 1
    assert 0.5 <= out["panels"]["mean_iou"] <= 1
    assert out["characters"]["gt"] > 0 and out["texts"]["gt"] > 0


def test_eval_detect_rejects_non_annotation(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    res = CliRunner().invoke(main, ["eval", "detect", str(bad), "--backend", "classical"])
    assert res.exit_code == 1 and "not an annotation file" in res.output


def test_eval_detect_body_threshold_trades_recall_for_precision(tmp_path):
    from detectors.yolo import available

    gt = write_chapter(generate_chapter(2, seed=5, size=(600, 850), layouts=None), tmp_path / "ch")
    res = CliRunner().invoke(main, ["eval", "detect", str(gt), "--backend", "classical", "--body-conf", "0.3"])
    assert res.exit_code == 1 and "YOLO detector only" in res.output
    if not available():
        pytest.skip("no detector weights shipped")
    found = []
    for conf in ("0.05", "0.9"):
        res = CliRunner().invoke(main, ["eval", "detect", str(gt), "--json", "--body-conf", conf,
                                        "--figures-imgsz", "384"])
        assert res.exit_code == 0, res.output
        found.append(json.loads(res.output)["characters"]["pred"])
    assert found[0] > found[1]
