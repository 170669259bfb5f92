"""Synthetic manga chapters: deterministic, realistic enough, and with ground truth that matches the drawing."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from shapely.geometry import box as shapely_box

from manga_pipeline.colorspace import rgb_to_lab
from manga_pipeline.synthetic import (
    DEFAULT_LAYOUTS,
    CharacterDesign,
    generate_chapter,
    generate_page,
    make_cast,
    render_reference,
    write_chapter,
)
from manga_pipeline.synthetic.canvas import BLACK, WHITE, tone_for

SMALL = (600, 850)


@pytest.fixture(scope="module")
def chapter():
    return generate_chapter(3, seed=21, size=SMALL, layouts=None)


def test_same_seed_same_pages_other_seed_other_pages():
    a = generate_page(1, seed=5, size=SMALL, layouts=None)
    b = generate_page(1, seed=5, size=SMALL, layouts=None)
    c = generate_page(1, seed=6, size=SMALL, layouts=None)
    assert np.array_equal(a.bw, b.bw) and np.array_equal(a.color, b.color)
    assert [x.box for x in a.characters] == [x.box for x in b.characters]
    assert [p.polygon.wkt for p in a.panels] == [p.polygon.wkt for p in b.panels]
    assert not np.array_equal(a.bw, c.bw)


def test_pages_have_the_promised_shapes_and_content(chapter):
    w, h = SMALL
    assert len(chapter.pages) == 3 and len(chapter.cast) == 3
    for page in chapter.pages:
        assert page.bw.shape == (h, w) and page.bw.dtype == np.uint8
        assert page.color.shape == (h, w, 3) and page.color.dtype == np.uint8
        assert page.panels and page.balloons
    # something to detect on every chapter: characters, and screentone / gray on the B/W pages
    assert sum(len(p.characters) for p in chapter.pages) >= 4
    for page in chapter.pages:
        gray = (page.bw < 250).mean()
        assert 0.03 < gray < 0.8
        lab = rgb_to_lab(page.color)
        assert (np.hypot(lab[..., 1], lab[..., 2]) > 15).mean() > 0.05, "the colour page has hardly any colour"


def test_panels_are_valid_inside_the_page_and_read_right_to_left(chapter):
    w, h = SMALL
    pages = list(chapter.pages) + [generate_page(k, seed=77, size=SMALL, layouts=None) for k in range(3)]
    for page in pages:
        assert sorted(p.order for p in page.panels) == list(range(len(page.panels)))
        panels = sorted(page.panels, key=lambda p: p.order)
        for p in panels:
            x0, y0, x1, y1 = p.polygon.bounds
            assert p.polygon.is_valid and p.polygon.area > 0.01 * w * h
            assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
        for i, a in enumerate(panels):
            for b in panels[i + 1:]:
                assert a.polygon.intersection(b.polygon).area < 1.0, "panels overlap"
                ay0, ay1 = a.polygon.bounds[1::2]
                by0, by1 = b.polygon.bounds[1::2]
                overlap = min(ay1, by1) - max(ay0, by0)
                ca, cb = a.polygon.centroid, b.polygon.centroid
                if overlap > 0.5 * min(ay1 - ay0, by1 - by0):  # same row: the earlier one is on the right
                    assert ca.x > cb.x, (page.index, a.order, b.order)
                # a later panel never lies wholly above the first one
                if a.order == 0:
                    assert by1 > ay0, (page.index, b.order)


def test_character_ground_truth_matches_the_drawing(chapter):
    w, h = SMALL
    designs = {d.name: d for d in chapter.cast}
    checked = 0
    for page in chapter.pages:
        lab = rgb_to_lab(page.color)
        panels = {p.order: p.polygon for p in page.panels}
        for ch in page.characters:
            x0, y0, x1, y1 = ch.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert ch.identity in designs and ch.confidence == 1.0 and ch.panel in panels
            m = ch.mask
            assert m.shape == (y1 - y0, x1 - x0) and m.dtype == bool
            # the box is the tight bound of the mask
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            # the mask lies inside its panel
            inside = panels[ch.panel].buffer(1.5).intersection(shapely_box(x0, y0, x1, y1))
            pmask = np.zeros(m.shape, np.uint8)
            for g in getattr(inside, "geoms", [inside]):
                pts = np.round((np.asarray(g.exterior.coords) - (x0, y0)) * 16).astype(np.int32)
                cv2.fillPoly(pmask, [pts], 1, cv2.LINE_8, 4)
            assert (m & (pmask == 0)).sum() <= 0.002 * m.sum() + 2
            if m.sum() < 200:
                continue
            # the masked pixels carry the design's colours or black line art
            scheme = np.array([rgb_to_lab(np.array([[c]], np.uint8))[0, 0] for c in designs[ch.identity].colors.values()])
            px = lab[y0:y1, x0:x1][m]
            de = np.sqrt(((px[:, None, :] - scheme[None]) ** 2).sum(-1)).min(1)
            ok = (de < 3.0) | (px[:, 0] < 20)
            assert ok.mean() >= 0.5, (ch.identity, ok.mean())
            checked += 1
    assert checked >= 3


def test_balloon_interiors_stay_white_apart_from_lettering(chapter):
    for page in chapter.pages:
        for b in page.balloons:
            assert b.kind == "balloon"
            x0, y0, x1, y1 = b.box
            m = b.mask
            assert m.shape == (y1 - y0, x1 - x0) and m.sum() > 50
            bw = page.bw[y0:y1, x0:x1][m]
            col = page.color[y0:y1, x0:x1][m]
            # nothing but black lettering on white: neutral colour, the same gray in both editions
            assert (col.max(1) == col.min(1)).all()
            assert np.array_equal(bw, col[:, 0])
            assert (bw == 255).mean() > 0.6
    # the balloon mask is the union of the interiors
    page = chapter.pages[0]
    assert page.balloon_mask().sum() == sum(int(b.mask.sum()) for b in page.balloons)


def test_bw_page_has_no_colour_and_shares_line_art_with_the_colour_page(chapter):
    page = chapter.pages[0]
    assert page.bw.ndim == 2
    dark_lines = (page.color.max(axis=2) < 30)
    assert (page.bw[dark_lines] < 60).mean() > 0.95


def test_cast_is_distinguishable_in_black_and_white():
    cast = make_cast(3, seed=4)
    assert len({d.name for d in cast}) == 3
    assert len({d.hair_style for d in cast}) == 3
    tones = {tone_for(d.colors["hair"], "hair")[0] for d in cast}
    assert len(tones) == 3 and BLACK in tones and WHITE in tones
    for d in cast:
        assert isinstance(d, CharacterDesign)
        assert {"hair", "skin", "eyes", "top", "bottom"} <= set(d.colors)
    assert make_cast(3, seed=4) == cast


def test_reference_shows_the_character_alone_on_white():
    d = make_cast(2, seed=9)[1]
    ref = render_reference(d, seed=3)
    assert ref.shape == (512, 512, 3) and ref.dtype == np.uint8
    white = (ref.min(axis=2) == 255).mean()
    assert 0.5 < white < 0.97
    lab = rgb_to_lab(ref)
    for part in ("hair", "top", "bottom", "skin"):
        target = rgb_to_lab(np.array([[d.colors[part]]], np.uint8))[0, 0]
        assert (np.linalg.norm(lab - target, axis=2) < 3).sum() > 40, part
    assert not np.array_equal(ref, render_reference(d, seed=4))
    assert render_reference(d, seed=4, size=200).shape == (200, 200, 3)


def test_write_chapter_round_trip(tmp_path, chapter):
    out = write_chapter(chapter, tmp_path / "ch")
    doc = json.loads(out.read_text())
    assert len(doc["pages"]) == len(chapter.pages)
    for entry, page in zip(doc["pages"], chapter.pages):
        img = cv2.imread(str(out.parent / entry["image"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(img, page.bw)
        col = cv2.imread(str(out.parent / entry["color_image"]), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.array_equal(col, page.color)
        mask = cv2.imread(str(out.parent / entry["balloon_mask"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask > 0, page.balloon_mask())
        assert (entry["width"], entry["height"]) == SMALL
        assert entry["panels"] == [list(p.box) for p in sorted(page.panels, key=lambda p: p.order)]
        assert len(entry["panel_polygons"]) == len(page.panels)
        assert [b["box"] for b in entry["bodies"]] == [list(c.box) for c in page.characters]
        assert [b["character"] for b in entry["bodies"]] == [c.identity for c in page.characters]
        assert len(entry["texts"]) == len(page.balloons) + len(page.texts)
    for d in chapter.cast:
        assert (out.parent / "references" / f"{d.name}.png").is_file()
    assert not list(out.parent.rglob("*.part*")), "atomic writes left temporary files"


def test_manga109_layouts_are_used_when_present():
    if not DEFAULT_LAYOUTS.is_file():
        pytest.skip(f"../shared/data is absent ({DEFAULT_LAYOUTS} not found)")
    w, h = SMALL
    for k in range(2):
        page = generate_page(k, seed=3, size=SMALL, layouts="auto")
        assert page.layout_source.startswith("manga109:")
        assert page.panels and all(p.polygon.is_valid for p in page.panels)
        first = min(page.panels, key=lambda p: p.order)
        others = [p for p in page.panels if p.order > 0]
        # the first panel is at the top right: no later panel lies wholly above it or to its right in its row
        for p in others:
            assert p.polygon.bounds[3] > first.polygon.bounds[1] + 1
    explicit = generate_page(0, seed=3, size=SMALL, layouts=DEFAULT_LAYOUTS)
    assert np.array_equal(explicit.bw, generate_page(0, seed=3, size=SMALL, layouts="auto").bw)


def test_bad_arguments_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        generate_page(0, size=(50, 50))
    with pytest.raises(FileNotFoundError, match="layouts"):
        generate_chapter(1, size=SMALL, layouts=tmp_path / "missing.json.gz")
    with pytest.raises(ValueError):
        generate_chapter(0, size=SMALL)
