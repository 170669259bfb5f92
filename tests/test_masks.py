"""Figure masks inside detector boxes: colour must sit on the character, not on the paper around it."""
from __future__ import annotations

import cv2
import numpy as np

from detectors.masks import figure_mask


def _page_with_figure():
    g = np.full((200, 200), 255, np.uint8)
    cv2.ellipse(g, (100, 110), (40, 70), 0, 0, 360, 0, 2)  # the figure's outline
    cv2.circle(g, (100, 80), 10, 0, 2)  # a detail inside it
    return g


def test_mask_covers_the_figure_and_not_the_paper_around_it():
    g = _page_with_figure()
    box = (50, 30, 150, 190)
    m = figure_mask(g, box)
    assert m.shape == (160, 100) and m.dtype == np.bool_
    assert m[110 - 30, 100 - 50] and m[80 - 30, 100 - 50]  # inside the outline, and inside the inner detail
    assert not m[2, 2] and not m[-3, -3] and not m[2, -3]  # the box corners are background paper
    inside = np.zeros_like(g, np.uint8)
    cv2.ellipse(inside, (100, 110), (40, 70), 0, 0, 360, 1, -1)
    truth = inside[30:190, 50:150] > 0
    iou = (m & truth).sum() / (m | truth).sum()
    assert iou > 0.9


def test_a_figure_cut_by_the_box_edge_but_closed_beyond_it_keeps_its_inside():
    g = _page_with_figure()
    m = figure_mask(g, (50, 50, 150, 170))  # the box cuts the ellipse top and bottom
    assert m[110 - 50, 100 - 50] and m[5, 50] and m[-5, 50]


def test_no_outline_means_no_mask():
    g = np.full((100, 100), 255, np.uint8)
    assert figure_mask(g, (10, 10, 90, 90)) is None


def test_a_panel_border_does_not_close_the_background_into_the_figure():
    g = np.full((200, 200), 255, np.uint8)
    cv2.rectangle(g, (20, 20), (180, 180), 0, 3)  # the panel's border
    cv2.ellipse(g, (100, 110), (30, 50), 0, 0, 360, 0, 2)
    cv2.line(g, (130, 110), (180, 110), 0, 2)  # an arm and a leg reaching the border: with it they close
    cv2.line(g, (100, 160), (100, 180), 0, 2)  # a pocket of background (right of the leg, under the arm)
    box = (60, 50, 182, 182)  # the box reaches over the border line
    pocket = (170 - 50, 150 - 60)  # (row, col) in the box
    assert figure_mask(g, box)[pocket]  # without the panel, the border makes the pocket part of the figure
    m = figure_mask(g, box, clip=(22, 22, 178, 178))  # the panel's inside
    assert not m[pocket] and m[110 - 50, 100 - 60] and m.shape == (132, 122)
