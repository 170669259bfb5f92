"""Shared preprocessing for the classical detectors: a reduced working copy of the page and its paper mask.

The classical detectors work at reduced resolution (about 1000 px on the long side) and return page pixels.
The page is min-pooled before it is shrunk so that thin dark strokes (panel frames, balloon outlines) stay
dark instead of fading into gray.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Work", "check_gray", "prepare", "fill_holes"]

PAPER_MARGIN = 30  # gray levels below the paper level that still count as paper
MIN_POOL = 2  # smallest min-pooling window (page pixels)


def check_gray(gray) -> np.ndarray:
    """Validate a gray page: ``uint8 (H, W)``. Raises ``ValueError`` with what to do otherwise."""
    if not isinstance(gray, np.ndarray):
        raise ValueError(f"gray page must be a numpy array, got {type(gray).__name__}")
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(
            f"gray page must be uint8 (H, W), got {gray.dtype} {gray.shape}; "
            "convert colour pages with cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) first"
        )
    if gray.shape[0] < 1 or gray.shape[1] < 1:
        raise ValueError(f"gray page is empty: shape {gray.shape}")
    return gray


@dataclass(frozen=True)
class Work:
    """A page reduced for detection.

    ``gray``: uint8 (h, w) at ``scale`` work pixels per page pixel, min-pooled, inverted when the page has dark
    gutters so that the gutter is always light. ``paper``: bool (h, w), pixels at paper level (gutters, balloon
    interiors, white art). ``page_w``/``page_h``: the page size in page pixels.
    """

    gray: np.ndarray
    paper: np.ndarray
    scale: float
    page_w: int
    page_h: int
    inverted: bool
    paper_level: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.gray.shape

    def to_page(self, v: float) -> float:
        return v / self.scale

    def page_box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """Work-pixel box (half-open) to a page-pixel box clipped to the page, never empty."""
        s = self.scale
        bx0 = int(np.clip(np.floor(x0 / s), 0, self.page_w - 1))
        by0 = int(np.clip(np.floor(y0 / s), 0, self.page_h - 1))
        bx1 = int(np.clip(np.ceil(x1 / s), bx0 + 1, self.page_w))
        by1 = int(np.clip(np.ceil(y1 / s), by0 + 1, self.page_h))
        return bx0, by0, bx1, by1


def prepare(gray: np.ndarray, long_side: int = 1000) -> Work:
    """Reduce a ``uint8 (H, W)`` page to about ``long_side`` pixels and find its paper level.

    ``scale`` is the x ratio; the y ratio differs from it by less than one working pixel over the page.
    """
    gray = check_gray(gray)
    h, w = gray.shape
    scale = min(1.0, long_side / max(h, w))
    # Min-pool over the pixels that shrink into one (at least 2x2): besides keeping thin strokes, it darkens
    # screentone (fine dots on paper), which would otherwise average to a light gray close to the paper level.
    # A wider window would close thin gutters.
    k = max(MIN_POOL, int(round(1.0 / scale)))
    pooled = cv2.erode(gray, np.ones((k, k), np.uint8))
    if scale < 1.0:
        ww, wh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        small = cv2.resize(pooled, (ww, wh), interpolation=cv2.INTER_AREA)
        scale = ww / w  # the exact ratio after rounding (x and y differ by < 1 px)
    else:
        small = pooled
    # Dark gutters: the page's outer strip is mostly black. Invert so that gutters and paper are light.
    sh, sw = small.shape
    m = max(1, int(round(0.01 * max(sh, sw))))
    strip = np.concatenate([small[:m].ravel(), small[-m:].ravel(), small[:, :m].ravel(), small[:, -m:].ravel()])
    inverted = bool(np.median(strip) < 80 and np.mean(strip < 100) > 0.6)
    if inverted:
        small = 255 - small
    paper_level = int(np.percentile(small, 97))
    # Paper: within a margin of the paper level (scans are rarely pure white); never above 235 so that a page
    # whose paper is 255 still keeps light JPEG noise around its strokes as paper.
    thr = int(np.clip(paper_level - PAPER_MARGIN, 90, 235))
    paper = small >= thr
    return Work(small, paper, scale, w, h, inverted, paper_level)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool mask (regions not connected to the mask's outside)."""
    m = mask.astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    ff = padded.copy()
    cv2.floodFill(ff, None, (0, 0), 1)
    holes = ff[1:-1, 1:-1] == 0
    return mask | holes
