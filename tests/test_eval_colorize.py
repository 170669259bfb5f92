"""`manga-color eval colorize`: the pipeline scored against true colours, next to the gray output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from manga_pipeline.cli import main
from manga_pipeline.synthetic import generate_chapter, write_chapter


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalchapter")
    write_chapter(generate_chapter(2, seed=3, size=(600, 850)), root)
    return root / "ground_truth.json"


def _eval(*args):
    r = CliRunner().invoke(main, ["eval", "colorize", *map(str, args), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_with_the_cast_references_the_pages_get_colour_and_a_contact_sheet(chapter, tmp_path):
    sheet = tmp_path / "sheet.png"
    rep = _eval(chapter, "--sheet", sheet)
    assert rep["pages"] == 2 and len(rep["per_page"]) == 2
    assert rep["references"] == sorted(c["name"] for c in json.loads(chapter.read_text())["cast"])
    for key in ("de2000", "dab", "psnr", "ssim", "colourfulness"):
        assert key in rep and f"{key}_gray" in rep
    assert rep["colourfulness"] > rep["colourfulness_gray"] + 1.0  # visibly more colourful than the B/W page
    assert rep["de2000_ratio"] == pytest.approx(rep["de2000"] / rep["de2000_gray"], abs=2e-3)
    # the annotated characters are scored apart (the per-character reference target), and colour lands there
    assert rep["de2000_bodies_gray"] > 0 and rep["de2000_bodies"] != rep["de2000_bodies_gray"]
    with Image.open(sheet) as im:  # one row per page: B/W | ours | truth
        assert im.height == 2 * (480 + 8) and im.width > 3 * 300


def test_without_references_the_output_is_the_gray_baseline(chapter):
    rep = _eval(chapter, "--references", "none")
    assert rep["references"] == [] and rep["consistency"] == {}
    assert rep["de2000"] == rep["de2000_gray"] and rep["colourfulness"] == rep["colourfulness_gray"]


def test_colour_images_are_turned_bw_and_bad_arguments_are_one_line(tmp_path):
    rgb = np.zeros((120, 90, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 60
    Image.fromarray(rgb).save(tmp_path / "red.png")
    rep = _eval(tmp_path / "red.png", "--style", "screentone", "--references", "none")
    assert rep["pages"] == 1 and rep["per_page"][0]["truth_colourfulness"] > 50
    r = CliRunner().invoke(main, ["eval", "colorize", str(tmp_path / "red.png"), "--references", "Nana"])
    assert r.exit_code == 1 and "NAME=IMAGE" in r.output and "Traceback" not in r.output


def test_annotated_names_measure_the_colorizer_apart_from_identification(chapter):
    auto = _eval(chapter)
    named = _eval(chapter, "--annotated-names")
    assert named["names"].startswith("annotated") and auto["names"].startswith("identified")
    # every annotated body is named now: each character is measured on at least as many pages
    for name, s in auto["consistency"].items():
        assert named["consistency"][name]["pages"] >= s["pages"]
    assert sum(s["pages"] for s in named["consistency"].values()) > 0
