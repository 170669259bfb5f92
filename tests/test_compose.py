"""Full-resolution compositing: rasterising panels, guided upsampling, compose_lab, compose_page.

Pages are drawn in code; a user would notice a changed line or tone (L*), colour on a balloon, a seam
between panels, and colour leaking across a line, so those are what the tests measure.
"""
from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon, box as shapely_box

from layout.compose import ComposedPage, compose_page
from layout.guided import guided_upsample
from layout.raster import inner_ramp, outer_ramp, polygon_mask, soft_panel_weights
from manga_pipeline.colorspace import compose_lab, gray_to_L, rgb_to_lab
from manga_pipeline.records import ColorizedPanel, Panel, TextRegion

PID = "ab" * 32


def flat(box, order, ab, size=(24, 32)) -> ColorizedPanel:
    """A ColorizedPanel of constant chroma ``ab`` at a working resolution of ``size`` (h, w)."""
    chroma = np.empty(size + (2,), np.float32)
    chroma[...] = ab
    return ColorizedPanel(PID, order, box, chroma)


def drawn_page(h=120, w=160, seed=0) -> np.ndarray:
    """White paper with black lines of several widths, a screentone patch and a dark fill."""
    import cv2

    rng = np.random.default_rng(seed)
    g = np.full((h, w), 255, np.uint8)
    for _ in range(12):
        p = tuple(int(v) for v in rng.integers(0, w, 2)), tuple(int(v) for v in rng.integers(0, h, 2))
        cv2.line(g, (p[0][0], p[1][0]), (p[0][1], p[1][1]), int(rng.integers(0, 40)), int(rng.integers(1, 4)))
    yy, xx = np.mgrid[0:h, 0:w]
    tone = ((xx % 4) < 2) & ((yy % 4) < 2) & (xx > w // 2) & (yy > h // 2)
    g[tone] = 30
    g[5:20, 5:30] = 0
    g[h // 3:h // 3 + 10, :] = 128
    return g


def lab_of(rgb):
    return rgb_to_lab(rgb)


# --- compose_lab ------------------------------------------------------------------------------------------


def test_compose_lab_keeps_lightness_for_wildly_saturated_chroma():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    L = gray_to_L(gray)
    ab = (rng.standard_normal((200, 300, 2)) * 150).astype(np.float32)
    ab[:20] *= 100  # far outside any gamut
    rgb = compose_lab(L, ab)
    assert rgb.dtype == np.uint8 and rgb.shape == (200, 300, 3)
    assert np.abs(lab_of(rgb)[..., 0] - L).max() <= 1.0
    # and the hue survives: the output's a*b* points the way the input did wherever colour is left
    out_ab = lab_of(rgb)[..., 1:]
    strong = np.linalg.norm(out_ab, axis=2) > 15
    cos = (out_ab * ab).sum(2) / (np.linalg.norm(out_ab, axis=2) * np.linalg.norm(ab, axis=2) + 1e-6)
    assert np.median(cos[strong]) > 0.95


def test_compose_lab_leaves_in_gamut_colours_and_gray_alone():
    import cv2

    rng = np.random.default_rng(2)
    L = np.full((50, 60), 60.0, np.float32)
    ab = (rng.standard_normal((50, 60, 2)) * 8).astype(np.float32)  # well inside sRGB at L* 60
    direct = np.clip(np.rint(cv2.cvtColor(np.dstack([L, ab]), cv2.COLOR_Lab2RGB) * 255), 0, 255).astype(np.uint8)
    assert np.abs(compose_lab(L, ab).astype(int) - direct).max() <= 1
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert (compose_lab(gray_to_L(gray), np.zeros((16, 16, 2), np.float32)) == gray[..., None]).all()


def test_compose_lab_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="ab"):
        compose_lab(np.zeros((4, 4), np.float32), np.zeros((4, 5, 2), np.float32))


# --- raster -----------------------------------------------------------------------------------------------


def test_polygon_mask_uses_pixel_centres_and_half_open_boxes():
    m = polygon_mask(shapely_box(2, 1, 6, 4), (0, 0, 8, 6))
    expected = np.zeros((6, 8), bool)
    expected[1:4, 2:6] = True
    assert (m == expected).all()
    # a mask of a box offset on the page
    assert polygon_mask(shapely_box(12, 11, 16, 14), (10, 10, 18, 16)).sum() == 12


def test_polygon_mask_of_a_slanted_panel_matches_exact_point_tests():
    import shapely

    tri = Polygon([(3.2, 1.7), (57.9, 9.4), (21.3, 44.2)])
    m = polygon_mask(tri, (0, 0, 64, 48))
    yy, xx = np.mgrid[0:48, 0:64]
    exact = shapely.contains_xy(tri, xx + 0.5, yy + 0.5)
    assert (m == exact).all()


def test_polygon_mask_matches_exact_point_tests_for_random_polygons_and_grids():
    import shapely

    rng = np.random.default_rng(11)
    for k in range(60):
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(3, 40, n)
        cx, cy = rng.uniform(-10, 60, 2)
        poly = Polygon(np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)]))
        if not poly.is_valid:
            continue
        if k % 3 == 0:
            poly = poly.difference(poly.centroid.buffer(rng.uniform(1, 8)))  # a hole or a bite
        x0, y0 = rng.uniform(-5, 20, 2)
        box = (x0, y0, x0 + rng.uniform(5, 60), y0 + rng.uniform(5, 60))
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        sx, sy = (box[2] - box[0]) / shape[1], (box[3] - box[1]) / shape[0]
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        exact = shapely.contains_xy(poly, box[0] + (xx + 0.5) * sx, box[1] + (yy + 0.5) * sy)
        assert (polygon_mask(poly, box, shape=shape) == exact).all()


