"""A character's figure inside its box: the ink and the paper the ink encloses, not the background around it.

A learned detector gives boxes; colour painted over a whole box tints the paper around the figure (a visible
rectangle once colour goes onto white paper). Line art closes the figure: paper regions reachable from outside
the box without crossing ink are background, everything else (ink, enclosed paper, screentone) is the figure.
The flood starts from a frame a little outside the box, so a figure cut by the box edge but closed by its own
outline beyond the box keeps its inside. That frame never reaches past the character's panel (``clip``): a panel
border would otherwise close every background region of the panel into the figure (a tinted rectangle beside
it). The price: a figure cut by its panel's border loses the colour of the part that touches the border, which
stays paper-white; a wrong colour would cost more.
"""
from __future__ import annotations

import cv2
import numpy as np

INK_LEVEL = 160     # gray below this is ink (lines, screentone dots, solid blacks)
GAP_CLOSE = 3       # page px: ink is dilated by this so small gaps in an outline do not let the flood in
MARGIN = 0.15       # of the box's long side: the frame outside the box that the flood starts from
MIN_FRACTION = 0.08  # a figure mask smaller than this share of its box is not trusted: the box stays
CLIP_INSET = 0.004  # of the page's long side: how far inside its panel's box the frame stays (off the border line)


def figure_mask(gray: np.ndarray, box, clip=None) -> np.ndarray | None:
    """bool (y1 - y0, x1 - x0) figure mask of ``box`` (page px, half-open) on ``gray`` (uint8 (H, W) page),
    or None when no figure can be told apart from its background (the caller keeps the whole box).
    clip: the box of the character's panel (page px), or None."""
    H, W = gray.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    m = max(2, int(round(MARGIN * max(x1 - x0, y1 - y0))))
    wx0, wy0, wx1, wy1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
    if clip is not None:  # the window stays inside the panel, off its border line, even where the box does not
        k = max(3, int(round(CLIP_INSET * max(H, W))))
        cx0, cy0, cx1, cy1 = (int(v) for v in clip)
        wx0, wy0, wx1, wy1 = max(wx0, cx0 + k), max(wy0, cy0 + k), min(wx1, cx1 - k), min(wy1, cy1 - k)
        if wx1 - wx0 < 3 or wy1 - wy0 < 3:
            return None
    sub = gray[wy0:wy1, wx0:wx1]
    ink = (sub < INK_LEVEL).astype(np.uint8)
    if GAP_CLOSE > 1:
        ink = cv2.dilate(ink, np.ones((GAP_CLOSE, GAP_CLOSE), np.uint8))
    paper = (ink == 0).astype(np.uint8)
    n, labels = cv2.connectedComponents(paper, connectivity=4)
    if n <= 1:
        return None
    # paper components on the window's frame (the page edge counts only where the box itself is cut there)
    frame = np.zeros(labels.shape, bool)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    outside = np.unique(labels[frame & (paper > 0)])
    background = np.isin(labels, outside[outside > 0])
    figure = ~background
    # undo the gap-closing dilation at the figure's rim: background paper next to the outline stays background
    figure = cv2.erode(figure.astype(np.uint8), np.ones((GAP_CLOSE, GAP_CLOSE), np.uint8)) > 0 if GAP_CLOSE > 1 \
        else figure
    mask = np.zeros((y1 - y0, x1 - x0), bool)  # box parts outside the window (the panel's border) stay out
    ix0, iy0, ix1, iy1 = max(x0, wx0), max(y0, wy0), min(x1, wx1), min(y1, wy1)
    if ix1 > ix0 and iy1 > iy0:
        mask[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = figure[iy0 - wy0:iy1 - wy0, ix0 - wx0:ix1 - wx0]
    if mask.mean() < MIN_FRACTION:
        return None
    return np.ascontiguousarray(mask)
