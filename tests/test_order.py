"""Reading order of panels on literal layouts (page pixels, origin top-left)."""
from __future__ import annotations

import random

import pytest
from shapely.geometry import Polygon, box

from layout.order import reading_order


def test_grid_2x2_is_read_right_to_left_row_by_row():
    tl, tr = box(0, 0, 300, 400), box(320, 0, 620, 400)
    bl, br = box(0, 420, 300, 820), box(320, 420, 620, 820)
    polys = [tl, tr, bl, br]
    assert reading_order(polys) == [1, 0, 3, 2]


def test_grid_2x2_left_to_right():
    tl, tr = box(0, 0, 300, 400), box(320, 0, 620, 400)
    bl, br = box(0, 420, 300, 820), box(320, 420, 620, 820)
    assert reading_order([tl, tr, bl, br], rtl=False) == [0, 1, 2, 3]


def test_tall_right_panel_is_read_before_the_stack_to_its_left():
    top_left, bottom_left = box(0, 0, 300, 400), box(0, 420, 300, 820)
    tall_right = box(320, 0, 620, 820)
    assert reading_order([top_left, bottom_left, tall_right]) == [2, 0, 1]
    # left to right: the stack on the left comes first, then the tall panel
    assert reading_order([top_left, bottom_left, tall_right], rtl=False) == [0, 1, 2]


def test_full_width_row_then_tall_panel_and_stack():
    top = box(0, 0, 620, 200)
    tall_right = box(320, 220, 620, 1000)
    left_a, left_b = box(0, 220, 300, 600), box(0, 620, 300, 1000)
    assert reading_order([left_b, tall_right, top, left_a]) == [2, 1, 3, 0]


def test_slanted_gutter_keeps_rows_apart():
    # The gutter between the rows falls from y=380 on the left to y=440 on the right: the bounding boxes of
    # the two rows overlap by 60 px, the polygons do not.
    top_right = Polygon([(320, 0), (620, 0), (620, 430), (320, 405)])
    top_left = Polygon([(0, 0), (300, 0), (300, 403), (0, 378)])
    bottom_right = Polygon([(320, 425), (620, 450), (620, 800), (320, 800)])
    bottom_left = Polygon([(0, 398), (300, 423), (300, 800), (0, 800)])
    assert reading_order([bottom_left, top_left, bottom_right, top_right]) == [3, 1, 2, 0]


def test_three_panels_in_a_row_right_to_left():
    row = [box(0, 0, 190, 300), box(210, 0, 400, 300), box(420, 0, 610, 300)]
    assert reading_order(row) == [2, 1, 0]
    assert reading_order(row, rtl=False) == [0, 1, 2]


def test_inset_panel_gives_a_permutation():
    big = box(0, 0, 600, 800)
    inset = box(400, 50, 580, 250)
    order = reading_order([inset, big])
    assert sorted(order) == [0, 1]
    assert order == [1, 0]  # the panel whose top edge comes first


def test_empty_and_single():
    assert reading_order([]) == []
    assert reading_order([box(5, 5, 50, 50)]) == [0]


def test_rejects_non_polygons():
    with pytest.raises(ValueError):
        reading_order([box(0, 0, 10, 10), "not a polygon"])


def test_always_a_permutation_on_random_layouts():
    rng = random.Random(0)
    for _ in range(30):
        polys = []
        for _ in range(rng.randint(1, 9)):
            x, y = rng.uniform(0, 600), rng.uniform(0, 900)
            polys.append(box(x, y, x + rng.uniform(20, 300), y + rng.uniform(20, 300)))
        for rtl in (True, False):
            assert sorted(reading_order(polys, rtl=rtl)) == list(range(len(polys)))