def test_polygon_mask_resized_and_with_a_hole():
    ring = Polygon([(0, 0), (40, 0), (40, 40), (0, 40)], holes=[[(10, 10), (30, 10), (30, 30), (10, 30)]])
    m = polygon_mask(ring, (0, 0, 40, 40), shape=(4, 4))  # 10 px cells
    expected = np.ones((4, 4), bool)
    expected[1:3, 1:3] = False
    assert (m == expected).all()


def test_inner_ramp_fades_at_the_outline_but_not_at_open_sides():
    w = inner_ramp(np.ones((20, 30), bool), 6)
    assert w[10, 15] == pytest.approx(1.0) and w[0, 15] < 0.1 and w[10, 0] < 0.1
    assert np.all(np.diff(w[10, :15]) >= 0)
    w = inner_ramp(np.ones((20, 30), bool), 6, open_sides=(True, False, True, False))
    assert w[0, 0] == pytest.approx(1.0) and w[19, 15] < 0.1 and w[10, 29] < 0.1
    assert (inner_ramp(np.zeros((5, 5), bool), 3) == 0).all()


def test_outer_ramp_is_zero_on_the_region_and_eases_outside():
    m = np.zeros((30, 30), bool)
    m[10:20, 10:20] = True
    k = outer_ramp(m, 6)
    assert (k[m] == 0).all()
    assert 0 < k[15, 22] < 1 and k[15, 28] == pytest.approx(1.0)


def test_soft_weights_of_a_panel_bleeding_past_the_page_are_clipped_and_full_at_the_border():
    poly = shapely_box(-30, -30, 60, 50)  # bleeds over the top-left corner of a 100x80 page
    win, w = soft_panel_weights(poly, (0, 0, 60, 50), (80, 100), feather=6)
    assert win == (0, 0, 60, 50)
    assert w[0, 0] == pytest.approx(1.0) and w[25, 0] == pytest.approx(1.0)
    assert w[25, 59] < 0.1 and w[49, 30] < 0.1
    assert soft_panel_weights(poly, (200, 200, 300, 300), (80, 100), feather=6) is None
    # a panel clipped to the page by its detector ends exactly on the border: no fade there either
    for touching in (shapely_box(0, 0, 60, 50), Polygon([(0, 0), (60, 0), (60, 50), (0, 50.001)])):
        _, w = soft_panel_weights(touching, (0, 0, 60, 50), (80, 100), feather=6)
        assert w[25, 0] == pytest.approx(1.0) and w[0, 30] == pytest.approx(1.0) and w[25, 59] < 0.1


@pytest.mark.parametrize("panel", [shapely_box(20, 10, 80, 70), Polygon([(20, 10), (80, 10), (80, 70), (20, 70.001)])])
def test_soft_weights_fade_at_the_panel_edge_even_when_its_chroma_box_covers_the_page(panel):
    # rectangles take a shortcut; the nearly-rectangular twin goes through rasterising: both must agree
    win, w = soft_panel_weights(panel, (0, 0, 100, 80), (80, 100), feather=6)
    full = np.zeros((80, 100), np.float32)
    c0, r0, c1, r1 = win
    full[r0:r1, c0:c1] = w
    assert full[40, 50] == pytest.approx(1.0)
    assert full[40, 19] == 0 and full[40, 20] < 0.1 and full[5, 50] == 0 and full[40, 0] == 0
    assert 0.3 < full[40, 23] < 0.7


# --- guided upsampling ------------------------------------------------------------------------------------


def _line_scene(shift_px, scale=4, line=(60, 66), h=64, w=128):
    """Paper with a thick vertical line at columns line[0]..line[1]-1; chroma a* = 40 left of a step that the
    colorizer put ``shift_px`` page px right of the line's right edge, at 1/scale resolution."""
    L = np.full((h, w), 100.0, np.float32)
    L[:, line[0]:line[1]] = 0.0
    lw = w // scale
    centres = (np.arange(lw) + 0.5) * scale
    chroma = np.zeros((h // scale, lw, 2), np.float32)
    chroma[:, centres < line[1] + shift_px, 0] = 40.0
    return L, chroma


def test_snapping_puts_a_misaligned_chroma_step_on_the_drawn_line():
    import cv2

    L, chroma = _line_scene(shift_px=4)
    bilinear = cv2.resize(chroma, (128, 64), interpolation=cv2.INTER_LINEAR)
    out = guided_upsample(chroma, L, snap=4)
    right_paper = out[:, 66:, 0]
    left_paper = out[:, :60, 0]
    assert bilinear[:, 66:70, 0].mean() > 15  # plain upsampling leaks a band of colour past the line
    assert right_paper.max() < 1.0  # snapped: nothing crosses the line
    assert left_paper.min() > 39.0  # and the left side keeps its colour up to the line


def test_default_upsampling_leaks_less_across_a_thick_line_than_bilinear():
    import cv2

    for shift in (2, 4):  # up to one low-res pixel off; the default snaps half a low-res pixel
        L, chroma = _line_scene(shift_px=shift)
        bilinear = cv2.resize(chroma, (128, 64), interpolation=cv2.INTER_LINEAR)
        out = guided_upsample(chroma, L)
        leak_bilinear = bilinear[:, 66:, 0].sum()
        assert out[:, 66:, 0].sum() < 0.8 * leak_bilinear


def test_snapping_moves_nothing_on_plain_paper_or_ink():
    import cv2

    rng = np.random.default_rng(3)
    chroma = rng.normal(0, 20, (16, 20, 2)).astype(np.float32)
    bilinear = cv2.resize(chroma, (80, 64), interpolation=cv2.INTER_LINEAR)
    for value in (100.0, 0.0):
        guide = np.full((64, 80), value, np.float32)
        assert np.abs(guided_upsample(chroma, guide, snap=4) - bilinear).max() < 1e-3


def test_guided_filter_moves_a_chroma_edge_onto_a_tone_edge_and_keeps_flat_chroma():
    import cv2

    L = np.full((64, 128), 95.0, np.float32)
    L[:, :64] = 65.0  # a tone edge, no ink
    chroma = np.zeros((16, 32, 2), np.float32)
    chroma[:, :16, 0] = 40.0
    out = guided_upsample(chroma, L, radius=8, snap=0)
    bilinear = cv2.resize(chroma, (128, 64), interpolation=cv2.INTER_LINEAR)
    jumps = np.abs(np.diff(out[32, :, 0]))
    assert int(np.argmax(jumps)) == 63 and jumps[63] > 2 * np.abs(np.diff(bilinear[32, :, 0])).max()
    const = np.full((10, 12, 2), (12.0, -30.0), np.float32)
    out = guided_upsample(const, L, radius=8)
    assert np.abs(out - const[0, 0]).max() < 1e-3
    assert out.shape == (64, 128, 2) and out.dtype == np.float32


def test_guided_upsample_rejects_bad_shapes():
    with pytest.raises(ValueError, match="chroma"):
        guided_upsample(np.zeros((4, 4), np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="guide"):
        guided_upsample(np.zeros((4, 4, 2), np.float32), np.zeros((8, 8, 3), np.float32))


# --- compose_page -----------------------------------------------------------------------------------------


def _chroma_norm(x):
    return np.linalg.norm(x, axis=-1)


@pytest.mark.parametrize("radius, snap", [(0, None), (0, 6), (8, 3)])
def test_page_lightness_is_untouched_whatever_the_chroma(radius, snap):
    gray = drawn_page()
    rng = np.random.default_rng(4)
    panels = [Panel.from_box((0, 0, 80, 60), 0), Panel.from_box((70, 50, 160, 120), 1)]
    wild = [ColorizedPanel(PID, i, p.box, (rng.standard_normal((20, 25, 2)) * 400).astype(np.float32))
            for i, p in enumerate(panels)]
    page_pass = ColorizedPanel(PID, -1, (0, 0, 160, 120), np.full((30, 40, 2), (127.0, 127.0), np.float32))
    texts = [TextRegion((90, 60, 130, 90))]
    out = compose_page(gray, panels, wild, texts=texts, page_pass=page_pass, radius=radius, snap=snap)
    assert isinstance(out, ComposedPage)
    assert out.rgb.shape == (120, 160, 3) and out.rgb.dtype == np.uint8
    assert out.chroma.shape == (120, 160, 2) and out.chroma.dtype == np.float32
    assert np.abs(lab_of(out.rgb)[..., 0] - gray_to_L(gray)).max() <= 1.0
    assert (out.rgb == compose_lab(gray_to_L(gray), out.chroma)).all()


def test_text_regions_end_paper_white_with_a_soft_edge():
    gray = np.full((100, 140), 255, np.uint8)
    gray[30:70, 40:42] = 0  # a balloon's edge line, to show lines do not matter
    panel = Panel.from_box((0, 0, 140, 100), 0)
    colour = flat((0, 0, 140, 100), 0, (40.0, 50.0))
    balloon = np.zeros((40, 60), bool)
    balloon[5:35, 5:55] = True  # an oval-ish mask inside its box
    texts = [TextRegion((30, 30, 90, 70), mask=balloon), TextRegion((100, 10, 130, 25), kind="text")]
    out = compose_page(gray, [panel], [colour], texts=texts, feather=6)
    ab = lab_of(out.rgb)[..., 1:]
    assert _chroma_norm(ab[35:65, 35:85]).max() <= 2.0  # balloon interior
    assert _chroma_norm(ab[10:25, 100:130]).max() <= 2.0  # lettering box
    assert _chroma_norm(out.chroma[35:65, 35:85]).max() == 0.0
    # inside the box but off the mask, far enough from it: colour stays
    assert _chroma_norm(out.chroma[31, 31]) > 0 and _chroma_norm(out.chroma[80, 60]) > 60
    # soft edge: going right from the balloon, chroma rises through intermediate values, no jump
    row = _chroma_norm(out.chroma[50, 85:95])
    assert row[0] < 5 and row[-1] > 60
    assert np.all(np.diff(row) >= -1e-3) and np.diff(row).max() < 30
    assert ((row > 5) & (row < 60)).sum() >= 3
    # a text box running off the page is clipped, not an error
    out = compose_page(gray, [panel], [colour], texts=[TextRegion((120, 90, 150, 110))], feather=6)
    assert _chroma_norm(out.chroma[90:, 120:]).max() == 0.0 and _chroma_norm(out.chroma[50, 50]) > 60


def test_a_panel_is_masked_by_its_polygon_and_gutters_stay_gray_without_a_page_pass():
    gray = np.full((100, 120), 230, np.uint8)
    tri = Panel(Polygon([(10, 10), (110, 10), (10, 90)]), 0)
    out = compose_page(gray, [tri], [flat(tri.box, 0, (30.0, -30.0))], feather=4)
    chroma = _chroma_norm(out.chroma)
    assert chroma[20, 20] == pytest.approx(np.hypot(30, 30), abs=0.5)  # deep inside the triangle
    assert chroma[85, 100] == 0.0  # inside the box, outside the triangle
    assert chroma[5, 60] == 0.0 and chroma[95, 5] == 0.0  # gutters
    assert (out.rgb[95, :] == gray[95, :, None]).all()


def test_overlapping_panels_blend_without_a_seam():
    gray = np.full((80, 200), 240, np.uint8)
    left = Panel.from_box((0, 0, 120, 80), 0)
    right = Panel.from_box((80, 0, 200, 80), 1)  # 40 px overlap
    out = compose_page(gray, [left, right], [flat(left.box, 0, (40.0, 0.0)), flat(right.box, 1, (-40.0, 0.0))],
                       feather=10)
    a = out.chroma[40, :, 0]
    assert a[20] == pytest.approx(40.0, abs=0.5) and a[180] == pytest.approx(-40.0, abs=0.5)
    assert np.abs(np.diff(a[10:190])).max() < 12.0  # 80 units spread over the overlap, no cut
    assert np.all(np.diff(a[60:140]) <= 1e-3)  # one smooth, monotone transition


def test_page_pass_fills_gutters_and_panels_take_over_inside():
    gray = np.full((100, 100), 250, np.uint8)
    panel = Panel.from_box((20, 20, 80, 80), 0)
    page_pass = flat((0, 0, 100, 100), -1, (0.0, 40.0), size=(25, 25))
    out = compose_page(gray, [panel], [flat(panel.box, 0, (40.0, 0.0))], page_pass=page_pass, feather=6)
    assert out.chroma[5, 5] == pytest.approx((0.0, 40.0), abs=0.5)  # gutter and margin
    assert out.chroma[50, 50] == pytest.approx((40.0, 0.0), abs=0.5)  # panel interior
    a = out.chroma[50, 10:40, 0]
    assert np.abs(np.diff(a)).max() < 15.0  # a blend at the panel edge, not a cut
    # the page pass may also come inside `colorized`
    again = compose_page(gray, [panel], [flat(panel.box, 0, (40.0, 0.0)), page_pass], feather=6)
    assert np.allclose(again.chroma, out.chroma)


def test_chroma_follows_the_page_lines_in_a_composed_page():
    # a colorizer step put 4 px past a thick line, at 1/4 resolution: snapped back onto the line
    L, chroma = _line_scene(shift_px=4)
    gray = np.where(L > 50, 255, 0).astype(np.uint8)
    panel = Panel.from_box((0, 0, 128, 64), 0)
    cp = ColorizedPanel(PID, 0, (0, 0, 128, 64), chroma)
    bleeding = compose_page(gray, [panel], [cp], feather=0, snap=0)
    snapped = compose_page(gray, [panel], [cp], feather=0, snap=4)
    assert bleeding.chroma[:, 66:, 0].max() > 20
    assert snapped.chroma[:, 66:, 0].max() < 1.0
    assert snapped.chroma[8:56, 8:60, 0].min() > 39.0


@pytest.mark.parametrize("size", [(32, 32), (33, 57), (600, 400)])
def test_any_page_size_and_working_resolution(size):
    h, w = size
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
    panels = [Panel.from_box((0, 0, w // 2 + 1, h), 0), Panel.from_box((w // 2, 0, w, h), 1)]
    colorized = [ColorizedPanel(PID, i, p.box, (rng.standard_normal((7, 5, 2)) * 50).astype(np.float32))
                 for i, p in enumerate(panels)]
    out = compose_page(gray, panels, colorized)
    assert out.rgb.shape == (h, w, 3) and out.chroma.shape == (h, w, 2)
    assert np.abs(lab_of(out.rgb)[..., 0] - gray_to_L(gray)).max() <= 1.0


@pytest.mark.slow  # ~5 s and ~0.5 GB on a 24 MP page
def test_a_large_page():
    h, w = 6000, 4000
    gray = np.full((h, w), 255, np.uint8)
    gray[::97, :] = 0
    gray[:, ::89] = 0
    panels = [Panel.from_box((0, 0, 4000, 3000), 0), Panel.from_box((0, 3000, 4000, 6000), 1)]
    colorized = [flat(p.box, i, (20.0 * (i + 1), -20.0), size=(288, 384)) for i, p in enumerate(panels)]
    out = compose_page(gray, panels, colorized)
    assert out.rgb.shape == (h, w, 3)
    assert out.chroma[1000, 1000] == pytest.approx((20.0, -20.0), abs=0.5)
    assert (out.rgb[::97, :] == 0).all()


def test_bleeding_panels_and_boxes_past_the_page_are_clipped():
    gray = np.full((60, 80), 200, np.uint8)
    bleed = Panel(Polygon([(-20, -10), (50, -10), (50, 70), (-20, 70)]), 0)  # past the left, top, bottom
    colorized = [flat((0, 0, 50, 70), 0, (0.0, 50.0)),  # box past the bottom edge
                 flat((40, 20, 120, 50), 1, (50.0, 0.0))]
    right = Panel.from_box((40, 20, 120, 50), 1)  # past the right edge
    out = compose_page(gray, [bleed, right], colorized, feather=5)
    # no fade along the page border where the panel bleeds over it
    assert out.chroma[0, 0] == pytest.approx((0.0, 50.0), abs=0.5)
    assert out.chroma[59, 10] == pytest.approx((0.0, 50.0), abs=0.5)
    assert out.chroma[35, 79] == pytest.approx((50.0, 0.0), abs=0.5)
    assert _chroma_norm(out.chroma[5, 75]) == 0.0


def test_no_colour_gives_the_gray_page_as_rgb():
    gray = drawn_page(40, 50)
    for out in (compose_page(gray, [], []), compose_page(gray, [Panel.from_box((0, 0, 50, 40), 0)], [])):
        assert (out.rgb == gray[..., None]).all()
        assert not out.chroma.any()


def test_bad_inputs_are_refused_with_a_reason():
    gray = np.full((40, 40), 255, np.uint8)
    panel = Panel.from_box((0, 0, 40, 40), 0)
    with pytest.raises(ValueError, match="no panel"):
        compose_page(gray, [panel], [flat((0, 0, 40, 40), 3, (1.0, 1.0))])
    with pytest.raises(ValueError, match="twice"):
        compose_page(gray, [panel], [flat((0, 0, 40, 40), 0, (1.0, 1.0))] * 2)
    with pytest.raises(ValueError, match="twice"):
        page_pass = flat((0, 0, 40, 40), -1, (1.0, 1.0))
        compose_page(gray, [panel], [page_pass], page_pass=page_pass)
    with pytest.raises(ValueError, match="uint8"):
        compose_page(gray.astype(np.float32), [panel], [])
    with pytest.raises(ValueError, match="feather"):
        compose_page(gray, [panel], [], feather=-1)


def test_flat_blend_colours_paper_but_keeps_ink_text_and_uncoloured_pixels():
    gray = drawn_page()
    L0 = gray_to_L(gray)
    panel = Panel.from_box((0, 0, 80, 120), 0)  # the left half is coloured, the right half is not
    text = TextRegion((30, 40, 60, 60))
    out = compose_page(gray, [panel], [flat(panel.box, 0, (12.0, 25.0))], texts=[text], feather=0,
                       blend="flat", max_darken=30.0)
    lab = lab_of(out.rgb)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    paper = (gray == 255)
    paper[40:60, 30:60] = False  # not the text
    coloured_paper = paper.copy()
    coloured_paper[:, 70:] = False
    # white paper now holds the colour (with the luminance blend it cannot), and only as dark as it must
    assert np.median(chroma[coloured_paper]) > 20
    assert (L0 - out.L)[coloured_paper].max() <= 30.0 + 1e-3 and np.median(out.L[coloured_paper]) > 85
    assert np.abs(lab[..., 0] - out.L).max() <= 1.0  # ComposedPage.L is the output's lightness
    # ink keeps its lightness; the text box and the uncoloured half stay exactly the page
    assert np.abs(lab[..., 0] - L0)[gray < 60].max() <= 1.0
    assert np.abs(lab[..., 0] - L0)[40:60, 30:60].max() <= 1.0 and chroma[40:60, 30:60].max() <= 1.0
    assert np.abs(lab[..., 0] - L0)[:, 90:].max() <= 1.0 and chroma[:, 90:].max() <= 1.0
    # the luminance blend of the same input keeps every pixel's L*
    same = compose_page(gray, [panel], [flat(panel.box, 0, (12.0, 25.0))], texts=[text], feather=0)
    assert np.abs(lab_of(same.rgb)[..., 0] - L0).max() <= 1.0
    with pytest.raises(ValueError, match="blend"):
        compose_page(gray, [panel], [], blend="multiply")


def test_flat_blend_colours_paper_only_inside_the_given_areas():
    gray = np.full((100, 100), 255, np.uint8)
    panel = Panel.from_box((0, 0, 100, 100), 0)
    figure = np.zeros((40, 40), bool)
    figure[10:30, 10:30] = True  # a figure inside its box (page px 20..60): only the square's paper takes colour
    out = compose_page(gray, [panel], [flat(panel.box, 0, (10.0, 20.0))], feather=0, blend="flat",
                       flat_areas=[((20, 20, 60, 60), figure), ((80, 80, 110, 110), None)])
    darker = gray_to_L(gray) - out.L > 1.0
    want = np.zeros((100, 100), bool)
    want[30:50, 30:50] = True
    want[80:, 80:] = True  # a maskless area is its whole box, clipped to the page
    assert np.array_equal(darker, want)
    with pytest.raises(ValueError, match="mask"):
        compose_page(gray, [panel], [flat(panel.box, 0, (10.0, 20.0))], blend="flat",
                     flat_areas=[((0, 0, 10, 10), np.ones((5, 5), bool))])
